import CoreML
import Foundation

/// Compiles and times the planned models for each compute-unit setting. It
/// only measures: statistics, storage and every decision stay on the host
/// (mbdeploy/runners/coreml_app.py).
public struct Benchmark {
    public let plan: Plan

    public init(plan: Plan) {
        self.plan = plan
    }

    /// Every .mlpackage and .mlmodelc at or below `folder`, as paths relative to it, sorted.
    public static func findModels(in folder: URL) -> [String] {
        // The path-based walker yields paths relative to `folder` itself (no symlink spelling to strip).
        guard let walker = FileManager.default.enumerator(atPath: folder.path) else { return [] }
        var found: [String] = []
        while let relative = walker.nextObject() as? String {
            if ["mlpackage", "mlmodelc"].contains(URL(fileURLWithPath: relative).pathExtension) {
                found.append(relative)
                walker.skipDescendants()  // a model is a folder; never look inside it
            }
        }
        return found.sorted()
    }

    /// The models to time: exactly the plan's, or every one found when the plan names none.
    public func models(in folder: URL) -> [Plan.Model] {
        plan.models ?? Benchmark.findModels(in: folder).map { Plan.Model(path: $0) }
    }

    /// One raw result per (model, compute units); a failure becomes a `failed` entry with the reason.
    public func run(_ models: [Plan.Model], in folder: URL) async -> [[String: Any]] {
        if plan.schedule == Plan.roundRobin { return await runRoundRobin(models, in: folder) }
        var results: [[String: Any]] = []
        for model in models {
            let url = folder.appendingPathComponent(model.path)
            let compiled: Result<(URL, Double), Error>
            do { compiled = .success(try await compile(url, expectedBytes: model.bytes)) } catch { compiled = .failure(error) }
            for unit in plan.computeUnits {
                var entry: [String: Any] = ["model": model.path, "compute_units": unit, "status": "failed"]
                do {
                    let (compiledURL, compileMs) = try compiled.get()
                    let timing = try time(compiledModel: compiledURL, computeUnits: unit, in: folder)
                    entry.merge(["status": "ok", "compile_ms": compileMs, "load_ms": timing.loadMs,
                                 "first_inference_ms": timing.firstMs, "samples_ms": timing.samplesMs,
                                 "thermal_states": timing.thermalStates]) { $1 }
                    if let outputs = timing.probeOutputs { entry["probe_outputs"] = outputs }
                } catch {
                    entry["error"] = String(describing: error)
                    entry["thermal_states"] = [Thermal.state()]
                }
                results.append(entry)
            }
        }
        return results
    }

    /// A profile's single-layer models, per compute-unit setting: all compiled and loaded (each
    /// with its load and first-prediction time), then `warmup` untimed rounds and `runs` timed
    /// rounds, a round being one prediction of every model in plan order. So each layer runs
    /// with the caches the other layers leave, as inside the whole model; counts, clock and
    /// thermal readings (after each timed round) are those of `run`. One entry per model and
    /// unit, in the same shape; a model that fails to load or predict is a `failed` entry.
    public func runRoundRobin(_ models: [Plan.Model], in folder: URL) async -> [[String: Any]] {
        var compiled: [Result<(URL, Double), Error>] = []
        for model in models {
            let url = folder.appendingPathComponent(model.path)
            do { compiled.append(.success(try await compile(url, expectedBytes: model.bytes))) } catch { compiled.append(.failure(error)) }
        }
        var results: [[String: Any]] = []
        for unit in plan.computeUnits {
            var entries: [[String: Any]] = models.map { model -> [String: Any] in
                ["model": model.path, "compute_units": unit, "status": "failed"]
            }
            var loaded: [LoadedModel] = []
            var states = [Thermal.state()]
            for (index, result) in compiled.enumerated() {
                do {
                    let (compiledURL, compileMs) = try result.get()
                    let item = try load(compiledModel: compiledURL, computeUnits: unit, index: index)
                    entries[index].merge(["compile_ms": compileMs, "load_ms": item.loadMs,
                                          "first_inference_ms": item.firstMs]) { $1 }
                    loaded.append(item)
                } catch {
                    entries[index]["error"] = String(describing: error)
                }
            }
            var samples = [[Double]](repeating: [], count: models.count)
            var errors: [Int: String] = [:]
            for turn in 0..<(plan.warmup + plan.runs) {
                for item in loaded where errors[item.index] == nil {
                    do {
                        let start = DispatchTime.now()
                        _ = try item.model.prediction(from: item.input)
                        let elapsed = Clock.ms(since: start)
                        if turn >= plan.warmup { samples[item.index].append(elapsed) }
                    } catch {
                        errors[item.index] = String(describing: error)
                    }
                }
                if turn >= plan.warmup {
                    let state = Thermal.state()  // read outside the timed spans
                    if state != states.last { states.append(state) }
                }
            }
            for index in entries.indices {
                if let error = errors[index] { entries[index]["error"] = error }
                if entries[index]["error"] == nil {
                    entries[index].merge(["status": "ok", "samples_ms": samples[index], "thermal_states": states]) { $1 }
                } else {
                    entries[index]["thermal_states"] = [states[0]]
                }
            }
            results += entries
        }
        return results
    }

