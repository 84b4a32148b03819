"""`mbdeploy eval`: real models on real images, label mapping, quantized inputs, agreement, the manifest record."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from support.cli import run_cli

from mbdeploy.errors import InvalidInput
from mbdeploy.evaluate import ClassNames, evaluate, load_dataset
from mbdeploy.manifest import PREPROCESSING, SCHEMA, artifact_digest, load_manifest, save_manifest

PHOTOS = {"cat.bmp": "Egyptian cat", "bird.bmp": "chickadee", "hot_dog.jpg": "hotdog, hot dog, red hot"}


def _names(reference_dir: Path) -> list[str]:
    return (reference_dir / "imagenet_labels.txt").read_text().splitlines()[1:]  # drop "background"


def _photo_tree(reference_dir: Path, root: Path) -> Path:
    for photo, label in PHOTOS.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(reference_dir / photo, root / label / photo)
    return root


def _manifest_for(models: Path, name: str, resolution: int, artifacts: list[tuple[Path, str, str]],
                  source: str = "tflite") -> Path:
    folder = models / name
    folder.mkdir(parents=True)
    entries = []
    for path, fmt, precision in artifacts:
        # A copy: a symlink out of the folder would be refused, as eval should.
        shutil.copytree(path, folder / path.name) if path.is_dir() else shutil.copy(path, folder / path.name)
        size, digest = artifact_digest(folder / path.name)
        entries.append({"format": fmt, "precision": precision, "path": path.name, "bytes": size, "sha256": digest})
    save_manifest(folder, {"schema": SCHEMA, "name": name, "spec": {"alpha": 0.5, "resolution": resolution, "classes": 1001},
                           "weights": {"source": source, "trained": True}, "preprocessing": dict(PREPROCESSING),
                           "artifacts": entries})
    return folder / "manifest.json"


def test_official_quantized_models_on_the_reference_photos(reference_dir, tmp_path):
    models = tmp_path / "models"
    for name, resolution in (("mobilenet_v1_0.25_128", 128), ("mobilenet_v1_0.5_160", 160)):
        _manifest_for(models, name, resolution, [(reference_dir / f"{name}_quant.tflite", "tflite", "uint8")])
    data = load_dataset(_photo_tree(reference_dir, tmp_path / "photos"), class_names=reference_dir / "imagenet_labels.txt")
    names = _names(reference_dir)
    in_order = [PHOTOS["cat.bmp"], PHOTOS["bird.bmp"], PHOTOS["hot_dog.jpg"]]  # class folders in name order
    assert [names[label] for label in data.labels] == in_order
    results = {r.model: r for r in evaluate([models], data)}
    # The README of the reference data: 0.5_160 gets all three; 0.25_128 sees a gecko in the hot dog.
    large, small = results["mobilenet_v1_0.5_160"], results["mobilenet_v1_0.25_128"]
    assert (large.top1_percent, large.top5_percent) == (100.0, 100.0)
    assert [names[p] for p in large.predictions] == in_order
    assert names[small.predictions[1]] == "chickadee" and names[small.predictions[2]] == "banded gecko"
    assert small.top5_percent == pytest.approx(200 / 3)
    recorded = load_manifest(models / "mobilenet_v1_0.5_160")["accuracy"]["tflite/uint8"]
    assert recorded["top1_percent"] == 100.0 and recorded["images"] == 3 and recorded["runtime"] == "ai-edge-litert"
    # The evidence travels with the figure: 3 of 3 is a Wilson 95% interval of 43.9-100%.
    assert recorded["top1_ci95_percent"] == pytest.approx([43.85, 100.0], abs=0.01)

    # The same photos as a flat folder with a labels file (class indices), and the cat labelled by name.
    flat = tmp_path / "flat"
    flat.mkdir()
    for photo in PHOTOS:
        shutil.copy(reference_dir / photo, flat / photo)
    (flat / "labels.txt").write_text(f"bird.bmp {names.index('chickadee')}\ncat.bmp,Egyptian cat\n"
                                     f"hot_dog.jpg\t{names.index(PHOTOS['hot_dog.jpg'])}\n")
    flat_data = load_dataset(flat, flat / "labels.txt", reference_dir / "imagenet_labels.txt")
    assert sorted(flat_data.labels) == sorted(data.labels)
    assert evaluate([models / "mobilenet_v1_0.5_160"], flat_data)[0].top1_percent == 100.0


def test_precisions_of_a_converted_model_agree_and_the_drop_is_recorded(small_models, reference_dir, tmp_path):
    models = shutil.copytree(small_models, tmp_path / "models")  # eval writes into manifests: not the shared copy
    photos = _photo_tree(reference_dir, tmp_path / "photos")
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for photo in PHOTOS:
        shutil.copy(reference_dir / photo, unlabelled / photo)
    free = evaluate([models], load_dataset(unlabelled))
    by_precision = {r.precision: r for r in free}
    assert set(by_precision) == {"fp32", "fp16", "dynamic", "int8"}
    fp32 = by_precision["fp32"]
    for result in free:
        assert result.top1_percent is None and result.images == 3
        if result.precision != "fp32":
            same = sum(a == b for a, b in zip(result.predictions, fp32.predictions))
            assert result.agreement_with_fp32_percent == pytest.approx(100 * same / 3)
    assert by_precision["fp16"].agreement_with_fp32_percent == 100.0  # fp16 weights, fp32 compute

    labelled = evaluate([models], load_dataset(photos, class_names=reference_dir / "imagenet_labels.txt"))
    accuracy = load_manifest(models / "mobilenet_v1_0.25_128")["accuracy"]
    for result in labelled:
        entry = accuracy[f"tflite/{result.precision}"]
        assert entry["top1_percent"] == result.top1_percent
        assert entry["agreement_with_fp32_percent"] == result.agreement_with_fp32_percent
        if result.precision != "fp32":
            drop = accuracy["tflite/fp32"]["top1_percent"] - result.top1_percent
            assert entry["top1_drop_vs_fp32_points"] == pytest.approx(drop)
            low, high = entry["top1_drop_ci95_points"]
            assert low <= drop <= high and high - low > 50  # 3 photos say little about a drop


def _colour_model(path: Path, resolution: int, channels_first: bool) -> None:
    """An ONNX model that averages each colour channel and scores classes by hand-set weights.

    Red -> class 7, green -> 42, blue -> 99 (outputs 8, 43, 100 after "background" at 0), and the
    background output is the largest of all, so an eval that forgets the label offset answers 0.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.zeros((3, 1001), np.float32)
    for channel, cls in enumerate((7, 42, 99)):
        weights[:, cls + 1] = -10.0
        weights[channel, cls + 1] = 10.0
    bias = np.zeros(1001, np.float32)
    bias[0] = 1000.0
    shape = [1, 3, resolution, resolution] if channels_first else [1, resolution, resolution, 3]
    axes = [2, 3] if channels_first else [1, 2]
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image", "axes"], ["mean"], keepdims=0),
         helper.make_node("MatMul", ["mean", "weights"], ["scores"]),
         helper.make_node("Add", ["scores", "bias"], ["logits"])],
        "colours",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1001])],
        [numpy_helper.from_array(np.array(axes, np.int64), "axes"), numpy_helper.from_array(weights, "weights"),
         numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _colour_images(root: Path, size: int = 40) -> Path:
    from PIL import Image

    for cls, colour in ((7, (255, 0, 0)), (42, (0, 255, 0)), (99, (0, 0, 255))):
        (root / str(cls)).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (size + 7 * i, size), colour).save(root / str(cls) / f"{i}.png")
    return root


