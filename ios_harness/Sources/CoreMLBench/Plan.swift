import Foundation

/// What the host asks for (`mbdeploy-plan.json` in Documents, written by
/// mbdeploy/runners/coreml_app.py). The plan names the exact models to time,
/// by path under Documents, so a model left over from an earlier run is never
/// timed again. With no plan file the app times every model it finds.
///
/// `schedule` says how several models are timed: "one_by_one" (each alone:
/// compile, load, time, then the next) or "round_robin" (a profile's
/// single-layer models: all loaded, then each timed run is one prediction of
/// every model in plan order, so each runs with the caches the others leave).
public struct Plan {
    public static let schema = "mbdeploy.coreml_app/3"
    public static let fileName = "mbdeploy-plan.json"
    public static let allComputeUnits = ["cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine", "all"]
    public static let oneByOne = "one_by_one"
    public static let roundRobin = "round_robin"
    public static let schedules = [oneByOne, roundRobin]

    public struct Model {
        public var path: String  // relative to the Documents folder
        public var bytes: Int?   // what the host copied; checked on arrival

        public init(path: String, bytes: Int? = nil) {
            self.path = path
            self.bytes = bytes
        }
    }

    /// Chosen inputs to run before timing (bench --check-outputs, eval --device): `count` images of
    /// `shape` (H, W, C), float32 little-endian, back to back, in one file under Documents.
    public struct Probes {
        public var path: String
        public var count: Int
        public var shape: [Int]
        public var bytes: Int

        public var valuesPerProbe: Int { shape.reduce(1, *) }
    }

    public var runId: String
    public var runs: Int
    public var warmup: Int
    public var computeUnits: [String]
    public var schedule: String
    public var models: [Model]?  // nil: every model found
    public var probes: Probes?  // nil: no outputs are written

    public init(runId: String = Plan.defaultRunId(), runs: Int = 50, warmup: Int = 5,
                computeUnits: [String] = Plan.allComputeUnits, schedule: String = Plan.oneByOne,
                models: [Model]? = nil, probes: Probes? = nil) {
        self.runId = runId
        self.runs = runs
        self.warmup = warmup
        self.computeUnits = computeUnits
        self.schedule = schedule
        self.models = models
        self.probes = probes
    }

    /// Reads a plan file; a missing file gives the defaults, a malformed one an error.
    public static func load(from url: URL) throws -> Plan {
        guard FileManager.default.fileExists(atPath: url.path) else { return Plan() }
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url))
        guard let json = object as? [String: Any] else { throw BenchError.badPlan("not a JSON object") }
        guard json["schema"] as? String == schema else { throw BenchError.badPlan("schema \(schema) expected") }
        var plan = Plan()
        if let value = json["run_id"] as? String { plan.runId = value }
        if let value = json["runs"] as? Int { plan.runs = max(1, value) }
        if let value = json["warmup"] as? Int { plan.warmup = max(0, value) }
        if let value = json["compute_units"] as? [String] {
            let unknown = value.filter { !allComputeUnits.contains($0) }
            guard unknown.isEmpty else { throw BenchError.badPlan("unknown compute units \(unknown)") }
            plan.computeUnits = value
        }
        if let value = json["schedule"] as? String {
            guard schedules.contains(value) else { throw BenchError.badPlan("unknown schedule \(value)") }
            plan.schedule = value
        }
        if let entries = json["models"] as? [[String: Any]] {
            plan.models = try entries.map { entry in
                guard let path = entry["path"] as? String, !path.hasPrefix("/"),
                      !path.split(separator: "/").contains("..") else {
                    throw BenchError.badPlan("a model path must be relative to Documents")
                }
                return Model(path: path, bytes: entry["bytes"] as? Int)
            }
        }
        if let entry = json["probes"] as? [String: Any] {
            guard let path = entry["path"] as? String, !path.hasPrefix("/"), !path.split(separator: "/").contains(".."),
                  let count = entry["count"] as? Int, count > 0, let shape = entry["shape"] as? [Int],
                  !shape.isEmpty, shape.allSatisfy({ $0 > 0 }), let bytes = entry["bytes"] as? Int,
                  bytes == count * shape.reduce(1, *) * 4 else {
                throw BenchError.badPlan("probes need a relative path, count, shape and bytes = count x shape x 4")
            }
            plan.probes = Probes(path: path, count: count, shape: shape, bytes: bytes)
        }
        return plan
    }

    /// The run id of a plan file even when the rest of it is unusable, so a
    /// failure report still reaches the host waiting for that run.
    public static func runIdHint(at url: URL) -> String {
        guard let data = try? Data(contentsOf: url),
              let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let runId = json["run_id"] as? String else { return "" }
        return runId
    }

    public static func defaultRunId() -> String {
        "coreml-app-" + String(Int(Date().timeIntervalSince1970))
    }
}

public enum BenchError: Error, CustomStringConvertible {
    case badPlan(String)
    case missingModel(String)
    case unsupportedInput(String)
    case incompleteCopy(expected: Int, found: Int)

    public var description: String {
        switch self {
        case .badPlan(let why): return "bad plan: \(why)"
        case .missingModel(let path): return "no model at Documents/\(path)"
        case .unsupportedInput(let what): return "unsupported model input: \(what)"
        case .incompleteCopy(let expected, let found):
            return "model arrived incomplete: \(found) of \(expected) bytes"
        }
    }
}
