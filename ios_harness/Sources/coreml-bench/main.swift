// coreml-bench: the harness on a Mac, over models converted by mbdeploy.
//   coreml-bench --models DIR [--runs N] [--warmup N] [--compute-units a,b]
//                [--probes FILE --probe-shape H,W,C] [--schedule S] --out FILE
// Times every .mlpackage/.mlmodelc under DIR and writes the app's raw
// results document (mbdeploy.coreml_app/3); with --probes (float32 images,
// a path under DIR) each model's scores on them too, as the app does for
// bench --check-outputs; with --schedule round_robin all models loaded and
// timed in turn, as the app times a profile's single layers (no probes then).
// Used by .github/workflows/macos.yml.
import CoreMLBench
import Foundation

func option(_ name: String, _ arguments: [String]) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

let arguments = CommandLine.arguments
guard let modelsPath = option("--models", arguments), let outPath = option("--out", arguments) else {
    FileHandle.standardError.write(Data("usage: coreml-bench --models DIR [--runs N] [--warmup N] [--compute-units a,b] [--schedule S] --out FILE\n".utf8))
    exit(2)
}
let folder = URL(fileURLWithPath: modelsPath)
var plan = Plan(models: Benchmark.findModels(in: folder).map { Plan.Model(path: $0) })
if let runs = option("--runs", arguments).flatMap({ Int($0) }) { plan.runs = max(1, runs) }
if let warmup = option("--warmup", arguments).flatMap({ Int($0) }) { plan.warmup = max(0, warmup) }
if let units = option("--compute-units", arguments) { plan.computeUnits = units.split(separator: ",").map(String.init) }
if let probesPath = option("--probes", arguments) {
    let shape = (option("--probe-shape", arguments) ?? "").split(separator: ",").compactMap { Int($0) }
    let bytes = ((try? FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent(probesPath).path))?[.size] as? Int) ?? 0
    let perProbe = shape.reduce(1, *) * 4
    guard shape.count == 3, perProbe > 0, bytes > 0, bytes % perProbe == 0 else {
        FileHandle.standardError.write(Data("error: --probes needs a float32 file under --models and --probe-shape H,W,C\n".utf8))
        exit(2)
    }
    plan.probes = Plan.Probes(path: probesPath, count: bytes / perProbe, shape: shape, bytes: bytes)
}
if let schedule = option("--schedule", arguments) {
    guard Plan.schedules.contains(schedule) else {
        FileHandle.standardError.write(Data("error: --schedule must be one of \(Plan.schedules.joined(separator: ", "))\n".utf8))
        exit(2)
    }
    plan.schedule = schedule
}

if plan.models?.isEmpty ?? true {
    FileHandle.standardError.write(Data("error: no .mlpackage or .mlmodelc under \(modelsPath)\n".utf8))
    exit(1)
}
let runs = await Benchmark(plan: plan).run(plan.models ?? [], in: folder)
do {
    let out = URL(fileURLWithPath: outPath)
    try FileManager.default.createDirectory(at: out.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Results.document(runs, runId: plan.runId, schedule: plan.schedule).write(to: out, options: .atomic)
} catch {
    FileHandle.standardError.write(Data("error: cannot write \(outPath): \(error)\n".utf8))
    exit(1)
}
for run in runs {
    // Counts only: the statistics are the host's (mbdeploy/runners/coreml_app.py).
    let samples = (run["samples_ms"] as? [Double] ?? []).count
    print("\(run["model"] ?? "?") \(run["compute_units"] ?? "?"): \(run["status"] ?? "?"), "
          + "\(samples) samples \(run["error"] as? String ?? "")")
}
let failed = runs.filter { $0["status"] as? String != "ok" }.count
exit(failed == 0 ? 0 : 1)
