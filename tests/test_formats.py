"""The format registry: every list of formats derives from it, and each format's host runtime
(`predictor(path)`, which verification and eval share) is tested once per registered format.

A new format in `mbdeploy/formats.py` brings itself into every test parametrized
over `format_name` below.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from mbdeploy.architecture import ModelSpec, layer_plan
from mbdeploy.formats import FORMAT_NAMES, FORMATS

SPEC = ModelSpec(0.25, 128)


def _installed(name: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in FORMATS[name].requires)


@pytest.fixture(params=FORMAT_NAMES)
def format_name(request) -> str:
    if not _installed(request.param):
        pytest.skip(f"{request.param} needs {', '.join(FORMATS[request.param].requires)}, not installed here")
    return request.param


@pytest.fixture(scope="module")
def fp32_models(tmp_path_factory):
    """mobilenet_v1_0.25_128 fp32 in every installed format (random weights), converted once."""
    from mbdeploy.convert import ConvertRequest, convert_model

    out = tmp_path_factory.mktemp("formats")
    with pytest.warns(UserWarning, match="random weights"):
        result = convert_model(ConvertRequest(0.25, 128, out_dir=out, formats=[f for f in FORMAT_NAMES if _installed(f)],
                                              precisions=["fp32"]))
    return result


def _path(result, format_name: str):
    [entry] = [a for a in result.manifest["artifacts"] if a["format"] == format_name]
    return result.manifest_path.parent / entry["path"]


def _images(count: int = 3) -> np.ndarray:
    from mbdeploy.preprocessing import synthetic_images

    return synthetic_images(count, SPEC.resolution, seed=7)


# --- every list derives from the registry ------------------------------------

def test_the_record_schema_enum_is_the_registry():
    """The schema file keeps its enum (a reader of the file sees the contract); this keeps it honest."""
    from mbdeploy.records.schema import record_schema

    assert record_schema()["properties"]["artifact"]["properties"]["format"]["enum"] == list(FORMAT_NAMES)


def test_click_choices_and_inspect_suffixes_are_the_registry():
    from mbdeploy.cli.eval import eval_command
    from mbdeploy.cli.select import select
    from mbdeploy.inspection import INSPECTABLE

    import click

    for command in (eval_command, select):  # --formats takes a comma list, each name checked against the registry
        [option] = [p for p in command.params if p.name == "formats"]
        assert option.callback(None, option, (",".join(FORMAT_NAMES),)) == list(FORMAT_NAMES)
        with pytest.raises(click.BadParameter, match=f"tensorrt unknown; allowed: {', '.join(FORMAT_NAMES)} "):
            option.callback(None, option, ("tensorrt",))
        assert f"a comma list of {','.join(FORMAT_NAMES)} " in option.help
    assert INSPECTABLE == {FORMATS[name].suffix: name for name in FORMAT_NAMES}


# --- one host runtime per format ---------------------------------------------

def test_each_runtime_gives_the_probabilities_the_others_give(format_name, fp32_models):
    """The same fp32 graph in every format: the formats' runtimes agree to verification's fp32 tolerance."""
    from mbdeploy.export import predict_all, predictor

    images = _images()
    ours = predict_all(predictor(format_name, _path(fp32_models, format_name)), images)
    assert ours.shape == (len(images), SPEC.classes) and ours.dtype == np.float32
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-4)
    others = [f for f in fp32_models.manifest["artifacts"] if f["format"] != format_name]
    for other in others:
        theirs = predict_all(predictor(other["format"], _path(fp32_models, other["format"])), images)
        assert np.abs(ours - theirs).max() <= 2e-4, other["format"]  # each is within 1e-4 of Keras


def test_fp32_verification_by_that_runtime_passes(format_name, fp32_models):
    [entry] = [a for a in fp32_models.manifest["artifacts"] if a["format"] == format_name]
    assert entry["verification"]["passed"] and entry["verification"]["max_abs_diff"] <= 1e-4


def test_eval_runs_every_format_through_its_predictor(format_name, fp32_models, tmp_path):
    """eval feeds `preprocessing.model_input` to the format's own predictor: Core ML included off macOS."""
    import shutil

    from PIL import Image

    from mbdeploy.evaluate import UNTRAINED_STATUS, evaluate, load_dataset
    from mbdeploy.export import predictor
    from mbdeploy.manifest import load_manifest
    from mbdeploy.preprocessing import model_input

    models = shutil.copytree(fp32_models.manifest_path.parent, tmp_path / "models" / SPEC.name, symlinks=True)
    data = tmp_path / "data"
    (data / "5").mkdir(parents=True)  # labelled class 5: eval records accuracy with its runtime
    for i, image in enumerate(_images()):
        Image.fromarray(((image + 1) * 127.5).round().astype(np.uint8)).save(data / "5" / f"{i}.png")
    with pytest.warns(UserWarning, match="seeded random weights"):  # top-1 is chance; the predictions are not
        results = evaluate([models], load_dataset(data), formats=[format_name])
    [result] = [r for r in results if r.format == format_name]
    assert result.status == UNTRAINED_STATUS and result.images == 3
    manifest = load_manifest(models)
    predict = predictor(format_name, _path(fp32_models, format_name))
    expected = [int(np.argmax(predict(model_input(data / "5" / f"{i}.png", SPEC.resolution, manifest["preprocessing"]))[1:]))
                for i in range(3)]
    assert result.predictions == expected
    assert manifest["accuracy"][f"{format_name}/fp32"]["runtime"] == FORMATS[format_name].runtime_tool


