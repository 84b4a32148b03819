"""Core ML export (ML Program `.mlpackage`): fp32, fp16, int8, w8a8; verification; inspect.

The program is written with coremltools' MIL builder straight from the layer
plan and the folded weights, so every op carries its Slim layer name
(`Conv2d_0`, `Conv2d_1_depthwise`, ..., `Logits`; Core ML's fp16 pass appends
`_cast_fp16`).

Input and output:
- `input`: float32 (1, H, W, 3), NHWC, RGB scaled to [-1, 1] as the manifest's
  `preprocessing` says (x = pixel / 127.5 - 1). The program's first op is a
  transpose to NCHW (Core ML convolutions are NCHW); callers feed NHWC like
  every other format.
- `Predictions`: float32 (1, classes) probabilities. With trained weights and a
  labels file (one label per line, as many lines as classes; line 0 is
  `background` for 1001-class models) the model is a Core ML classifier: it
  outputs `classLabel` (top label) and `classLabel_probs` (label -> probability).

Precisions:
- fp32: compute precision fp32.
- fp16: fp16 weights and compute (Core ML's default).
- int8: int8 weights, linear symmetric per output channel
  (`coremltools.optimize.coreml.linear_quantize_weights`), fp16 compute.
- w8a8: int8 weights as above and int8 activations. coremltools calibrates
  activations by running the model, which only works on macOS. Here the
  ranges come from the Keras reference (same layer plan, same layer names) on
  the calibration images; each convolution's input gets a `quantize` /
  `dequantize` pair (int8, symmetric, scale = max|x| / 127), the same pair
  coremltools' own activation quantizer writes. These ops need iOS 17, so a
  lower deployment target is raised to iOS17 with a warning.

Host runtime (`predictor`, used by verification and eval): on Linux the saved
package is read back from disk and run by `mbdeploy.export.coreml_executor`;
on macOS the real Core ML runtime runs it. Verification on macOS runs both and
the runtime's figures are the ones that count.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mbdeploy.architecture import layer_plan
from mbdeploy.atomic import temporary_dir
from mbdeploy.errors import ConversionError, InvalidInput, MissingDependency
from mbdeploy.export import ExportJob, Predictor, predict_all
from mbdeploy.verify import compare

DEFAULT_TARGET = "iOS16"
W8A8_MIN_TARGET = "iOS17"  # MIL quantize/dequantize ops
INPUT_NAME = "input"
OUTPUT_NAME = "Predictions"
FP16_SUFFIX = "_cast_fp16"  # what Core ML's fp16 pass appends to op names


def import_coremltools():
    """coremltools, quietly (on import it probes TensorFlow and the macOS-only runtime)."""
    try:
        with quiet():
            import coremltools
    except ImportError:
        raise MissingDependency("coremltools", "coreml") from None
    return coremltools


@contextmanager
def quiet():
    """Hide coremltools' progress bars, version notes and deprecation chatter."""
    import logging

    from mbdeploy.tf_runtime import native_output_silenced

    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), native_output_silenced():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def allowed_targets() -> list[str]:
    ct = import_coremltools()
    return [target.name for target in ct.target]


def deployment_target(options: dict, precision: str):
    """The requested minimum deployment target (validated), raised to iOS17 for w8a8."""
    ct = import_coremltools()
    name = options.get("coreml_target") or DEFAULT_TARGET
    allowed = allowed_targets()
    if name not in allowed:
        raise InvalidInput(f"Core ML deployment target {name!r} is not known to coremltools "
                           f"{ct.__version__}; allowed: {', '.join(allowed)}")
    target = ct.target[name]
    if precision == "w8a8" and target < ct.target[W8A8_MIN_TARGET]:
        warnings.warn(f"w8a8 needs {W8A8_MIN_TARGET} (quantize/dequantize ops); building the w8a8 model "
                      f"for {W8A8_MIN_TARGET} instead of {name}", stacklevel=2)
        target = ct.target[W8A8_MIN_TARGET]
    return target


