import Foundation

/// The app's output, `mbdeploy-results.json`: raw figures only. One entry per
/// (model, compute units) with its compile, load and first-prediction times,
/// every timed sample and the thermal states seen, and the plan's schedule
/// (a profile's single-layer models: one entry per layer); the host computes
/// the statistics and the throttle verdict (mbdeploy/runners/coreml_app.py).
public enum Results {
    public static let fileName = "mbdeploy-results.json"
    public static let doneFile = "mbdeploy-done"

    /// `{"schema", "run_id", "schedule", "device", "runs": [...]}`, plus `"error"`
    /// when the app could not run at all (the host reports it; no schedule then).
    public static func document(_ runs: [[String: Any]], runId: String, schedule: String? = nil,
                                error: String? = nil) throws -> Data {
        var document: [String: Any] = ["schema": Plan.schema, "run_id": runId, "runs": runs,
                                       "device": DeviceFacts.block()]
        if let schedule = schedule { document["schedule"] = schedule }
        if let error = error { document["error"] = error }
        return try JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }

    /// Writes the results into `folder`, then the done marker the host waits
    /// for; the marker holds the run id, so a previous run's is never taken.
    public static func write(_ runs: [[String: Any]], runId: String, schedule: String? = nil, error: String? = nil,
                             to folder: URL) throws {
        try document(runs, runId: runId, schedule: schedule, error: error).write(to: folder.appendingPathComponent(fileName), options: .atomic)
        try Data("\(runId)\n".utf8).write(to: folder.appendingPathComponent(doneFile), options: .atomic)
    }
}

/// What the device can say about itself; the host knows its UDID.
enum DeviceFacts {
    static func block() -> [String: Any] {
        let version = ProcessInfo.processInfo.operatingSystemVersion
        #if os(iOS)
        let os = "iOS"
        #else
        let os = "macOS"
        #endif
        return ["model": hardwareModel(), "cores": ProcessInfo.processInfo.activeProcessorCount,
                "os": "\(os) \(version.majorVersion).\(version.minorVersion).\(version.patchVersion)"]
    }

    /// e.g. "iPhone15,2" on a phone, "Mac14,2" on a Mac.
    static func hardwareModel() -> String {
        #if os(macOS)
        var size = 0
        sysctlbyname("hw.model", nil, &size, nil, 0)
        var buffer = [CChar](repeating: 0, count: max(size, 1))
        sysctlbyname("hw.model", &buffer, &size, nil, 0)
        return String(cString: buffer)
        #else
        var system = utsname()
        uname(&system)
        return withUnsafeBytes(of: &system.machine) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        #endif
    }
}

/// The byte count of a model: a file's size, or the sum over a folder's files
/// (the host counts the same way before it copies).
enum Files {
    static func bytes(of url: URL) -> Int {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder) else { return 0 }
        guard isFolder.boolValue else {
            return ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? Int) ?? 0
        }
        var total = 0
        if let walker = FileManager.default.enumerator(at: url, includingPropertiesForKeys: [.isRegularFileKey, .fileSizeKey]) {
            for case let file as URL in walker {
                let values = try? file.resourceValues(forKeys: [.isRegularFileKey, .fileSizeKey])
                if values?.isRegularFile == true { total += values?.fileSize ?? 0 }
            }
        }
        return total
    }
}
