// The iOS benchmark app: on launch it times the models its plan names in its
// Documents folder (copied there by `mbdeploy bench --device iphone`; with no
// plan, every .mlpackage/.mlmodelc there, e.g. copied by hand through Finder's
// file sharing), writes mbdeploy-results.json and then mbdeploy-done, and
// shows a one-line status. It decides nothing else.
import SwiftUI
import UIKit
#if canImport(CoreMLBench)
import CoreMLBench  // when built from the Swift package; project.yml compiles the sources in
#endif

@main
struct MBBenchApp: App {
    @StateObject private var bench = BenchState()

    var body: some Scene {
        WindowGroup {
            VStack(spacing: 12) {
                Text("mbdeploy Core ML bench").font(.headline)
                Text(bench.status).font(.body.monospaced()).multilineTextAlignment(.center)
            }
            .padding()
            .onAppear { bench.start() }
        }
    }
}

@MainActor
final class BenchState: ObservableObject {
    @Published var status = "waiting for models"
    private var started = false

    func start() {
        guard !started else { return }
        started = true
        status = "running"
        // A locked screen suspends the app mid-run; keep it awake while timing.
        UIApplication.shared.isIdleTimerDisabled = true
        let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        Task.detached(priority: .userInitiated) {
            let message = await BenchState.runAll(in: documents)
            await MainActor.run {
                self.status = message
                UIApplication.shared.isIdleTimerDisabled = false
            }
        }
    }

    nonisolated static func runAll(in documents: URL) async -> String {
        // Never leave an old marker: the host must not read a previous run's results.
        try? FileManager.default.removeItem(at: documents.appendingPathComponent(Results.doneFile))
        let planFile = documents.appendingPathComponent(Plan.fileName)
        do {
            let plan = try Plan.load(from: planFile)
            let benchmark = Benchmark(plan: plan)
            let models = benchmark.models(in: documents)
            let runs = await benchmark.run(models, in: documents)
            try Results.write(runs, runId: plan.runId, schedule: plan.schedule, to: documents)
            let ok = runs.filter { $0["status"] as? String == "ok" }.count
            return "done: \(ok) of \(runs.count) runs ok over \(models.count) model(s)"
        } catch {
            try? Results.write([], runId: Plan.runIdHint(at: planFile), error: String(describing: error), to: documents)
            return "failed: \(error)"
        }
    }
}