def read_labels(path: str | Path, classes: int) -> list[str]:
    path = Path(path)
    try:
        labels = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidInput(f"labels file {path} is unreadable: {exc.strerror or exc}") from None
    while labels and not labels[-1].strip():
        labels.pop()
    if len(labels) != classes:
        hint = " (line 0 must be 'background' for 1001-class models)" if classes == 1001 else ""
        raise InvalidInput(f"labels file {path} has {len(labels)} labels; the model has {classes} classes{hint}")
    if classes == 1001 and labels[0].strip().lower() != "background":
        warnings.warn(f"labels file {path}: line 0 is {labels[0]!r}, not 'background'; "
                      "labels may be shifted by one", stacklevel=2)
    return labels


# --- building --------------------------------------------------------------

def activation_ranges(job: ExportJob) -> dict[str, float]:
    """max |x| of every convolution's input on the calibration images, from Keras.

    Keys are the Keras layer names whose outputs feed a convolution: `input`,
    `<layer>_relu6` and `AvgPool_1a` (the pooled features entering `Logits`).
    """
    import keras

    model = job.keras_model
    names = ["input"] + [f"{layer.name}_relu6" for layer in layer_plan(job.spec) if layer.kind != "logits"]
    names.append("AvgPool_1a")
    tap = keras.Model(model.input, [model.get_layer(name).output for name in names[1:]])
    ranges = {"input": float(np.max(np.abs(job.calibration)))}
    for name in names[1:]:
        ranges[name] = 0.0
    for image in job.calibration:
        outputs = tap(image[None], training=False)
        for name, value in zip(names[1:], outputs):
            ranges[name] = max(ranges[name], float(np.max(np.abs(np.asarray(value)))))
    return ranges


def build_program(job: ExportJob, target, ranges: dict[str, float] | None = None):
    """The MIL program from the layer plan; with `ranges`, int8 Q/DQ before every convolution."""
    import_coremltools()  # quietly, before its submodules
    from coremltools.converters.mil import Builder as mb

    spec, weights = job.spec, job.weights
    res = spec.resolution

    def quantized(x, source: str):
        if ranges is None:
            return x
        scale = np.float32(max(ranges[source], 1e-8) / 127.0)
        q = mb.quantize(input=x, scale=scale, zero_point=np.int8(0), output_dtype="int8", name=f"{source}_quantize")
        return mb.dequantize(input=q, scale=scale, zero_point=np.int8(0), name=f"{source}_dequantize")

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, res, res, 3))], opset_version=target)
    def program(input):  # noqa: A002 - the program input's name is the model's input name
        x = mb.transpose(x=input, perm=[0, 3, 1, 2], name="input_nchw")
        source = "input"
        for layer in layer_plan(spec):
            kernel, bias = weights.layers[layer.name]
            x = quantized(x, source)
            if layer.kind == "logits":
                # Global average pool, then the classifier as a 1x1 convolution (as Slim has it).
                x = mb.reduce_mean(x=x, axes=[2, 3], keep_dims=True, name="AvgPool_1a")
                x = quantized(x, "AvgPool_1a")
                x = mb.conv(x=x, weight=kernel.transpose(layer.nchw_weight_axes), bias=bias, name=layer.name)
                continue
            # MIL's pad_type "same" is the plan's SAME rule (`layer.padding`).
            x = mb.conv(x=x, weight=np.ascontiguousarray(kernel.transpose(layer.nchw_weight_axes)), bias=bias,
                        strides=[layer.stride] * 2, pad_type="same", groups=layer.groups, name=layer.name)
            x = mb.relu6(x=x, name=f"{layer.name}_relu6")
            source = f"{layer.name}_relu6"
        x = mb.reshape(x=x, shape=[1, spec.classes], name="SpatialSqueeze")
        return mb.softmax(x=x, axis=-1, name=OUTPUT_NAME)

    return program


