"""A small numpy executor for the Core ML (MIL) programs MobileNet uses.

`predict()` exists only on macOS. On Linux a saved `.mlpackage` is verified by
reading its program and weight blobs back from disk (coremltools' milproto
loader) and running the ops here, one at a time, in the order the program
lists them. Only the ops a MobileNet program contains are implemented; any
other op raises `VerificationError` naming it.

Numerics: each op computes in float32 and its result is rounded to the dtype
the program declares for its output, so an fp16 program is executed with fp16
tensors between ops (Core ML may accumulate in fp16 inside an op too, so the
runtime can differ a little more; the fp16 tolerance allows for it).
Convolutions use TensorFlow's SAME rule, which is MIL's `pad_type="same"`
(extra padding at the bottom/right; MIL calls the other rule `same_lower`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mbdeploy.errors import VerificationError
from mbdeploy.numpy_ops import conv2d, depthwise_conv2d, relu6, softmax

Values = dict[str, object]


def load_program(path):
    """The MIL program of a saved `.mlpackage` (weights read from its blobs) and its spec."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load

    model = ct.models.MLModel(str(path), skip_model_load=True)
    spec = model.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise VerificationError(f"{path} is not an ML Program (found {spec.WhichOneof('Type')})")
    return load(spec, spec.specificationVersion, model.weights_dir), spec


def run_program(program, inputs: dict[str, np.ndarray], function: str = "main") -> dict[str, object]:
    """Execute one function of a MIL program; returns its outputs by name."""
    block = program.functions[function]
    env: dict[str, object] = {}
    for name, var in block.inputs.items():
        if name not in inputs:
            raise VerificationError(f"program input {name!r} not given; inputs: {', '.join(block.inputs)}")
        env[name] = np.asarray(inputs[name]).astype(_numpy_dtype(var), copy=False)
    for op in block.operations:
        if op.op_type == "const":
            continue
        kernel = OPS.get(op.op_type)
        if kernel is None:
            raise VerificationError(
                f"the reference executor does not implement MIL op {op.op_type!r} ({op.name}); "
                f"implemented: {', '.join(sorted(OPS))}"
            )
        args = {key: _value(var, env) for key, var in op.inputs.items()}
        results = kernel(args)
        if not isinstance(results, tuple):
            results = (results,)
        for var, result in zip(op.outputs, results):
            env[var.name] = _as_declared(result, var)
    return {var.name: env[var.name] for var in block.outputs}


def _value(var, env: dict[str, object]):
    if isinstance(var, (list, tuple)):
        return [_value(v, env) for v in var]
    if var.name in env:
        return env[var.name]
    if var.op is None or var.op.op_type == "const":
        value = var.val
        return value if isinstance(value, (str, bool)) or value is None else np.asarray(value)
    raise VerificationError(f"value {var.name} is used before {var.op.name} computed it")


def _numpy_dtype(var):
    from coremltools.converters.mil.mil import types

    return np.dtype(types.nptype_from_builtin(var.dtype))


def _as_declared(result, var):
    """Round a float result to the dtype the program declares (fp16 stays fp16)."""
    if not isinstance(result, np.ndarray):
        return result
    try:
        dtype = _numpy_dtype(var)
    except Exception:  # dict/string outputs of classify have no numpy dtype
        return result
    return result.astype(dtype, copy=False) if dtype.kind == "f" else result


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _per_axis(values, rank: int, axis) -> np.ndarray:
    """Broadcast a scale/zero point given per channel along `axis` (or a scalar)."""
    values = np.asarray(values)
    if values.ndim == 0 or values.size == 1 and axis is None:
        return values.reshape(())
    shape = [1] * rank
    shape[int(axis) % rank] = values.size
    return values.reshape(shape)


# --- ops -------------------------------------------------------------------

def _conv(a: Values) -> np.ndarray:
    x, weight = _f32(a["x"]), _f32(a["weight"])
    strides = [int(s) for s in a.get("strides", [1, 1])]
    dilations = [int(d) for d in a.get("dilations", [1, 1])]
    groups = int(a.get("groups", 1))
    pad_type = str(a.get("pad_type", "valid"))
    if x.ndim != 4 or strides[0] != strides[1] or dilations != [1, 1] or weight.shape[2] != weight.shape[3]:
        raise VerificationError("the reference executor runs only 2-D convolutions with square kernels, "
                                "equal strides and no dilation")
    kernel, stride = weight.shape[2], strides[0]
    pads = [int(p) for p in np.ravel(a.get("pad", [0, 0, 0, 0]))]
    if pad_type == "valid" or pad_type == "custom" and not any(pads):
        if kernel != 1:
            raise VerificationError(f"the reference executor supports {pad_type} padding only for 1x1 kernels")
    elif pad_type != "same":
        raise VerificationError(f"the reference executor does not implement pad_type {pad_type!r}")
    bias = _f32(a["bias"]) if a.get("bias") is not None else np.zeros(weight.shape[0], np.float32)
    nhwc = x.transpose(0, 2, 3, 1)
    if groups == 1:
        out = conv2d(nhwc, weight.transpose(2, 3, 1, 0), bias, stride)  # OIHW -> HWIO
    elif groups == x.shape[1] == weight.shape[0] and weight.shape[1] == 1:
        out = depthwise_conv2d(nhwc, weight.transpose(2, 3, 0, 1), bias, stride)  # C1HW -> HWC1
    else:
        raise VerificationError(f"the reference executor runs groups=1 or depthwise convolutions, not groups={groups}")
    return out.transpose(0, 3, 1, 2)