    /// One compiled model loaded for a round-robin loop, with its load and first-prediction times.
    struct LoadedModel {
        let index: Int
        let model: MLModel
        let input: MLFeatureProvider
        let loadMs: Double
        let firstMs: Double
    }

    func load(compiledModel url: URL, computeUnits unit: String, index: Int) throws -> LoadedModel {
        let configuration = MLModelConfiguration()
        configuration.computeUnits = Self.computeUnits(named: unit)
        var start = DispatchTime.now()
        let model = try MLModel(contentsOf: url, configuration: configuration)
        let loadMs = Clock.ms(since: start)
        let input = try Inputs.make(for: model.modelDescription)
        start = DispatchTime.now()
        _ = try model.prediction(from: input)
        return LoadedModel(index: index, model: model, input: input, loadMs: loadMs, firstMs: Clock.ms(since: start))
    }

    /// .mlpackage files are compiled on the device, as an app shipping one would.
    func compile(_ model: URL, expectedBytes: Int?) async throws -> (URL, Double) {
        guard FileManager.default.fileExists(atPath: model.path) else {
            throw BenchError.missingModel(model.lastPathComponent)
        }
        if let expected = expectedBytes {
            let found = Files.bytes(of: model)
            if found != expected { throw BenchError.incompleteCopy(expected: expected, found: found) }
        }
        if model.pathExtension == "mlmodelc" { return (model, 0) }
        let start = DispatchTime.now()
        // The async form (iOS 16, macOS 13: the deployment targets); the synchronous one is deprecated.
        let compiled = try await MLModel.compileModel(at: model)
        return (compiled, Clock.ms(since: start))
    }

    public struct Timing {
        public var loadMs: Double
        public var firstMs: Double
        public var samplesMs: [Double]
        public var thermalStates: [String]  // before loading, then each change seen between timed runs
        public var probeOutputs: [[Double]]?  // the model's scores on the plan's probes, before timing
    }

    func time(compiledModel url: URL, computeUnits unit: String, in folder: URL) throws -> Timing {
        let configuration = MLModelConfiguration()
        configuration.computeUnits = Self.computeUnits(named: unit)
        var states = [Thermal.state()]

        var start = DispatchTime.now()
        let model = try MLModel(contentsOf: url, configuration: configuration)
        let loadMs = Clock.ms(since: start)

        // The plan's probe inputs first, with the same model and compute units as the timed runs:
        // the host compares the scores with its reference (a unit that computes wrong answers fast shows).
        var probeOutputs: [[Double]]? = nil
        if let probes = plan.probes {
            let values = try Inputs.probeValues(probes, in: folder)
            let size = probes.valuesPerProbe
            probeOutputs = try (0..<probes.count).map { index in
                let probe = try Inputs.probe(values[(index * size)..<((index + 1) * size)], for: model.modelDescription)
                return try Inputs.scores(try model.prediction(from: probe), of: model.modelDescription)
            }
        }

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
            let state = Thermal.state()  // read outside the timed span
            if state != states.last { states.append(state) }
        }
        return Timing(loadMs: loadMs, firstMs: firstMs, samplesMs: samples, thermalStates: states,
                      probeOutputs: probeOutputs)
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
