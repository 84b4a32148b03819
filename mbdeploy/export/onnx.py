"""ONNX export (fp32, int8 static QDQ); onnxruntime, the host runtime verification and eval share; inspect.

The graph is written with `onnx.helper` straight from the layer plan and the
folded weights (no tf2onnx, so no dependence on its support for our
TensorFlow version), and its nodes carry the Slim layer names (`Conv2d_0`,
`Conv2d_1_depthwise`, ..., `Logits`, `Predictions`).

- Opset 17. Input `input`: float32 (1, H, W, 3), NHWC, RGB scaled to [-1, 1]
  as the manifest's `preprocessing` says; the first node transposes it to
  NCHW (ONNX convolutions are NCHW). Output `Predictions`: float32
  (1, classes) probabilities.
- Padding is TensorFlow's SAME written as explicit pads (extra at the
  bottom/right), so the graph means the same thing in every runtime.
- int8: onnxruntime's `quantize_static` in QDQ format on the same calibration
  images as the other formats: 8-bit weights per output channel and 8-bit
  activations (MinMax ranges), both unsigned with zero points (U8U8); float
  input and output. Signed int8 weights would be the usual choice for ARM, but
  onnxruntime's x86 kernels without VNNI (AVX2, as on this machine) saturate
  their 16-bit intermediate sums with them: on the official 0.5_160 weights
  the cosine to Keras fell to 0.74 (0.98 with the same Q/DQ run unfused),
  while U8U8 gives 0.988 on every CPU.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mbdeploy.architecture import layer_plan
from mbdeploy.atomic import temporary_path
from mbdeploy.errors import ConversionError, InvalidInput, MissingDependency
from mbdeploy.export import ExportJob, Predictor, predict_all
from mbdeploy.verify import compare

OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; widely loadable
INPUT_NAME = "input"
OUTPUT_NAME = "Predictions"


def import_onnx():
    try:
        import onnx
    except ImportError:
        raise MissingDependency("onnx", "onnx") from None
    return onnx


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependency("onnxruntime", "onnx") from None
    onnxruntime.set_default_logger_severity(3)  # errors only: its graph-optimizer notes are not ours
    return onnxruntime


def build_graph(job: ExportJob):
    """The fp32 ModelProto of the layer plan."""
    onnx = import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    spec, weights = job.spec, job.weights
    res = spec.resolution
    nodes = [helper.make_node("Transpose", [INPUT_NAME], ["input_nchw"], name="input_nchw", perm=[0, 3, 1, 2])]
    initializers = [numpy_helper.from_array(np.float32(0.0), "relu6_min"),
                    numpy_helper.from_array(np.float32(6.0), "relu6_max"),
                    numpy_helper.from_array(np.array([1, spec.classes], np.int64), "SpatialSqueeze_shape")]
    x = "input_nchw"
    for layer in layer_plan(spec):
        kernel, bias = weights.layers[layer.name]
        if layer.kind == "logits":
            nodes.append(helper.make_node("GlobalAveragePool", [x], ["AvgPool_1a"], name="AvgPool_1a"))
            x = "AvgPool_1a"
        weight = kernel.transpose(layer.nchw_weight_axes)
        before, after = layer.padding
        initializers += [numpy_helper.from_array(np.ascontiguousarray(weight, np.float32), f"{layer.name}/weights"),
                         numpy_helper.from_array(bias.astype(np.float32), f"{layer.name}/biases")]
        nodes.append(helper.make_node(
            "Conv", [x, f"{layer.name}/weights", f"{layer.name}/biases"], [layer.name], name=layer.name,
            kernel_shape=[layer.kernel] * 2, strides=[layer.stride] * 2, pads=[before, before, after, after],
            group=layer.groups,
        ))
        x = layer.name
        if layer.kind != "logits":
            relu = f"{layer.name}_relu6"
            nodes.append(helper.make_node("Clip", [x, "relu6_min", "relu6_max"], [relu], name=relu))
            x = relu
    nodes.append(helper.make_node("Reshape", [x, "SpatialSqueeze_shape"], ["SpatialSqueeze"], name="SpatialSqueeze"))
    nodes.append(helper.make_node("Softmax", ["SpatialSqueeze"], [OUTPUT_NAME], name=OUTPUT_NAME, axis=-1))
    graph = helper.make_graph(
        nodes, spec.name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, res, res, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, spec.classes])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mbdeploy",
                              doc_string="MobileNet v1; input NHWC RGB float32 in [-1, 1] (pixel / 127.5 - 1)")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over the job's calibration images."""

    def __init__(self, images: np.ndarray):
        self._batches = iter([{INPUT_NAME: image[None].astype(np.float32)} for image in images])

    def get_next(self):
        return next(self._batches, None)


