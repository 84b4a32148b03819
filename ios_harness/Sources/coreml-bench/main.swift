// coreml-bench: the harness on a Mac, over models converted by mbdeploy.
//   coreml-bench --models DIR [--runs N] [--warmup N] [--compute-units a,b] --out FILE
// Artifact blocks come from the manifest.json files under DIR, so records
// carry the converter's sha256, MACs and params. Used by .github/workflows/macos.yml.
import CoreMLBench
import Foundation

func option(_ name: String, _ arguments: [String]) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

/// Artifact blocks of the Core ML entries of every manifest under `folder`, keyed by file name.
func manifestArtifacts(under folder: URL) -> [String: [String: Any]] {
    var blocks: [String: [String: Any]] = [:]
    guard let walker = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil) else { return blocks }
    for case let url as URL in walker where url.lastPathComponent == "manifest.json" {
        guard let data = try? Data(contentsOf: url),
              let manifest = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let artifacts = manifest["artifacts"] as? [[String: Any]] else { continue }
        let spec = manifest["spec"] as? [String: Any] ?? [:]
        for entry in artifacts where entry["format"] as? String == "coreml" {
            guard let path = entry["path"] as? String else { continue }
            var block: [String: Any] = ["name": manifest["name"] ?? NSNull(), "format": "coreml",
                                        "manifest": url.path, "alpha": spec["alpha"] ?? NSNull(),
                                        "resolution": spec["resolution"] ?? NSNull()]
            for key in ["precision", "sha256", "bytes", "macs", "params"] { block[key] = entry[key] ?? NSNull() }
            blocks[URL(fileURLWithPath: path).lastPathComponent] = block
        }
    }
    return blocks
}

let arguments = CommandLine.arguments
guard let modelsPath = option("--models", arguments), let outPath = option("--out", arguments) else {
    FileHandle.standardError.write(Data("usage: coreml-bench --models DIR [--runs N] [--warmup N] [--compute-units a,b] --out FILE\n".utf8))
    exit(2)
}
let folder = URL(fileURLWithPath: modelsPath)
var plan = Plan(artifacts: manifestArtifacts(under: folder))
if let runs = option("--runs", arguments).flatMap({ Int($0) }) { plan.runs = max(1, runs) }
if let warmup = option("--warmup", arguments).flatMap({ Int($0) }) { plan.warmup = max(0, warmup) }
if let units = option("--compute-units", arguments) { plan.computeUnits = units.split(separator: ",").map(String.init) }

let models = Benchmark.findModels(in: folder)
if models.isEmpty {
    FileHandle.standardError.write(Data("error: no .mlpackage or .mlmodelc under \(modelsPath)\n".utf8))
    exit(1)
}
let records = Benchmark(plan: plan, deviceKind: "local").run(models: models)
do {
    let out = URL(fileURLWithPath: outPath)
    try FileManager.default.createDirectory(at: out.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Records.document(records).write(to: out, options: .atomic)
} catch {
    FileHandle.standardError.write(Data("error: cannot write \(outPath): \(error)\n".utf8))
    exit(1)
}
for record in records {
    let artifact = record["artifact"] as? [String: Any] ?? [:]
    let runner = record["runner"] as? [String: Any] ?? [:]
    let latency = record["latency_ms"] as? [String: Any]
    print("\(artifact["name"] ?? "?") \(artifact["precision"] ?? "?") \(runner["compute_units"] ?? "?"): "
          + "\(record["status"] ?? "?") median \(latency?["median"] ?? "-") ms \(record["error"] as? String ?? "")")
}
let failed = records.filter { $0["status"] as? String != "ok" }.count
exit(failed == 0 ? 0 : 1)
