"""The format registry: every list of formats, click choice and schema enum derives from it.

Light on purpose (no numpy, no exporter): the sweep, `select` and the CLI read
it without loading any conversion library. The exporter and the host runtime
of each format are the modules it names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FormatInfo:
    name: str
    exporter: str  # module with export(job, precision, path) and verify(job, precision, path)
    runtime: str  # module with predictor(path): the host runtime verify and eval share
    runtime_tool: str  # the distribution that runtime is, whose version eval records
    suffix: str
    precisions: tuple[str, ...]
    default_precisions: tuple[str, ...]
    requires: tuple[str, ...]  # importable modules the format needs
    extra: str | None  # the pip extra that installs them
    folder: bool = False  # the artifact is a folder (.mlpackage), not a file
    # The platform whose own runtime runs the format; elsewhere the host runtime is a slow reference (None: any).
    native_platform: str | None = None


FORMATS: dict[str, FormatInfo] = {info.name: info for info in (
    FormatInfo("tflite", "mbdeploy.export.tflite", "mbdeploy.export.tflite", "ai-edge-litert", ".tflite",
               ("fp32", "fp16", "dynamic", "int8"), ("fp32", "fp16", "dynamic", "int8"), ("tensorflow",), "convert"),
    FormatInfo("coreml", "mbdeploy.export.coreml", "mbdeploy.export.coreml", "coremltools", ".mlpackage",
               ("fp32", "fp16", "int8", "w8a8"), ("fp16", "int8"), ("coremltools",), "coreml", folder=True,
               native_platform="darwin"),
    FormatInfo("onnx", "mbdeploy.export.onnx", "mbdeploy.export.onnx", "onnxruntime", ".onnx",
               ("fp32", "int8"), ("fp32", "int8"), ("onnx", "onnxruntime"), "onnx"),
)}
FORMAT_NAMES: tuple[str, ...] = tuple(FORMATS)
# Plain model files `bench` takes without a manifest, by suffix.
PLAIN_SUFFIXES: dict[str, str] = {".tflite": "tflite"}


def format_of_suffix(suffix: str) -> str | None:
    return next((info.name for info in FORMATS.values() if info.suffix == suffix), None)


def eval_default_formats(platform: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(formats `eval` runs when none are named, formats it leaves out) on this platform.

    Core ML off macOS runs in the numpy reference executor, about 25x slower than the
    other runtimes (benchmarks/bench_host_runtimes.py): left out unless named.
    """
    chosen = tuple(n for n, f in FORMATS.items() if f.native_platform in (None, platform))
    return chosen, tuple(n for n in FORMATS if n not in chosen)
