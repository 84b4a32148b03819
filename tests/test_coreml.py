"""Core ML export: conversion in every precision, the reference executor, inspect, bad input.

On Linux the saved `.mlpackage` is executed by the numpy reference executor
(coremltools' `predict()` needs macOS); the executor itself is checked against
tiny programs whose answers are worked out by hand below.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("coremltools", reason="coremltools (the coreml extra) is not installed")

from mbdeploy.accounting import model_cost  # noqa: E402
from mbdeploy.architecture import ModelSpec, layer_plan  # noqa: E402
from mbdeploy.convert import ConvertRequest, convert_model  # noqa: E402
from mbdeploy.errors import InvalidInput, MissingDependency, VerificationError  # noqa: E402
from mbdeploy.export import coreml  # noqa: E402
from mbdeploy.export.coreml_executor import load_program, run_program  # noqa: E402
from mbdeploy.inspection import inspect_model  # noqa: E402
from support.cli import run_cli  # noqa: E402

PRECISIONS = ["fp32", "fp16", "int8", "w8a8"]
SPEC = ModelSpec(0.25, 128)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """mobilenet_v1_0.25_128 in the four Core ML precisions (random weights), converted once."""
    out = tmp_path_factory.mktemp("coreml")
    with pytest.warns(UserWarning):  # random weights; w8a8 raised to iOS17
        result = convert_model(ConvertRequest(0.25, 128, out_dir=out, formats=["coreml"], precisions=PRECISIONS))
    return result


def artifact(result, precision: str) -> dict:
    return next(a for a in result.manifest["artifacts"] if a["precision"] == precision)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_conversion_is_verified_in_the_manifest(converted, precision):
    entry = artifact(converted, precision)
    verification = entry["verification"]
    expected = "Core ML runtime" if sys.platform == "darwin" else "reference executor"
    assert verification["verifier"] == expected
    assert verification["passed"], verification["failures"]
    assert verification["probes"] == 8
    path = converted.manifest_path.parent / entry["path"]
    assert path.is_dir() and (path / "Manifest.json").is_file()
    assert not list(path.parent.glob(".*.tmp")), "a temporary folder was left behind"


def test_float_figures(converted):
    assert artifact(converted, "fp32")["verification"]["max_abs_diff"] <= 1e-4
    fp16 = artifact(converted, "fp16")["verification"]
    assert 0 < fp16["max_abs_diff"] <= 2e-2  # fp16 really rounds: not bit-identical to fp32
    assert artifact(converted, "int8")["bytes"] < artifact(converted, "fp16")["bytes"] < artifact(converted, "fp32")["bytes"]


@pytest.mark.parametrize("precision", ["fp16", "int8", "w8a8"])
def test_inspect_agrees_with_the_analytic_count(converted, precision):
    report = inspect_model(converted.manifest_path.parent / artifact(converted, precision)["path"])
    cost = model_cost(SPEC)
    assert abs(report["macs"] - cost.macs) / cost.macs < 0.01
    assert abs(report["params"] - cost.params) / cost.params < 0.01
    assert [layer["name"] for layer in report["layers"]] == [layer.name for layer in layer_plan(SPEC)]
    assert [layer["type"] for layer in report["layers"]] == [layer.kind for layer in layer_plan(SPEC)]
    assert report["inputs"][0]["shape"] == [1, 128, 128, 3]
    assert report["outputs"][0]["shape"] == [1, 1001]
    assert report["ops"]["conv"] == len(layer_plan(SPEC))
    if precision != "fp16":
        assert report["ops"]["constexpr_affine_dequantize"] == len(layer_plan(SPEC))  # every weight is int8
    if precision == "w8a8":
        assert report["ops"]["quantize"] == report["ops"]["dequantize"] >= len(layer_plan(SPEC))
        assert report["coreml"]["specification_version"] >= 8  # iOS17


# --- single-layer packages for `profile` on iPhones -------------------------------

@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_single_layer_packages_are_the_artifacts_own_layers(converted, precision, tmp_path):
    import coremltools as ct

    from mbdeploy.layer_accounting import profile_layers
    from mbdeploy.profile.coreml_layers import build_coreml_layer_models

    whole_path = converted.manifest_path.parent / artifact(converted, precision)["path"]
    built = build_coreml_layer_models(whole_path, SPEC, precision, tmp_path)
    layers = profile_layers(SPEC)
    assert [m.layer.name for m in built] == [layer.name for layer in layers]
    whole, _ = load_program(whole_path)
    whole_ops = {op.name: op for op in whole.functions["main"].operations}
    array_type = "FLOAT16" if precision == "fp16" else "FLOAT32"
    for model, layer in zip(built, layers):
        nchw = lambda shape: [shape[0], shape[3], shape[1], shape[2]] if len(shape) == 4 else list(shape)  # noqa: E731
        spec = ct.models.MLModel(str(model.path), skip_model_load=True).get_spec()
        [given], [made] = spec.description.input, spec.description.output
        assert list(given.type.multiArrayType.shape) == nchw(layer.input_shape) == list(model.input_shape)
        assert list(made.type.multiArrayType.shape) == nchw(layer.output_shape)
        for feature in (given, made):  # the graph's own dtype at that point: no cast is timed
            assert ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(
                feature.type.multiArrayType.dataType) == array_type
        assert spec.description.metadata.userDefined["mbdeploy.precision"] == precision
        assert spec.description.metadata.userDefined["mbdeploy.layer"] == layer.name
        program, _ = load_program(model.path)
        ops = [op for op in program.functions["main"].operations if op.op_type != "const"]
        assert "cast" not in [op.op_type for op in ops]  # the layer's own ops under the artifact's names
        assert ops[0].name.removesuffix(coreml.FP16_SUFFIX) == layer.name
        for op in ops:  # every constant input (weights, bias, strides, padding, groups) is the artifact's own
            mine = whole_ops[op.name]
            assert op.op_type == mine.op_type
            for key, var in op.inputs.items():
                if key != "x":
                    value, theirs = np.asarray(var.val), np.asarray(mine.inputs[key].val)
                    assert value.dtype == theirs.dtype and np.array_equal(value, theirs), (op.name, key)
        if layer.kind in ("conv", "depthwise", "pointwise", "logits"):
            weight = ops[0].inputs["weight"].val
            assert weight.dtype == (np.float16 if precision == "fp16" else np.float32)
            assert weight.size == layer.params - (layer.output_shape[-1] if layer.kind == "logits" else 0)  # Slim counts the classifier's bias
    # Chained, the single layers compute exactly what the whole program computes.
    image = np.random.default_rng(3).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    expected = run_program(whole, {"input": image})["Predictions"]
    x = image.transpose(0, 3, 1, 2)
    for model in built:
        x = next(iter(run_program(load_program(model.path)[0], {"input": x}).values()))
    assert np.array_equal(np.asarray(x, np.float32), expected)


def test_single_layer_packages_refuse_int8_weights(converted, tmp_path):
    from mbdeploy.profile.coreml_layers import build_coreml_layer_models

    path = converted.manifest_path.parent / artifact(converted, "int8")["path"]
    with pytest.raises(InvalidInput, match="int8 Core ML model; single-layer Core ML models are built from fp32, fp16"):
        build_coreml_layer_models(path, SPEC, "int8", tmp_path)
    assert not list(tmp_path.iterdir())


# --- the reference executor against answers worked out by hand ------------------

def _save_and_load(program, tmp_path, target):
    import coremltools as ct

    with coreml.quiet():
        model = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=target,
                           compute_precision=ct.precision.FLOAT32)
        model.save(str(tmp_path / "hand.mlpackage"))
        return load_program(tmp_path / "hand.mlpackage")[0]


def test_executor_matches_hand_computed_values(tmp_path):
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    quantized = np.array([-2, 4], np.int8).reshape(2, 1, 1, 1)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, 4, 2))], opset_version=ct.target.iOS17)
    def program(x):
        nchw = mb.transpose(x=x, perm=[0, 3, 1, 2])
        summed = mb.conv(x=nchw, weight=np.ones((2, 1, 3, 3), np.float32), strides=[2, 2], pad_type="same",
                         groups=2, name="summed")
        weight = mb.constexpr_affine_dequantize(quantized_data=quantized, zero_point=np.array([1, 0], np.int8),
                                                scale=np.array([0.5, 0.25], np.float32), axis=0)
        scaled = mb.conv(x=summed, weight=weight, bias=np.array([0.0, -10.0], np.float32), groups=2, name="scaled")
        clipped = mb.relu6(x=scaled, name="clipped")
        q = mb.quantize(input=scaled, scale=np.float32(0.1), zero_point=np.int8(0), output_dtype="int8")
        dq = mb.dequantize(input=q, scale=np.float32(0.1), zero_point=np.int8(0), name="requantized")
        mean = mb.reduce_mean(x=clipped, axes=[2, 3], keep_dims=False, name="mean")
        logits = mb.reshape(x=mb.mul(x=mean, y=np.float32(0.0)), shape=[1, 2])
        return summed, scaled, clipped, dq, mean, mb.softmax(x=logits, axis=-1, name="probs")

    loaded = _save_and_load(program, tmp_path, ct.target.iOS17)
    image = np.stack([np.arange(16, dtype=np.float32).reshape(4, 4), np.ones((4, 4), np.float32)], axis=-1)
    out = run_program(loaded, {"x": image[None]})
    # Channel 0 is 0..15 in a 4x4: windows rows/cols {0,1,2} and {2,3} (the pad is after).
    assert out["summed"][0, 0].tolist() == [[45, 39], [66, 50]]
    assert out["summed"][0, 1].tolist() == [[9, 6], [6, 4]]
    # Dequantized weights: (-2 - 1) * 0.5 = -1.5 and (4 - 0) * 0.25 = 1.0; bias -10 on channel 1.
    assert out["scaled"][0, 0].tolist() == [[-67.5, -58.5], [-99.0, -75.0]]
    assert out["scaled"][0, 1].tolist() == [[-1.0, -4.0], [-4.0, -6.0]]
    assert out["clipped"].max() == 0.0
    # int8 with scale 0.1 saturates at -12.8; -1.0 and -4.0 are exact.
    np.testing.assert_allclose(out["requantized"][0], [[[-12.8, -12.8], [-12.8, -12.8]], [[-1.0, -4.0], [-4.0, -6.0]]],
                               rtol=1e-6)
    assert out["mean"].tolist() == [[0.0, 0.0]]
    assert out["probs"].tolist() == [[0.5, 0.5]]


def test_executor_names_an_op_it_does_not_implement(tmp_path):
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4))], opset_version=ct.target.iOS16)
    def program(x):
        return mb.sin(x=x, name="wave")

    with pytest.raises(VerificationError, match="does not implement MIL op 'sin'"):
        run_program(_save_and_load(program, tmp_path, ct.target.iOS16), {"x": np.zeros((1, 4), np.float32)})


# --- bad input and interruptions ------------------------------------------------

def test_precision_not_supported_is_rejected_before_any_work(tmp_path):
    out = tmp_path / "models"
    result = run_cli("convert", "--alpha", "0.25", "--res", "128", "--formats", "coreml", "--precisions", "dynamic",
                     "--out", out)
    assert result.returncode != 0
    assert "Error: precision 'dynamic' is not supported for coreml; allowed: fp32, fp16, int8, w8a8" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not list(out.rglob("*.mlpackage")) and not list(out.rglob("manifest.json"))


def test_unknown_deployment_target_lists_the_allowed_ones():
    with pytest.raises(InvalidInput, match=r"deployment target 'iOS99'.*allowed: .*iOS16, iOS17"):
        coreml.deployment_target({"coreml_target": "iOS99"}, "fp16")


def test_w8a8_raises_the_target_to_ios17():
    import coremltools as ct

    assert coreml.deployment_target({"coreml_target": "iOS18"}, "w8a8") == ct.target.iOS18
    with pytest.warns(UserWarning, match="w8a8 needs iOS17"):
        assert coreml.deployment_target({"coreml_target": "iOS16"}, "w8a8") == ct.target.iOS17


def test_labels_file_must_match_the_class_count(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    assert coreml.read_labels(labels, 3) == ["a", "b", "c"]
    with pytest.raises(InvalidInput, match="has 3 labels; the model has 1001 classes"):
        coreml.read_labels(labels, 1001)


def test_missing_coremltools_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "coremltools", None)  # as if it were not installed
    with pytest.raises(MissingDependency, match=r"pip install 'mbdeploy\[coreml\]'"):
        coreml.import_coremltools()


def test_interrupted_export_leaves_no_package_under_its_final_name(converted, tmp_path, monkeypatch):
    """Ctrl-C while the package is being written: the previous package stays whole, no new one appears."""
    import shutil

    import coremltools as ct

    from mbdeploy.manifest import artifact_digest

    real_save = ct.models.MLModel.save

    def save_then_interrupt(self, path):
        real_save(self, path)  # the real files are written (under the temporary name) ...
        raise KeyboardInterrupt  # ... and the user interrupts before the rename

    source = converted.manifest_path.parent / artifact(converted, "fp16")["path"]
    existing = tmp_path / source.name
    shutil.copytree(source, existing)
    before = artifact_digest(existing)
    fresh = tmp_path / "fresh.mlpackage"
    job = _tiny_job()
    monkeypatch.setattr(ct.models.MLModel, "save", save_then_interrupt)
    for target in (existing, fresh):
        with pytest.raises(KeyboardInterrupt):
            coreml.export(job, "fp16", target)
    assert artifact_digest(existing) == before
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing.name]


def _tiny_job():
    """An export job for a 32-pixel model without the Keras reference (export does not need it)."""
    from mbdeploy.export import ExportJob
    from mbdeploy.weights import load_weights

    weights = load_weights(None, 0.25, seed=1)
    spec = ModelSpec(0.25, 32, weights.classes)
    empty = np.zeros((0, 32, 32, 3), np.float32)
    return ExportJob(spec, weights, None, empty, empty, np.zeros((0, spec.classes), np.float32))


# --- real weights: the official model's answers on the reference photos -----------

PHOTOS = ("cat.bmp", "bird.bmp", "hot_dog.jpg")


def official_inputs(reference_dir: Path, resolution: int) -> np.ndarray:
    """The official model's uint8 input q (Pillow's default resize) as our float input (q - 128) / 128."""
    from PIL import Image

    batch = []
    for name in PHOTOS:
        with Image.open(reference_dir / name) as image:
            q = np.asarray(image.convert("RGB").resize((resolution, resolution)), np.float32)
        batch.append((q - 128.0) / 128.0)
    return np.stack(batch)


def test_real_weights_give_the_official_top1(reference_dir, tmp_path):
    """Core ML fp16 and ONNX fp32 built from the official 0.5_160 weights agree with it on three photos."""
    pytest.importorskip("onnxruntime", reason="onnxruntime (the onnx extra) is not installed")
    from mbdeploy.export import predict_all, predictor

    official = reference_dir / "mobilenet_v1_0.5_160_quant.tflite"
    labels_file = reference_dir / "imagenet_labels.txt"
    request = ConvertRequest(0.5, 160, weights=official, out_dir=tmp_path, formats=["coreml", "onnx"],
                             precisions=["coreml:fp16", "onnx:fp32"],
                             options={"coreml_target": "iOS16", "labels": str(labels_file)})
    result = convert_model(request)
    folder = result.manifest_path.parent
    paths = {a["format"]: folder / a["path"] for a in result.manifest["artifacts"]}
    inputs = official_inputs(reference_dir, 160)
    labels = labels_file.read_text().splitlines()

    expected = [labels[i] for i in predict_all(predictor("tflite", official), inputs).argmax(1)]
    got_coreml = [labels[i] for i in predict_all(coreml.reference_predictor(paths["coreml"]), inputs).argmax(1)]
    got_onnx = [labels[i] for i in predict_all(predictor("onnx", paths["onnx"]), inputs).argmax(1)]
    assert got_coreml == expected
    assert got_onnx == expected
    assert expected[2].startswith("hotdog")  # the README's table: the photos are what we think
    assert inspect_model(paths["coreml"])["coreml"]["classifier"]  # trained weights + labels: a classifier
    assert coreml.class_labels(paths["coreml"]) == labels  # the order the macOS runtime's label dict is read in


def test_a_damaged_package_is_rebuilt_and_inspect_says_so_in_one_line(tmp_path):
    out = tmp_path / "models"
    convert_model(ConvertRequest(0.25, 128, out_dir=out, formats=["coreml"], precisions=["fp16"]))
    package = out / "mobilenet_v1_0.25_128" / "mobilenet_v1_0.25_128_fp16.mlpackage"
    weights = next(package.rglob("weight.bin"))
    weights.write_bytes(weights.read_bytes()[:100])
    result = run_cli("inspect", package)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "is not a readable Core ML package" in result.stderr
    again = convert_model(ConvertRequest(0.25, 128, out_dir=out, formats=["coreml"], precisions=["fp16"]))
    assert again.built == ["coreml/fp16"]  # the damage was noticed, not taken as up to date
    assert again.manifest["artifacts"][0]["verification"]["passed"]
    assert run_cli("inspect", package).returncode == 0