@pytest.mark.parametrize("channels_first", [True, False], ids=["nchw", "nhwc"])
def test_onnx_preprocessing_layout_and_label_offset(tmp_path, channels_first):
    model = tmp_path / "colours.onnx"
    _colour_model(model, 32, channels_first)
    manifest = _manifest_for(tmp_path / "models", "mobilenet_v1_0.25_128", 32, [(model, "onnx", "fp32")], source="random")
    results = evaluate([manifest], load_dataset(_colour_images(tmp_path / "data")))
    assert results[0].predictions == [42, 42, 7, 7, 99, 99]  # folders in name order: "42" < "7" < "99"
    assert (results[0].top1_percent, results[0].top5_percent) == (100.0, 100.0)


def test_cli_eval_json_and_limit(tmp_path):
    model = tmp_path / "colours.onnx"
    _colour_model(model, 32, True)
    _manifest_for(tmp_path / "models", "mobilenet_v1_0.25_128", 32, [(model, "onnx", "fp32")], source="random")
    data = _colour_images(tmp_path / "data")
    done = run_cli("eval", "--data", data, "--models", tmp_path / "models", "--limit", "3", "--json")
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    assert (row["images"], row["top1_percent"], row["format"]) == (3, 100.0, "onnx")
    (data / "7" / "broken.png").write_bytes(b"not a png")  # one bad file must not cost the run
    done = run_cli("eval", "--data", data, "--models", tmp_path / "models", "--json")
    assert done.returncode == 0, done.stderr
    assert "Warning: skipped 1 unreadable image(s): broken.png" in done.stderr
    [row] = json.loads(done.stdout)
    assert (row["images"], row["top1_percent"]) == (6, 100.0)
    bad = run_cli("eval", "--data", tmp_path / "absent", "--models", tmp_path / "models")
    assert bad.returncode == 2 and bad.stderr.startswith("Error: --data ") and "Traceback" not in bad.stderr


