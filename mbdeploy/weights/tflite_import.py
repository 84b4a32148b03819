"""Trained weights read out of an existing MobileNet v1 `.tflite`.

The convolutions are taken in execution order and matched to the layer plan
(shape-checked); quantized tensors are dequantized with their own scales and
zero points. Batch norm is already folded into the conv biases there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mbdeploy.architecture import ModelSpec, layer_plan
from mbdeploy.atomic import sha256_file
from mbdeploy.errors import WeightsError
from mbdeploy.weights import ModelWeights, check_shapes

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def open_interpreter(path: Path):
    """A LiteRT interpreter without the XNNPACK delegate, so the op list is the model's own."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        interpreter = Interpreter(
            model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        text = str(exc).strip().splitlines()
        raise WeightsError(f"{Path(path).name} is not a readable .tflite model: {text[0] if text else exc}") from None
    return interpreter


def dequantize(interpreter, index: int, details: dict) -> np.ndarray:
    raw = interpreter.get_tensor(index)
    if raw.dtype in (np.float32, np.float16):
        return raw.astype(np.float32)
    quant = details["quantization_parameters"]
    scales, zero_points = quant["scales"], quant["zero_points"]
    if len(scales) == 0:
        raise WeightsError(f"tensor {details['name']} is {raw.dtype} without quantization parameters")
    shape = [1] * raw.ndim
    if len(scales) > 1:
        shape[quant["quantized_dimension"]] = -1
    return ((raw.astype(np.float32) - zero_points.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def load_tflite_weights(path: Path, alpha: float) -> ModelWeights:
    interpreter = open_interpreter(path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    convs = [op for op in interpreter._get_ops_details() if op["op_name"] in CONV_OPS]
    if not convs:
        raise WeightsError(f"{path.name} has no convolutions: not a MobileNet v1 model")
    logits_filter = tensors[convs[-1]["inputs"][1]]
    classes = int(logits_filter["shape"][0])
    spec = ModelSpec(alpha, 224, classes)
    plan = layer_plan(spec)
    if len(convs) != len(plan):
        raise WeightsError(
            f"{path.name} has {len(convs)} convolution layers; MobileNet v1 has {len(plan)}"
        )
    layers = {}
    for layer, op in zip(plan, convs):
        filter_index, bias_index = op["inputs"][1], op["inputs"][2]
        kernel = dequantize(interpreter, filter_index, tensors[filter_index])
        # LiteRT stores conv filters OHWI and depthwise filters 1HWC; ours are HWIO / HWC1.
        if op["op_name"] == "FULLY_CONNECTED":
            kernel = kernel.T.reshape(1, 1, *kernel.T.shape)
        else:
            kernel = np.transpose(kernel, (1, 2, 3, 0))
        if tuple(kernel.shape) != layer.kernel_shape:
            raise WeightsError(
                f"{path.name}: {layer.name} ({tensors[filter_index]['name']}) has shape "
                f"{tuple(kernel.shape)}, expected {layer.kernel_shape} for alpha {alpha:g} "
                "(a model of another width multiplier?)"
            )
        bias = dequantize(interpreter, bias_index, tensors[bias_index]) if bias_index >= 0 else np.zeros(
            layer.out_channels, np.float32
        )
        layers[layer.name] = (np.ascontiguousarray(kernel), bias)
    input_details = interpreter.get_input_details()[0]
    weights = ModelWeights(
        layers, "tflite", sha256_file(path), trained=True, classes=classes,
        details={"file": path.name, "input_dtype": np.dtype(input_details["dtype"]).name},
    )
    check_shapes(weights, spec, path.name)
    return weights