def quantize(model, calibration: np.ndarray, out_path: Path) -> None:
    import_onnxruntime()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    onnx = import_onnx()
    with tempfile.TemporaryDirectory(prefix="mbdeploy-onnx-") as folder, _root_logger_quiet():
        float_path = Path(folder) / "float.onnx"
        onnx.save(model, str(float_path))
        quantize_static(
            str(float_path), str(out_path), _Calibration(calibration),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )


@contextmanager
def _root_logger_quiet():
    """The quantizer logs advice ("consider pre-processing") on the root logger."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def export(job: ExportJob, precision: str, out_path: Path) -> None:
    if precision not in ("fp32", "int8"):
        raise InvalidInput(f"precision {precision!r} is not supported for onnx; allowed: fp32, int8")
    onnx = import_onnx()
    model = build_graph(job)
    with temporary_path(Path(out_path)) as tmp:
        try:
            if precision == "fp32":
                onnx.save(model, str(tmp))
            else:
                quantize(model, job.calibration, tmp)
        except MissingDependency:
            raise
        except Exception as exc:
            raise ConversionError(f"ONNX {precision} export of {job.spec.name} failed: {exc}") from None


def predictor(path: Path, threads: int | None = None) -> Predictor:
    """onnxruntime (CPU) on one float HWC image -> 1-D scores.

    Our graphs take NHWC float32; an NCHW or float16 input is fed as it asks.
    `threads` None is onnxruntime's own default; verification pins 1.
    """
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    given = session.get_inputs()[0]
    if given.type not in ("tensor(float)", "tensor(float16)"):
        raise InvalidInput(f"{path}: ONNX input type {given.type} is not supported; float or float16 expected")
    channels_first = len(given.shape) == 4 and given.shape[1] == 3 and given.shape[3] != 3
    dtype = np.float16 if given.type == "tensor(float16)" else np.float32

    def predict(image: np.ndarray) -> np.ndarray:
        batch = image.transpose(2, 0, 1)[None] if channels_first else image[None]
        return session.run(None, {given.name: batch.astype(dtype)})[0][0].astype(np.float32)

    return predict


def verify(job: ExportJob, precision: str, path: Path) -> dict:
    return compare("onnx", precision, predict_all(predictor(path, threads=1), job.probes), job.reference,
                   verifier="onnxruntime")


# --- inspect -----------------------------------------------------------------

def inspect(path: Path) -> dict:
    from mbdeploy.inspection import classify_conv, summarize

    onnx = import_onnx()
    try:
        model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    except Exception as exc:  # onnx raises DecodeError and others for a non-model
        raise InvalidInput(f"{Path(path).name} is not a readable ONNX model: {str(exc).splitlines()[0]}") from None
    graph = model.graph
    shapes = {info.name: [d.dim_value for d in info.type.tensor_type.shape.dim]
              for info in list(graph.input) + list(graph.value_info) + list(graph.output)}
    initializers = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}

    def stored(name: str):
        """The initializer behind a tensor, looking through a DequantizeLinear (QDQ weights)."""
        node = producers.get(name)
        if node is not None and node.op_type == "DequantizeLinear":
            name = node.input[0]
        return initializers.get(name)

    layers = []
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        weight = stored(node.input[1])
        bias = stored(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if weight is None:
            continue
        w_shape = list(weight.dims)
        out_shape = shapes.get(node.output[0]) or []
        if node.op_type == "Conv":
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            in_shape = shapes.get(node.input[0]) or [0, 0, 0, 0]
            kernel, in_size = w_shape[2], in_shape[2]
            kind = "depthwise" if groups > 1 and groups == in_shape[1] else "conv"
            per_output = int(np.prod(w_shape[1:]))
        else:
            # Gemm with transB=1 (PyTorch's Linear) stores the weight (out, in); MatMul and Gemm otherwise (in, out).
            transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
            kind, kernel, in_size = "fully_connected", 1, 1
            per_output = w_shape[1] if transposed else w_shape[0]
        layers.append({
            "name": node.name, "op": node.op_type, "type": classify_conv(kind, kernel, in_size),
            "macs": int(np.prod(out_shape)) * per_output,
            "params": int(np.prod(w_shape)) + (int(np.prod(bias.dims)) if bias is not None else 0),
        })
    report = summarize("onnx", Path(path), [_value_info(i) for i in graph.input if i.name not in initializers],
                       [_value_info(o) for o in graph.output], Counter(node.op_type for node in graph.node), layers)
    report["onnx"] = {"opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0),
                      "ir_version": int(model.ir_version), "producer": model.producer_name}
    return report


def _value_info(info) -> dict:
    from onnx import helper

    tensor = info.type.tensor_type
    return {"name": info.name, "shape": [d.dim_value or d.dim_param for d in tensor.shape.dim],
            "dtype": np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name, "quantization": None}