def test_label_mapping_and_its_errors(tmp_path):
    names = ClassNames(["background", *[f"class {i}, alias {i}" for i in range(1000)]])
    assert names.lookup("class 5") == 5 and names.lookup("ALIAS_7") == 7 and names.lookup("nothing") is None
    synsets = ClassNames([f"n{i:08d} thing {i}" for i in range(1000)])
    assert synsets.lookup("n00000012") == 12 and synsets.lookup("thing 12") == 12
    from PIL import Image

    tree = tmp_path / "tree"
    for folder in ("n01440764", "n01443537"):
        (tree / folder).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tree / folder / "a.jpg")
    with pytest.raises(InvalidInput, match="label 'n01440764' is not a class index or a known class name .*--class-names"):
        load_dataset(tree)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.jpg")
    (flat / "labels.txt").write_text("a.jpg 1000\n")
    with pytest.raises(InvalidInput, match="labels.txt:1: class index 1000 is outside 0..999"):
        load_dataset(flat, flat / "labels.txt")
    (flat / "labels.txt").write_text("b.jpg 3\n")
    with pytest.raises(InvalidInput, match="image b.jpg is not in"):
        load_dataset(flat, flat / "labels.txt")
    assert load_dataset(flat).labels == [None]
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.jpg")  # a labels file's names stay in the data folder
    for escape in ("../outside.jpg", str(tmp_path / "outside.jpg")):
        (flat / "labels.txt").write_text(f"{escape} 3\n")
        for root in (flat, Path(os.path.relpath(flat))):  # "." as the data folder too
            with pytest.raises(InvalidInput, match="is not in"):
                load_dataset(root, flat / "labels.txt")
    (flat / "labels.txt").write_text("# nothing\n")
    with pytest.raises(InvalidInput, match="labels file .*labels.txt lists no images"):
        load_dataset(flat, flat / "labels.txt")
    with pytest.raises(InvalidInput, match="labels file .*missing.txt is unreadable"):
        load_dataset(flat, flat / "missing.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no images"):
        load_dataset(tmp_path / "empty")


def test_an_artifact_its_runtime_cannot_load_is_skipped_with_its_reason(tmp_path):
    pytest.importorskip("coremltools", reason="coremltools (the coreml extra) is not installed")
    model = tmp_path / "colours.onnx"
    _colour_model(model, 32, True)
    package = tmp_path / "model.mlpackage"
    package.mkdir()  # no Manifest.json: Core ML (or its numpy executor off macOS) cannot read it
    manifest = _manifest_for(tmp_path / "models", "mobilenet_v1_0.25_128", 32,
                             [(model, "onnx", "fp32"), (package, "coreml", "fp32")], source="random")
    results = {r.format: r for r in evaluate([manifest], load_dataset(_colour_images(tmp_path / "data")))}
    assert results["coreml"].status.startswith("skipped: cannot load model.mlpackage: ")
    assert results["onnx"].top1_percent == 100.0
    assert "coreml/fp32" not in load_manifest(manifest)["accuracy"]
