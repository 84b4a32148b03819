"""A stand-in for the classic benchmark_model's tensor-file flags, for hosts without a phone.

The Android tool cannot run here. This plays the part of it that
`bench --check-outputs` depends on, following upstream's code
(google-ai-edge/LiteRT `tflite/tools/benchmark/benchmark_tflite_model.cc`,
read at f674577, re-read at 01d971c): `--input_layer`/`--input_layer_shape`
name the inputs in order and must have as many items as each other
(`PopulateInputLayerInfo`) and as the model has inputs, each shape with the
tensor's rank and no -1 (`Init`, which resizes the inputs to them);
`--input_layer_value_files=name:path` gives a named input a file (exactly one
unescaped ':' per item, `SplitInputLayerNameAndValueFile`; a name not in
`--input_layer` is a FATAL, `FindLayerInfoIndex`) that must hold exactly the
resized tensor's bytes (`LoadInputTensorData`, a FATAL otherwise); and
`--output_filepath` receives every output tensor's raw bytes back to back
after the last invoke (`OutputSaver::OnBenchmarkEnd`; a path it cannot open
is silently not written). The model runs on the
host's LiteRT with the flags' threads and XNNPACK setting. Flags the tool of
a given vintage does not know are ignored with upstream's "Unconsumed
cmdline flags" warning (`BenchmarkModel::ParseFlags`). Timing lines are a
transcript file's, when one is given.

Used by tests through a two-line wrapper script pushed as the "binary":
`main(sys.argv[1:], transcript=..., knows_files=..., wrong=...)`. `wrong`
reverses the output vector: a tool (or delegate) computing wrong answers.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)


def main(argv: list[str], transcript: str | None = None, knows_files: bool = True, wrong: bool = False) -> int:
    import numpy as np
    from ai_edge_litert import interpreter as litert

    flags = _flags(argv)
    if not knows_files:
        unknown = [a for a in argv if a.startswith(("--input_layer_value_files=", "--output_filepath="))]
        if unknown:
            print(f"WARN: Unconsumed cmdline flags: {' '.join(unknown)}", file=sys.stderr)
        flags = {k: v for k, v in flags.items() if k not in ("input_layer_value_files", "output_filepath")}
    if transcript:
        sys.stderr.write(Path(transcript).read_text())
    try:
        layers = _input_layers(flags)
    except ValueError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    if not any(path for _, _, path in layers) and not flags.get("output_filepath"):
        return 0  # a timed run: the transcript is all the host reads
    resolver = (litert.OpResolverType.AUTO if flags.get("use_xnnpack", "true") == "true"
                else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter = litert.Interpreter(model_path=flags["graph"], num_threads=int(flags.get("num_threads", "1")),
                                     experimental_op_resolver_type=resolver)
    details = interpreter.get_input_details()
    if layers and len(layers) != len(details):
        print(f"F Inputs mismatch: Model inputs #:{len(layers)} expected: {len(details)}", file=sys.stderr)
        return 134  # a failed CHECK aborts
    for (_, shape, _), detail in zip(layers, details):
        if len(shape) != len(detail["shape"]):
            print(f"ERROR: Input tensor #{detail['index']} should have {len(detail['shape'])} dimensions!",
                  file=sys.stderr)
            return 1
        interpreter.resize_tensor_input(detail["index"], shape)
    try:
        interpreter.allocate_tensors()
    except RuntimeError:
        print("ERROR: Failed to allocate tensors!", file=sys.stderr)
        return 1
    for (_, _, path), detail in zip(layers, interpreter.get_input_details()):
        if not path:
            continue  # upstream fills it with random values; the host never reads such an output
        try:
            data = Path(path).read_bytes()
        except OSError:
            print(f"F Failed to read the input_layer_value_file:{path}", file=sys.stderr)
            return 134
        size = int(np.prod(detail["shape"])) * np.dtype(detail["dtype"]).itemsize
        if len(data) != size:
            print(f"F The size of {path} is {len(data)} bytes. It should be {size} bytes.", file=sys.stderr)
            return 134
        interpreter.set_tensor(detail["index"], np.frombuffer(data, detail["dtype"]).reshape(detail["shape"]))
    interpreter.invoke()
    if flags.get("output_filepath"):
        try:
            out = open(flags["output_filepath"], "wb")
        except OSError:
            return 0  # upstream writes only if the stream opened, and says nothing
        with out:
            for detail in interpreter.get_output_details():
                y = interpreter.get_tensor(detail["index"])
                out.write((y[..., ::-1] if wrong else y).tobytes())
    return 0


def _split(text: str, separator: str) -> list[str]:
    return text.split(separator) if text else []  # upstream's Split: "" is no items, "a," is two


def _input_layers(flags: dict[str, str]) -> list[tuple[str, list[int], str | None]]:
    """(name, shape, value file) per --input_layer item, checked as upstream's ValidateParams does."""
    names, shapes = _split(flags.get("input_layer", ""), ","), _split(flags.get("input_layer_shape", ""), ":")
    if len(names) != len(shapes):
        raise ValueError(f"The number of items in --input_layer_shape ({flags.get('input_layer_shape', '')}, with "
                         f"{len(shapes)} items) must match the number of items in --input_layer "
                         f"({flags.get('input_layer', '')}, with {len(names)} items).")
    parsed = []
    for shape in shapes:
        try:
            dims = [int(d) for d in shape.split(",")]
        except ValueError:
            raise ValueError(f"Incorrect size string specified: {shape}") from None
        if -1 in dims:
            raise ValueError("Any unknown sizes in the shapes (-1's) must be replaced with the size you want to "
                             "benchmark with.")
        parsed.append(dims)
    files: dict[str, str] = {}
    for item in _split(flags.get("input_layer_value_files", ""), ","):
        name, path = _name_and_file(item)
        if name not in names:  # FindLayerInfoIndex: a FATAL upstream
            raise ValueError(f"Cannot find the corresponding input_layer name({name}) in --input_layer as "
                             f"{flags.get('input_layer', '')}")
        files[name] = path
    return [(name, dims, files.get(name)) for name, dims in zip(names, parsed)]


def _name_and_file(item: str) -> tuple[str, str]:
    """One `name:path` item: exactly one ':' that is not part of an escaped '::'."""
    delimiter, i = -1, 0
    while i < len(item) - 1:
        if item[i] == ":":
            if item[i + 1] == ":":
                i += 1
            elif delimiter == -1:
                delimiter = i
            else:
                raise ValueError(f"{item} contains more than one delimiter.")
        i += 1
    if delimiter == -1:
        raise ValueError(f"{item} doesn't contain any delimiter.")
    return item[:delimiter].replace("::", ":"), item[delimiter + 1:].replace("::", ":")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