def build_model(job: ExportJob, precision: str):
    """The in-memory MLModel for one precision (not yet saved)."""
    ct = import_coremltools()
    target = deployment_target(job.options, precision)
    labels = job.options.get("labels")
    classifier = None
    if labels and job.weights.trained:
        classifier = ct.ClassifierConfig(read_labels(labels, job.spec.classes))
    elif labels:
        warnings.warn("labels not attached to the Core ML model: its weights are random", stacklevel=2)
    ranges = activation_ranges(job) if precision == "w8a8" else None
    program = build_program(job, target, ranges)
    compute = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    with quiet():
        model = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=target,
                           compute_precision=compute, classifier_config=classifier)
        if precision in ("int8", "w8a8"):
            import coremltools.optimize as cto

            config = cto.coreml.OptimizationConfig(global_config=cto.coreml.OpLinearQuantizerConfig(
                mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=0))
            model = cto.coreml.linear_quantize_weights(model, config)
    model.short_description = f"{job.spec.name} ({precision}), MobileNet v1 built by mbdeploy"
    model.input_description[INPUT_NAME] = "RGB image, NHWC float32 (1, H, W, 3), scaled to [-1, 1]: pixel / 127.5 - 1"
    model.user_defined_metadata["mbdeploy.precision"] = precision
    model.user_defined_metadata["mbdeploy.preprocessing"] = "NHWC RGB, pixel / 127.5 - 1"
    return model


def export(job: ExportJob, precision: str, out_path: Path) -> None:
    save_package(build_model(job, precision), Path(out_path), f"the Core ML {precision} model of {job.spec.name}")


def save_package(model, path: Path, what: str) -> None:  # noqa: ANN001 - a coremltools MLModel
    """Save `model` as the .mlpackage folder `path`: built under a temporary name, renamed whole."""
    with temporary_dir(path) as tmp:
        staged = tmp / path.name  # coremltools wants a path ending in .mlpackage
        try:
            with quiet():
                model.save(str(staged))
        except Exception as exc:
            raise ConversionError(f"saving {what} failed: {exc}") from None
        for item in staged.iterdir():
            os.replace(item, tmp / item.name)
        staged.rmdir()


# --- verification ----------------------------------------------------------

def predictor(path: Path) -> Predictor:
    """The host's Core ML runtime on one float HWC image: Core ML itself on macOS, else the numpy executor."""
    return runtime_predictor(path) if sys.platform == "darwin" else reference_predictor(path)


def reference_predictor(path: Path) -> Predictor:
    """Probabilities of the saved package, read back from disk and run by the numpy executor (any OS)."""
    from mbdeploy.export.coreml_executor import load_program, run_program

    import_coremltools()  # a missing coremltools is a MissingDependency, not an ImportError
    with quiet():
        program, spec = load_program(path)
    name = spec.description.input[0].name
    probabilities = spec.description.predictedProbabilitiesName or spec.description.output[0].name

    def predict(image: np.ndarray) -> np.ndarray:
        result = run_program(program, {name: image[None].astype(np.float32)})
        return np.asarray(result[probabilities], np.float32).reshape(-1)

    return predict


def class_labels(path: Path) -> list[str] | None:
    """A classifier's labels in class order, from its `classify` op; None for a plain model."""
    from mbdeploy.export.coreml_executor import load_program

    with quiet():
        program, _ = load_program(path)
    for op in program.functions["main"].operations:
        if op.op_type == "classify":
            return [str(label) for label in op.inputs["classes"].val]
    return None


