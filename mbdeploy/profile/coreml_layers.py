"""Single-layer Core ML models: each layer of a `.mlpackage` alone, as its own small `.mlpackage`.

The Core ML exporter (`export/coreml.py`) names every op after its Slim layer
(`Conv2d_0` and its `Conv2d_0_relu6`, ..., `AvgPool_1a`, `Logits` and the
`SpatialSqueeze` after it, `Predictions`; the fp16 pass appends `_cast_fp16`).
So a layer's ops are found in the artifact's own MIL program by name, and a
single-layer model is those ops written again with the MIL builder, each with
the artifact's own constant inputs (weights, biases, strides, padding,
groups, axes): same weights to the bit, same precision. Its one input is the
layer's input as the graph holds it: NCHW (the program transposes the NHWC
image once, at its start), in the graph's dtype there (fp16 in an fp16 model,
so the single layer times no cast the graph does not have).

Every layer's input and output shape is checked against the layer plan, so a
package that is not this plan's MobileNet is refused, not mislabelled.

Only fp32 and fp16 artifacts: int8 and w8a8 packages hold their weights in
constexpr dequantize ops (and w8a8 adds quantize/dequantize pairs) that this
builder does not carry over yet; `profile` refuses them before it starts.
Building runs anywhere coremltools installs; only an Apple device predicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mbdeploy.architecture import ModelSpec
from mbdeploy.errors import ConversionError, InvalidInput
from mbdeploy.layer_accounting import ProfileLayer, profile_layers
from mbdeploy.manifest import artifact_digest

PRECISIONS = ("fp32", "fp16")  # what the builder carries over faithfully
INPUT_NAME = "input"
MIN_TARGET = "iOS16"  # fp16 model inputs need iOS 16

# A layer's ops in the exporter's naming, in graph order.
def _op_names(layer: ProfileLayer) -> tuple[str, ...]:
    if layer.kind in ("conv", "depthwise", "pointwise"):
        return (layer.name, f"{layer.name}_relu6")
    if layer.kind == "logits":
        return (layer.name, "SpatialSqueeze")  # the classifier's squeeze joins Logits, as in the .tflite path
    return (layer.name,)  # AvgPool_1a (reduce_mean), Predictions (softmax)


@dataclass(frozen=True)
class CoreMLLayerModel:
    layer: ProfileLayer
    path: Path  # the .mlpackage folder
    sha256: str
    bytes: int
    ops: tuple[str, ...]  # MIL op types, in order
    input_shape: tuple[int, ...]  # NCHW for convolutions and pooling, as the graph holds it
    input_dtype: str  # fp32 or fp16


def check_precision(precision: str, name: str = "the artifact") -> None:
    if precision not in PRECISIONS:
        raise InvalidInput(f"{name} is a {precision} Core ML model; single-layer Core ML models are built from "
                           f"{', '.join(PRECISIONS)} packages only (int8 and w8a8 weights are not carried over yet)")


def read_program(path: Path):
    """The artifact's MIL program (weights read from its blobs)."""
    from mbdeploy.export.coreml import read_package

    return read_package(path)[0]


def _dtype_name(var) -> str:  # noqa: ANN001 - a MIL Var
    from coremltools.converters.mil.mil import types

    return {types.fp16: "fp16", types.fp32: "fp32"}.get(var.dtype, types.builtin_to_string(var.dtype))


def _named_ops(program) -> dict:  # noqa: ANN001
    from mbdeploy.export.coreml import FP16_SUFFIX

    ops = {op.name.removesuffix(FP16_SUFFIX): op for op in program.functions["main"].operations}
    if "AvgPool_1a" not in ops or "Logits" not in ops:
        raise InvalidInput("the package is not a MobileNet v1 of the plan (no AvgPool_1a and Logits ops)")
    return ops


def program_classes(program) -> int:  # noqa: ANN001
    """The classifier's width, read off the program's Logits op."""
    return int(_named_ops(program)["Logits"].outputs[0].shape[1])


def spec_from_program(program) -> ModelSpec:  # noqa: ANN001
    """The family member a package is, read off its program (for a package without a manifest).

    Alpha from the pooled width (1024 x alpha), as `slicing.spec_from_graph` reads a .tflite.
    """
    ops = _named_ops(program)
    source = next(iter(program.functions["main"].inputs.values())).shape
    if len(source) != 4 or source[1] != source[2]:
        raise InvalidInput("the package is not a MobileNet v1 of the plan (no square NHWC input)")
    try:
        return ModelSpec(int(ops["AvgPool_1a"].inputs["x"].shape[1]) / 1024, int(source[1]), program_classes(program))
    except InvalidInput as exc:
        raise InvalidInput(f"the package is not a MobileNet v1 of the plan: {exc.message}") from None