def test_a_missing_runtime_names_its_extra(format_name, fp32_models, monkeypatch):
    from mbdeploy.errors import MissingDependency
    from mbdeploy.export import predictor

    runtime_module = FORMATS[format_name].runtime_tool.replace("-", "_")  # ai-edge-litert imports as ai_edge_litert
    for loaded in [m for m in sys.modules if m == runtime_module or m.startswith(runtime_module + ".")]:
        monkeypatch.setitem(sys.modules, loaded, None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, runtime_module, None)
    tool = FORMATS[format_name].runtime_tool
    with pytest.raises(MissingDependency, match=rf"^{tool} is not installed; install it with: pip install 'mbdeploy\[\w+\]'"):
        predictor(format_name, _path(fp32_models, format_name))


def test_inspect_agrees_with_the_plan(format_name, fp32_models):
    from mbdeploy.accounting import model_cost
    from mbdeploy.inspection import inspect_model

    report = inspect_model(_path(fp32_models, format_name))
    cost = model_cost(SPEC)
    assert abs(report["macs"] - cost.macs) / cost.macs < 0.01
    assert abs(report["params"] - cost.params) / cost.params < 0.01
    assert [layer["type"] for layer in report["layers"]] == [layer.kind for layer in layer_plan(SPEC)]
    assert report["inputs"][0]["shape"] == [1, SPEC.resolution, SPEC.resolution, 3]
    assert report["outputs"][0]["shape"] == [1, SPEC.classes]


def test_eval_leaves_out_formats_whose_host_runtime_is_only_a_reference_here():
    from mbdeploy.formats import FORMAT_NAMES, eval_default_formats

    on_linux, left_out = eval_default_formats("linux")
    assert left_out == ("coreml",) and "coreml" not in on_linux and set(on_linux) | {"coreml"} == set(FORMAT_NAMES)
    assert eval_default_formats("darwin") == (FORMAT_NAMES, ())


def test_eval_cli_without_formats_says_which_artifacts_it_left_out(fp32_models, tmp_path):
    import json
    import sys

    from support.cli import run_cli

    if sys.platform == "darwin" or not _installed("coreml"):
        pytest.skip("Core ML has its native runtime here, or no Core ML artifact was built")
    data = tmp_path / "data" / "5"
    data.mkdir(parents=True)
    from PIL import Image

    Image.fromarray((_images(1)[0] * 127.5 + 127.5).astype("uint8")).save(data / "a.png")
    done = run_cli("eval", "--data", tmp_path / "data", "--models", fp32_models.manifest_path.parent, "--json")
    assert done.returncode == 0, done.stderr
    assert "coreml artifacts left out" in done.stderr and "--formats" in done.stderr
    # One `Warning:` line, not Python's warning dump with the source file and line.
    assert any(line.startswith("Warning: coreml artifacts left out") for line in done.stderr.splitlines()), done.stderr
    assert "UserWarning" not in done.stderr and "warnings.warn" not in done.stderr, done.stderr
    rows = {row["format"]: row for row in json.loads(done.stdout)}
    assert rows["coreml"]["status"] == "skipped: format not requested" and rows["onnx"]["status"] != rows["coreml"]["status"]
