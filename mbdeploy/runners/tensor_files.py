"""The classic benchmark_model's raw tensor files: what `--input_layer_value_files` reads and `--output_filepath` writes.

Both layouts are read from upstream (google-ai-edge/LiteRT
`tflite/tools/benchmark/benchmark_tflite_model.cc`, checked at f674577):

- an input file holds one input tensor's bytes exactly, in the tensor's own
  type (`LoadInputTensorData` refuses a file whose size is not `t.bytes`);
  an int8 model's input file therefore holds quantized int8 values;
- the output file (`OutputSaver::OnBenchmarkEnd`) holds every output tensor's
  raw bytes, in the interpreter's output order, back to back, no header: the
  outputs of the last invoke.

The tensor types and quantization come from the artifact's flatbuffer on the
host (the schema ai_edge_litert ships), so an int8 input is quantized and an
int8 output dequantized here exactly as the litert device script does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from mbdeploy.errors import RunnerError

if TYPE_CHECKING:
    import numpy as np

    from mbdeploy.runners.base import Probes


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: str  # numpy name: float32, int8, uint8, ...
    scale: float | None = None  # per-tensor quantization; None for a float tensor
    zero_point: int = 0

    @property
    def bytes(self) -> int:
        import numpy as np

        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


def model_io(model: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The inputs and outputs of a .tflite's first subgraph, read from the file (no interpreter)."""
    from ai_edge_litert import schema_py_generated as schema

    data = Path(model).read_bytes()
    if not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise RunnerError(f"{model} is not a TFLite flatbuffer (no TFL3 identifier)")
    graph = schema.ModelT.InitFromPackedBuf(data, 0).subgraphs[0]
    names = {value: key.lower() for key, value in vars(schema.TensorType).items() if not key.startswith("_")}

    def spec(index: int) -> TensorSpec:
        tensor = graph.tensors[index]
        q = tensor.quantization
        scale = zero = None
        if q is not None and q.scale is not None and len(q.scale) == 1:
            scale, zero = float(q.scale[0]), int(q.zeroPoint[0])
        return TensorSpec(tuple(int(d) for d in tensor.shape), names.get(tensor.type, str(tensor.type)),
                          scale, zero or 0)

    return [spec(i) for i in graph.inputs], [spec(i) for i in graph.outputs]


def input_bytes(probe: "np.ndarray", spec: TensorSpec) -> bytes:
    """One probe (float, H x W x C) as the tool's input file for a tensor of `spec`."""
    import numpy as np

    x = np.asarray(probe, np.float32).reshape(spec.shape)
    dtype = np.dtype(spec.dtype)
    if np.issubdtype(dtype, np.integer):
        if spec.scale is None:
            raise RunnerError(f"the model's {spec.dtype} input has no per-tensor quantization to feed floats through")
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / spec.scale + spec.zero_point), info.min, info.max)
    return x.astype(dtype.newbyteorder("<")).tobytes()  # Android and Linux boards are little-endian


def first_output(raw: bytes, outputs: list[TensorSpec]) -> list[float]:
    """The first output tensor, dequantized, from the tool's output file (all outputs back to back)."""
    import numpy as np

    expected = sum(spec.bytes for spec in outputs)
    if len(raw) != expected:
        raise RunnerError(f"the output file holds {len(raw)} bytes; the model's outputs are {expected} bytes "
                          f"({', '.join(f'{s.dtype}{list(s.shape)}' for s in outputs)})")
    spec = outputs[0]
    y = np.frombuffer(raw[:spec.bytes], dtype=np.dtype(spec.dtype).newbyteorder("<")).astype(np.float32)
    if np.issubdtype(np.dtype(spec.dtype), np.integer):
        if spec.scale is None:
            raise RunnerError(f"the model's {spec.dtype} output has no per-tensor quantization to dequantize")
        y = (y - spec.zero_point) * spec.scale
    if not np.all(np.isfinite(y)):
        raise RunnerError("the output file holds non-finite values")
    return [float(v) for v in y]


def through_files(probes: "Probes", push_input: "Callable[[bytes], str]",
                  run_tool: "Callable[[str, tuple[int, ...], int], bytes]") -> list[list[float]]:
    """Each probe through the tool: its input file pushed, the tool run once, its output file read back.

    `push_input(data)` puts one input file on the device and returns its path; `run_tool(remote_input,
    input_shape, output_bytes)` runs the tool on it and returns the output file's bytes.
    """
    inputs, outputs = model_io(probes.model)
    if len(inputs) != 1 or not outputs:
        raise RunnerError(f"the model has {len(inputs)} inputs and {len(outputs)} outputs; "
                          "probe inputs feed models of one image input")
    [spec] = inputs
    if tuple(probes.inputs.shape[1:]) != spec.shape[1:]:
        raise RunnerError(f"the probe inputs are {list(probes.inputs.shape[1:])}; the model takes {list(spec.shape)}")
    total = sum(s.bytes for s in outputs)
    results = []
    for probe in probes.inputs:
        remote = push_input(input_bytes(probe, spec))
        results.append(first_output(run_tool(remote, spec.shape, total), outputs))
    return results
