"""`mbdeploy inspect`: what any model file contains, counted from the file itself.

Works on any `.tflite` made anywhere (and, through the Core ML and ONNX
modules, on `.mlpackage` and `.onnx`): inputs and outputs with their
quantization, an op histogram, params and MACs per convolution, and the
paper's Table 2 breakdown by layer type.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from mbdeploy.accounting import Cost, breakdown_from_costs
from mbdeploy.errors import InvalidInput
from mbdeploy.formats import FORMATS

INSPECTABLE = {info.suffix: name for name, info in FORMATS.items()}


def inspect_model(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"{path} does not exist")
    kind = INSPECTABLE.get(path.suffix.lower())
    if kind is None:
        raise InvalidInput(f"cannot inspect {path.name}; allowed: {', '.join(INSPECTABLE)}")
    if kind == "tflite":
        return inspect_tflite(path)
    import importlib

    return importlib.import_module(FORMATS[kind].exporter).inspect(path)


def classify_conv(kind: str, kernel: int, in_size: int) -> str:
    """Which Table 2 row a convolution belongs to."""
    if kind == "fully_connected" or (kernel == 1 and in_size == 1):
        return "logits"
    if kind == "depthwise":
        return "depthwise"
    return "pointwise" if kernel == 1 else "conv"


def summarize(fmt: str, path: Path, inputs: list, outputs: list, ops: Counter, layers: list[dict]) -> dict:
    """The common inspection record every format produces."""
    by_kind: dict[str, Cost] = {}
    for layer in layers:
        previous = by_kind.get(layer["type"], Cost(0, 0))
        by_kind[layer["type"]] = Cost(previous.macs + layer["macs"], previous.params + layer["params"])
    return {
        "path": str(path),
        "format": fmt,
        "inputs": inputs,
        "outputs": outputs,
        "ops": dict(sorted(ops.items(), key=lambda item: (-item[1], item[0]))),
        "macs": sum(layer["macs"] for layer in layers),
        "params": sum(layer["params"] for layer in layers),
        "breakdown": breakdown_from_costs(by_kind),
        "layers": layers,
    }


def inspect_tflite(path: Path) -> dict:
    from mbdeploy.weights.tflite_import import open_interpreter

    interpreter = open_interpreter(path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    layers = []
    for op in ops:
        name = op["op_name"]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        source, weights, bias = (tensors.get(i) for i in list(op["inputs"]) + [None] * (3 - len(op["inputs"])))
        out_shape = tensors[op["outputs"][0]]["shape"]
        w_shape = weights["shape"]
        if name == "FULLY_CONNECTED":
            kind, kernel, in_size = "fully_connected", 1, 1
            macs = int(np.prod(out_shape)) * int(w_shape[-1])
        else:
            kernel, in_size = int(w_shape[1]), int(source["shape"][1])
            kind = "depthwise" if name == "DEPTHWISE_CONV_2D" else "conv"
            per_output = int(w_shape[1] * w_shape[2]) * (1 if kind == "depthwise" else int(w_shape[3]))
            macs = int(np.prod(out_shape)) * per_output
        params = int(np.prod(w_shape)) + (int(np.prod(bias["shape"])) if bias is not None else 0)
        layers.append({"name": tensors[op["outputs"][0]]["name"], "op": name,
                       "type": classify_conv(kind, kernel, in_size), "macs": macs, "params": params})
    report = summarize(
        "tflite", path,
        [_tensor_info(t) for t in interpreter.get_input_details()],
        [_tensor_info(t) for t in interpreter.get_output_details()],
        Counter(op["op_name"] for op in ops),
        layers,
    )
    report["precision"] = tflite_precision(report["inputs"][0]["dtype"], tensors, ops)
    return report


def tflite_precision(input_dtype: str, tensors: dict, ops: list) -> str:
    """What a .tflite was quantized to, read from its tensors (for files without a manifest)."""
    if input_dtype in ("int8", "uint8"):
        return input_dtype  # full integer: Google's quant models are uint8, ours int8
    filters = [tensors[op["inputs"][1]] for op in ops
               if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(op["inputs"]) > 1]
    if any(np.dtype(t["dtype"]) in (np.int8, np.uint8) for t in filters):
        return "dynamic"
    if any(np.dtype(t["dtype"]) == np.float16 for t in tensors.values()):
        return "fp16"
    return "fp32"


def _tensor_info(details: dict) -> dict:
    scale, zero_point = details.get("quantization", (0.0, 0))
    return {
        "name": details["name"],
        "shape": [int(d) for d in details["shape"]],
        "dtype": np.dtype(details["dtype"]).name,
        "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if scale else None,
    }
