import CoreML
import Foundation

/// Finds models, compiles them, and times load and predictions for each
/// compute-unit setting. It only measures: statistics, storage and every
/// decision stay on the host (mbdeploy/devices/ios.py).
public struct Benchmark {
    public let plan: Plan
    public let deviceKind: String  // "ios" in the app, "local" in the macOS tool

    public init(plan: Plan, deviceKind: String) {
        self.plan = plan
        self.deviceKind = deviceKind
    }

    /// Every .mlpackage and .mlmodelc at or below `folder`, sorted by path.
    public static func findModels(in folder: URL) -> [URL] {
        guard let walker = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil) else { return [] }
        var found: [URL] = []
        for case let url as URL in walker where ["mlpackage", "mlmodelc"].contains(url.pathExtension) {
            found.append(url)
            walker.skipDescendants()  // a model is a folder; never look inside it
        }
        return found.sorted { $0.path < $1.path }
    }

    /// The models the plan names, when it names any; otherwise all of them.
    /// Models left over from earlier runs (devicectl cannot delete them) are
    /// then not timed again.
    public func planned(_ models: [URL]) -> [URL] {
        guard !plan.artifacts.isEmpty else { return models }
        return models.filter { plan.artifacts[$0.lastPathComponent] != nil }
    }

    /// One record per (model, compute unit); a failure becomes a `failed` record.
    public func run(models: [URL]) -> [[String: Any]] {
        var records: [[String: Any]] = []
        for model in models {
            let artifact = artifactBlock(for: model)
            let compiled: Result<(URL, Double), Error> = Result { try compile(model, expectedBytes: artifact["bytes"] as? Int) }
            for unit in plan.computeUnits {
                let started = Timestamp.now()
                var record = Records.base(plan: plan, artifact: artifact, computeUnits: unit,
                                          deviceKind: deviceKind, startedAt: started)
                do {
                    let (url, compileMs) = try compiled.get()
                    let timing = try time(compiledModel: url, computeUnits: unit)
                    Records.fill(&record, with: timing, compileMs: compileMs)
                } catch {
                    record["status"] = "failed"
                    record["error"] = String(describing: error)
                }
                record["finished_at"] = Timestamp.now()
                records.append(record)
            }
        }
        return records
    }

    /// The host's artifact block for this file, or what the app can tell by itself.
    func artifactBlock(for model: URL) -> [String: Any] {
        if let given = plan.artifacts[model.lastPathComponent] { return given }
        let (digest, bytes) = TreeHash.sha256(of: model)
        return ["name": model.deletingPathExtension().lastPathComponent, "format": "coreml",
                "precision": "unknown", "sha256": digest, "bytes": bytes,
                "macs": NSNull(), "params": NSNull()]
    }

    /// .mlpackage files are compiled on the device, as an app shipping one would.
    func compile(_ model: URL, expectedBytes: Int?) throws -> (URL, Double) {
        if let expected = expectedBytes {
            let found = TreeHash.sha256(of: model).bytes
            if found != expected { throw BenchError.incompleteCopy(expected: expected, found: found) }
        }
        if model.pathExtension == "mlmodelc" { return (model, 0) }
        let start = DispatchTime.now()
        let compiled = try MLModel.compileModel(at: model)
        return (compiled, Clock.ms(since: start))
    }

    public struct Timing {
        public var loadMs: Double
        public var firstMs: Double
        public var samplesMs: [Double]
        public var thermalBefore: String
        public var thermalAfter: String
    }

    func time(compiledModel url: URL, computeUnits unit: String) throws -> Timing {
        let configuration = MLModelConfiguration()
        configuration.computeUnits = Self.computeUnits(named: unit)
        let thermalBefore = Thermal.state()

        var start = DispatchTime.now()
        let model = try MLModel(contentsOf: url, configuration: configuration)
        let loadMs = Clock.ms(since: start)

        let input = try Inputs.make(for: model.modelDescription)
        start = DispatchTime.now()
        _ = try model.prediction(from: input)
        let firstMs = Clock.ms(since: start)

        for _ in 0..<plan.warmup { _ = try model.prediction(from: input) }
        var samples: [Double] = []
        samples.reserveCapacity(plan.runs)
        for _ in 0..<plan.runs {
            start = DispatchTime.now()
            _ = try model.prediction(from: input)
            samples.append(Clock.ms(since: start))
        }
        return Timing(loadMs: loadMs, firstMs: firstMs, samplesMs: samples,
                      thermalBefore: thermalBefore, thermalAfter: Thermal.state())
    }

    static func computeUnits(named name: String) -> MLComputeUnits {
        switch name {
        case "cpuOnly": return .cpuOnly
        case "cpuAndGPU": return .cpuAndGPU
        case "cpuAndNeuralEngine": return .cpuAndNeuralEngine
        default: return .all
        }
    }
}

enum Clock {
    static func ms(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1_000_000
    }
}

enum Thermal {
    static func state() -> String {
        switch ProcessInfo.processInfo.thermalState {
        case .nominal: return "nominal"
        case .fair: return "fair"
        case .serious: return "serious"
        case .critical: return "critical"
        @unknown default: return "unknown"
        }
    }
}
