import Foundation

/// What the host asks for (`mbdeploy-plan.json` beside the models). Every
/// field is optional: with no plan the app times every model it finds with
/// the defaults below.
public struct Plan {
    public var runId: String
    public var runs: Int
    public var warmup: Int
    public var computeUnits: [String]
    /// Artifact blocks of the record schema, keyed by model file name; the
    /// host copies them from the manifests so records carry the real sha256.
    public var artifacts: [String: [String: Any]]

    public static let allComputeUnits = ["cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine", "all"]
    public static let fileName = "mbdeploy-plan.json"

    public init(runId: String = Plan.defaultRunId(), runs: Int = 50, warmup: Int = 5,
                computeUnits: [String] = Plan.allComputeUnits, artifacts: [String: [String: Any]] = [:]) {
        self.runId = runId
        self.runs = runs
        self.warmup = warmup
        self.computeUnits = computeUnits
        self.artifacts = artifacts
    }

    /// Reads a plan file; a missing file gives the defaults, a malformed one an error.
    public static func load(from url: URL) throws -> Plan {
        guard FileManager.default.fileExists(atPath: url.path) else { return Plan() }
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url))
        guard let json = object as? [String: Any] else { throw BenchError.badPlan("not a JSON object") }
        var plan = Plan()
        if let value = json["run_id"] as? String { plan.runId = value }
        if let value = json["runs"] as? Int { plan.runs = max(1, value) }
        if let value = json["warmup"] as? Int { plan.warmup = max(0, value) }
        if let value = json["compute_units"] as? [String] {
            let unknown = value.filter { !allComputeUnits.contains($0) }
            guard unknown.isEmpty else { throw BenchError.badPlan("unknown compute units \(unknown)") }
            plan.computeUnits = value
        }
        if let value = json["artifacts"] as? [String: [String: Any]] { plan.artifacts = value }
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
    case unsupportedInput(String)
    case incompleteCopy(expected: Int, found: Int)

    public var description: String {
        switch self {
        case .badPlan(let why): return "bad plan: \(why)"
        case .unsupportedInput(let what): return "unsupported model input: \(what)"
        case .incompleteCopy(let expected, let found):
            return "model arrived incomplete: \(found) of \(expected) bytes"
        }
    }
}
