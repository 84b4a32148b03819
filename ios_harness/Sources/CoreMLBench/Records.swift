import CryptoKit
import Foundation

/// Records in the common schema (mbdeploy/schemas/record.schema.json), runner
/// `coreml_app`, format `coreml`. The app writes raw samples and a plain
/// summary; the host recomputes the statistics from the samples.
public enum Records {
    public static let appSchema = "mbdeploy.coreml_app/1"
    public static let resultsFile = "mbdeploy-results.json"
    public static let doneFile = "mbdeploy-done"

    static func base(plan: Plan, artifact: [String: Any], computeUnits: String,
                     deviceKind: String, startedAt: String) -> [String: Any] {
        [
            "schema": "mbdeploy.record/1",
            "run_id": plan.runId,
            "status": "failed",
            "error": NSNull(),
            "started_at": startedAt,
            "finished_at": startedAt,
            "device": DeviceFacts.block(kind: deviceKind),
            "artifact": artifact,
            "runner": ["name": "coreml_app", "threads": NSNull(), "delegate": computeUnits,
                       "compute_units": computeUnits, "runs": plan.runs, "warmup": plan.warmup] as [String: Any],
            "config_key": "coreml_app/\(computeUnits)/runs=\(plan.runs)/warmup=\(plan.warmup)",
            "latency_ms": NSNull(),
            "samples_ms": [Double](),
            "init_ms": NSNull(),
            "first_inference_ms": NSNull(),
            "peak_memory_mb": NSNull(),
            "power": ["status": "unavailable", "reason": "iOS gives apps no power or current reading"],
            "thermal": [String: Any](),
            "throttled": false,
        ]
    }

    static func fill(_ record: inout [String: Any], with timing: Benchmark.Timing, compileMs: Double) {
        let sorted = timing.samplesMs.sorted()
        let count = sorted.count
        let mean = sorted.reduce(0, +) / Double(count)
        let variance = count > 1 ? sorted.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(count - 1) : 0
        let median = count % 2 == 1 ? sorted[count / 2] : (sorted[count / 2 - 1] + sorted[count / 2]) / 2
        record["status"] = "ok"
        record["latency_ms"] = ["median": median, "mean": mean, "std": variance.squareRoot(),
                                "min": sorted.first ?? 0, "max": sorted.last ?? 0, "count": count] as [String: Any]
        record["samples_ms"] = timing.samplesMs
        record["init_ms"] = timing.loadMs
        record["compile_ms"] = compileMs
        record["first_inference_ms"] = timing.firstMs
        record["stop_reason"] = "runs"
        record["thermal"] = ["state_before": timing.thermalBefore, "state_after": timing.thermalAfter]
        record["throttled"] = ["serious", "critical"].contains(timing.thermalAfter)
    }

    /// The app's output: `{"schema": "mbdeploy.coreml_app/1", "records": [...]}`, plus
    /// `"error"` when the app could not run at all (the host reports it).
    public static func document(_ records: [[String: Any]], error: String? = nil) throws -> Data {
        var document: [String: Any] = ["schema": appSchema, "records": records]
        if let error = error { document["error"] = error }
        return try JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys])
    }

    /// Writes the results into `folder`, then the done marker the host waits
    /// for; the marker holds the run id, so a previous run's is never taken.
    public static func write(_ records: [[String: Any]], runId: String, error: String? = nil, to folder: URL) throws {
        try document(records, error: error).write(to: folder.appendingPathComponent(resultsFile), options: .atomic)
        try Data("\(runId)\n".utf8).write(to: folder.appendingPathComponent(doneFile), options: .atomic)
    }
}

enum Timestamp {
    static func now() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date())
    }
}

/// What the device can say about itself; the host adds the UDID.
enum DeviceFacts {
    static func block(kind: String) -> [String: Any] {
        let version = ProcessInfo.processInfo.operatingSystemVersion
        #if os(iOS)
        let os = "iOS"
        #else
        let os = "macOS"
        #endif
        return ["kind": kind, "id": kind == "ios" ? "this-device" : "localhost", "model": hardwareModel(),
                "os": "\(os) \(version.majorVersion).\(version.minorVersion).\(version.patchVersion)",
                "abi": "arm64", "cores": ProcessInfo.processInfo.activeProcessorCount, "soc": NSNull()]
    }

    /// e.g. "iPhone15,2" on a phone, "Mac14,2" on a Mac.
    static func hardwareModel() -> String {
        #if os(iOS)
        var system = utsname()
        uname(&system)
        return withUnsafeBytes(of: &system.machine) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        #else
        var size = 0
        sysctlbyname("hw.model", nil, &size, nil, 0)
        var buffer = [CChar](repeating: 0, count: max(size, 1))
        sysctlbyname("hw.model", &buffer, &size, nil, 0)
        return String(cString: buffer)
        #endif
    }
}

/// A model is a folder (or a file): its sha256 is taken over the relative
/// paths and contents of its files in sorted order, and its size is the sum.
enum TreeHash {
    static func sha256(of url: URL) -> (digest: String, bytes: Int) {
        var hasher = SHA256()
        var total = 0
        var files: [(String, URL)] = []
        var isFolder: ObjCBool = false
        FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder)
        if isFolder.boolValue, let walker = FileManager.default.enumerator(at: url, includingPropertiesForKeys: [.isRegularFileKey]) {
            for case let file as URL in walker where (try? file.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
                files.append((String(file.path.dropFirst(url.path.count)), file))
            }
        } else {
            files.append((url.lastPathComponent, url))
        }
        for (relative, file) in files.sorted(by: { $0.0 < $1.0 }) {
            guard let data = try? Data(contentsOf: file, options: .mappedIfSafe) else { continue }
            hasher.update(data: Data(relative.utf8))
            hasher.update(data: data)
            total += data.count
        }
        return (hasher.finalize().map { String(format: "%02x", $0) }.joined(), total)
    }
}
