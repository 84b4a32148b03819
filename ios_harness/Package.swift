// swift-tools-version:5.9
// The Core ML benchmark harness: a library that finds, compiles and times
// models, a macOS command-line tool over it (run in CI on converted models),
// and an iOS app target generated from project.yml (see README.md).
import PackageDescription

let package = Package(
    name: "CoreMLBench",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [
        .library(name: "CoreMLBench", targets: ["CoreMLBench"]),
        .executable(name: "coreml-bench", targets: ["coreml-bench"]),
    ],
    targets: [
        .target(name: "CoreMLBench"),
        .executableTarget(name: "coreml-bench", dependencies: ["CoreMLBench"]),
    ]
)