def _graph_shape(layer: ProfileLayer, nhwc: tuple[int, ...]) -> tuple[int, ...]:
    """The plan's NHWC shape as the Core ML graph holds it (NCHW; 2-D stays 2-D)."""
    return (nhwc[0], nhwc[3], nhwc[1], nhwc[2]) if len(nhwc) == 4 else tuple(nhwc)


def layer_ops(program, layers: list[ProfileLayer], source: str = "the package") -> dict[str, list]:  # noqa: ANN001
    """Each plan layer's MIL ops in the artifact, checked against the plan's shapes."""
    from mbdeploy.export.coreml import FP16_SUFFIX

    block = program.functions["main"]
    by_name = {op.name.removesuffix(FP16_SUFFIX): op for op in block.operations if op.op_type != "const"}
    found = {}
    for layer in layers:
        missing = [name for name in _op_names(layer) if name not in by_name]
        if missing:
            raise InvalidInput(f"{source} has no op {missing[0]!r}: it is not the plan's {layer.name} "
                               "(packages built by `mbdeploy convert` name every op after its layer)")
        ops = [by_name[name] for name in _op_names(layer)]
        given = tuple(int(d) for d in ops[0].inputs["x"].shape)
        made = tuple(int(d) for d in ops[-1].outputs[0].shape)
        wanted = (_graph_shape(layer, layer.input_shape), _graph_shape(layer, layer.output_shape))
        if (given, made) != wanted:
            raise InvalidInput(f"{source}: {layer.name} maps {given} to {made}; the plan says {wanted[0]} to "
                               f"{wanted[1]}")
        found[layer.name] = ops
    return found


def _program_of(ops: list, target):  # noqa: ANN001 - MIL ops of one layer, a coremltools target
    """The layer's ops written again, each with the artifact's own constant inputs."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    first = ops[0].inputs["x"]
    shape = tuple(int(d) for d in first.shape)

    @mb.program(input_specs=[mb.TensorSpec(shape=shape, dtype=first.dtype)], opset_version=target)
    def program(input):  # noqa: A002 - the program input's name is the model's input name
        x = input
        for op in ops:
            given = {}
            for key, var in op.inputs.items():
                if key == "x":
                    continue
                if var.val is None:
                    raise ConversionError(f"{op.name}: input {key} is computed in the graph, not a constant; "
                                          "a single-layer model cannot carry it")
                value = var.val
                given[key] = value.copy() if isinstance(value, np.ndarray) else value
            x = getattr(mb, op.op_type)(x=x, name=op.name, **given)
        if x.dtype != first.dtype:
            raise ConversionError(f"{ops[-1].name} gives {types.builtin_to_string(x.dtype)} from "
                                  f"{types.builtin_to_string(first.dtype)}")
        return x

    return program


def build_coreml_layer_models(artifact_path: Path, spec: ModelSpec, precision: str,
                              out_dir: Path) -> list[CoreMLLayerModel]:
    """Write one `.mlpackage` per profile layer of the artifact into out_dir (`NN_<layer>.mlpackage`)."""
    from mbdeploy.export.coreml import import_coremltools, quiet, save_package

    check_precision(precision, Path(artifact_path).name)
    ct = import_coremltools()
    program = read_program(artifact_path)
    layers = profile_layers(spec)
    found = layer_ops(program, layers, Path(artifact_path).name)
    opset = program.functions["main"].opset_version or ct.target[MIN_TARGET]
    target = max(ct.target(int(opset)), ct.target[MIN_TARGET])
    compute = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    built = []
    for layer in layers:
        ops = found[layer.name]
        with quiet():
            model = ct.convert(_program_of(ops, target), convert_to="mlprogram", minimum_deployment_target=target,
                               compute_precision=compute)
        model.short_description = f"{layer.name} of {spec.name} ({precision}) alone, for mbdeploy profile"
        model.user_defined_metadata.update({"mbdeploy.precision": precision, "mbdeploy.layer": layer.name,
                                            "mbdeploy.model": spec.name})
        path = out_dir / f"{layer.index:02d}_{layer.name}.mlpackage"
        save_package(model, path, f"the single-layer model of {layer.name}")
        size, digest = artifact_digest(path)
        first = ops[0].inputs["x"]
        built.append(CoreMLLayerModel(layer, path, digest, size, tuple(op.op_type for op in ops),
                                      tuple(int(d) for d in first.shape), _dtype_name(first)))
    return built
