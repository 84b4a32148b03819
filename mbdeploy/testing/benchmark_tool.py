"""A stand-in for the classic benchmark_model's tensor-file flags, for hosts without a phone.

The Android tool cannot run here. This plays the part of it that
`bench --check-outputs` depends on, following upstream's code
(google-ai-edge/LiteRT `tflite/tools/benchmark/benchmark_tflite_model.cc`,
read at f674577): `--input_layer`/`--input_layer_shape` name the inputs in
order, `--input_layer_value_files=name:path` gives each a file that must hold
exactly the tensor's bytes (`LoadInputTensorData`, a FATAL otherwise), and
`--output_filepath` receives every output tensor's raw bytes back to back
after the last invoke (`OutputSaver::OnBenchmarkEnd`). The model runs on the
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
    files = dict(item.split(":", 1) for item in flags.get("input_layer_value_files", "").split(",") if item)
    if not files and not flags.get("output_filepath"):
        return 0  # a timed run: the transcript is all the host reads
    resolver = (litert.OpResolverType.AUTO if flags.get("use_xnnpack", "true") == "true"
                else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter = litert.Interpreter(model_path=flags["graph"], num_threads=int(flags.get("num_threads", "1")),
                                     experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    names = [n for n in flags.get("input_layer", "").split(",") if n]
    for position, detail in enumerate(interpreter.get_input_details()):
        path = files.get(names[position]) if position < len(names) else None
        if path is None:
            continue  # upstream fills it with random values; the host never reads such an output
        data = Path(path).read_bytes()
        size = int(np.prod(detail["shape"])) * np.dtype(detail["dtype"]).itemsize
        if len(data) != size:
            print(f"ERROR: The size of {path} is {len(data)} bytes. It should be {size} bytes.", file=sys.stderr)
            return 1
        interpreter.set_tensor(detail["index"], np.frombuffer(data, detail["dtype"]).reshape(detail["shape"]))
    interpreter.invoke()
    if flags.get("output_filepath"):
        with open(flags["output_filepath"], "wb") as out:
            for detail in interpreter.get_output_details():
                y = interpreter.get_tensor(detail["index"])
                out.write((y[..., ::-1] if wrong else y).tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