def _avg_pool(a: Values) -> np.ndarray:
    x = _f32(a["x"])
    sizes = [int(k) for k in a["kernel_sizes"]]
    if sizes != list(x.shape[2:]) or str(a.get("pad_type", "valid")) != "valid":
        raise VerificationError("the reference executor implements avg_pool only as a global (valid) pool")
    return x.mean(axis=(2, 3), keepdims=True)


def _reduce_mean(a: Values) -> np.ndarray:
    axes = tuple(int(i) for i in np.ravel(a["axes"])) if a.get("axes") is not None else None
    return _f32(a["x"]).mean(axis=axes, keepdims=bool(a.get("keep_dims", False)))


def _batch_norm(a: Values) -> np.ndarray:
    x = _f32(a["x"])
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = 1.0 / np.sqrt(_f32(a["variance"]) + float(a.get("epsilon", 1e-5)))
    if a.get("gamma") is not None:
        scale = scale * _f32(a["gamma"])
    beta = _f32(a["beta"]) if a.get("beta") is not None else 0.0
    return (x - _f32(a["mean"]).reshape(shape)) * scale.reshape(shape) + np.reshape(beta, shape if np.ndim(beta) else ())


def _linear(a: Values) -> np.ndarray:
    out = _f32(a["x"]) @ _f32(a["weight"]).T
    return out + _f32(a["bias"]) if a.get("bias") is not None else out


def _matmul(a: Values) -> np.ndarray:
    x, y = _f32(a["x"]), _f32(a["y"])
    if a.get("transpose_x"):
        x = np.swapaxes(x, -1, -2)
    if a.get("transpose_y"):
        y = np.swapaxes(y, -1, -2)
    return x @ y


def _reshape(a: Values) -> np.ndarray:
    return np.reshape(a["x"], [int(d) for d in np.ravel(a["shape"])])


def _squeeze(a: Values) -> np.ndarray:
    axes = tuple(int(i) for i in np.ravel(a["axes"])) if a.get("axes") is not None else None
    return np.squeeze(a["x"], axis=axes)


_CAST = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int8": np.int8, "uint8": np.uint8,
         "int16": np.int16, "bool": np.bool_}


def _cast(a: Values) -> np.ndarray:
    return np.asarray(a["x"]).astype(_CAST[str(a["dtype"])])


def _quantize(a: Values) -> np.ndarray:
    x = _f32(a["input"])
    axis = a.get("axis")
    scale = _per_axis(_f32(a["scale"]), x.ndim, axis)
    zero = _per_axis(a["zero_point"], x.ndim, axis).astype(np.float32) if a.get("zero_point") is not None else 0.0
    dtype = np.dtype(str(a["output_dtype"]))
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def _dequantize(a: Values) -> np.ndarray:
    q = np.asarray(a["input"])
    axis = a.get("axis")
    scale = _per_axis(_f32(a["scale"]), q.ndim, axis)
    zero = _per_axis(a["zero_point"], q.ndim, axis).astype(np.float32) if a.get("zero_point") is not None else 0.0
    return (q.astype(np.float32) - zero) * scale


def _affine_dequantize(a: Values) -> np.ndarray:  # iOS16 constexpr
    q = np.asarray(a["quantized_data"])
    axis = int(a["axis"])
    scale = _per_axis(_f32(a["scale"]), q.ndim, axis)
    zero = _per_axis(a["zero_point"], q.ndim, axis).astype(np.float32)
    return (q.astype(np.float32) - zero) * scale


def _blockwise(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Expand a per-block array (same rank) to `shape` by repeating each block."""
    for axis, (blocks, size) in enumerate(zip(values.shape, shape)):
        if size % blocks:
            raise VerificationError(f"block count {blocks} does not divide dimension {size}")
        values = np.repeat(values, size // blocks, axis=axis)
    return values


def _shift_scale(a: Values) -> np.ndarray:  # iOS18 constexpr
    data = np.asarray(a["data"])
    scale = _blockwise(_f32(a["scale"]), data.shape)
    offset = _blockwise(np.asarray(a["offset"]).astype(np.float32), data.shape) if a.get("offset") is not None else 0.0
    return scale * (data.astype(np.float32) - offset)


def _classify(a: Values):
    """Core ML's classifier head: the label of the top class, and the probabilities."""
    probabilities = _f32(a["probabilities"])
    classes = list(a["classes"]) if a.get("classes") is not None else []
    top = int(np.argmax(probabilities.reshape(-1)))
    return (str(classes[top]) if classes else str(top)), probabilities


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    return lambda a: fn(_f32(a["x"]), _f32(a["y"]))


OPS: dict[str, Callable[[Values], object]] = {
    "conv": _conv,
    "batch_norm": _batch_norm,
    "relu": lambda a: np.maximum(_f32(a["x"]), 0.0),
    "relu6": lambda a: relu6(_f32(a["x"])),
    "clip": lambda a: np.clip(_f32(a["x"]), float(a["alpha"]), float(a["beta"])),
    "avg_pool": _avg_pool,
    "reduce_mean": _reduce_mean,
    "reshape": _reshape,
    "squeeze": _squeeze,
    "transpose": lambda a: np.transpose(a["x"], [int(p) for p in a["perm"]]),
    "linear": _linear,
    "matmul": _matmul,
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "softmax": lambda a: softmax(_f32(a["x"]), axis=int(a.get("axis", -1))),
    "cast": _cast,
    "quantize": _quantize,
    "dequantize": _dequantize,
    "constexpr_affine_dequantize": _affine_dequantize,
    "constexpr_blockwise_shift_scale": _shift_scale,
    "constexpr_cast": lambda a: np.asarray(a["source_val"]).astype(_CAST[str(a["output_dtype"])]),
    "classify": _classify,
}