def runtime_predictor(path: Path) -> Predictor:  # pragma: no cover - the real runtime exists only on macOS
    """Probabilities from the real Core ML runtime (CPU), in class order."""
    ct = import_coremltools()
    model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
    spec = model.get_spec()
    given = spec.description.input[0]
    is_image = given.type.WhichOneof("Type") == "imageType"
    probabilities = spec.description.predictedProbabilitiesName
    labels = class_labels(path) if probabilities else None
    output = probabilities or spec.description.output[0].name

    def predict(image: np.ndarray) -> np.ndarray:
        if is_image:  # the model scales the pixels itself
            from PIL import Image

            feed = Image.fromarray(np.clip((image + 1) * 127.5, 0, 255).round().astype(np.uint8))
        else:
            feed = image[None].astype(np.float32)
        result = model.predict({given.name: feed})[output]
        if labels:  # a classifier gives label -> probability
            return np.array([result[label] for label in labels], np.float32)
        return np.asarray(result, np.float32).reshape(-1)

    return predict


def verify(job: ExportJob, precision: str, path: Path) -> dict:
    figures = compare("coreml", precision, predict_all(reference_predictor(path), job.probes), job.reference,
                      verifier="reference executor")
    if sys.platform == "darwin":  # pragma: no cover - the real runtime exists only on macOS
        runtime = compare("coreml", precision, predict_all(runtime_predictor(path), job.probes), job.reference,
                          verifier="Core ML runtime")
        runtime["reference_executor"] = {k: figures[k] for k in ("max_abs_diff", "cosine", "top1_agreement", "passed")}
        return runtime
    return figures


# --- inspect -----------------------------------------------------------------

def read_package(path: Path):
    """The package's MIL program (weights read from its blobs) and its spec; a damaged package is one line."""
    from mbdeploy.export.coreml_executor import load_program

    try:
        with quiet():
            return load_program(path)
    except Exception as exc:  # coremltools raises RuntimeError and others for a damaged package
        text = str(exc).strip().splitlines()
        raise InvalidInput(f"{Path(path).name} is not a readable Core ML package: {text[0] if text else exc}") from None


def inspect(path: Path) -> dict:
    from mbdeploy.inspection import classify_conv, summarize

    program, spec = read_package(path)
    block = program.functions["main"]
    ops = Counter(op.op_type for op in block.operations if op.op_type != "const")
    layers = []
    for op in block.operations:
        if op.op_type not in ("conv", "linear"):
            continue
        weight = op.inputs["weight"]
        bias = op.inputs.get("bias")
        w_shape = [int(d) for d in weight.shape]
        out_shape = [int(d) for d in op.outputs[0].shape]
        bias_count = int(np.prod(bias.shape)) if bias is not None else 0
        if op.op_type == "linear":
            kind, kernel, in_size, per_output = "fully_connected", 1, 1, w_shape[1]
        else:
            groups = int(op.inputs["groups"].val) if "groups" in op.inputs else 1
            in_shape = [int(d) for d in op.inputs["x"].shape]
            kernel, in_size = w_shape[2], in_shape[2]
            kind = "depthwise" if groups > 1 and groups == in_shape[1] else "conv"
            per_output = w_shape[1] * w_shape[2] * w_shape[3]
        layers.append({
            "name": op.name.removesuffix(FP16_SUFFIX), "op": op.op_type,
            "type": classify_conv(kind, kernel, in_size),
            "macs": int(np.prod(out_shape)) * per_output,
            "params": int(np.prod(w_shape)) + bias_count,
        })
    report = summarize("coreml", Path(path), [_feature(f) for f in spec.description.input],
                       [_feature(f) for f in spec.description.output], ops, layers)
    report["coreml"] = {
        "specification_version": int(spec.specificationVersion),
        "classifier": bool(spec.description.predictedFeatureName),
        "precision": spec.description.metadata.userDefined.get("mbdeploy.precision"),
    }
    return report


def _feature(feature) -> dict:
    kind = feature.type.WhichOneof("Type")
    if kind == "multiArrayType":
        array = feature.type.multiArrayType
        from coremltools.proto import FeatureTypes_pb2

        dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType).lower()
        return {"name": feature.name, "shape": [int(d) for d in array.shape], "dtype": dtype, "quantization": None}
    return {"name": feature.name, "shape": [], "dtype": kind.removesuffix("Type"), "quantization": None}
