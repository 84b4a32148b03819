"""`mbdeploy convert` end to end on the small variant, plus every bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from support.cli import run_cli
from mbdeploy.atomic import sha256_file
from mbdeploy.convert import ConvertRequest, convert_model
from mbdeploy.errors import VerificationError
from mbdeploy.manifest import load_manifest

NAME = "mobilenet_v1_0.25_128"


def test_manifest_describes_every_artifact(small_models):
    manifest = load_manifest(small_models / NAME)
    assert manifest["spec"] == {"alpha": 0.25, "resolution": 128, "classes": 1001}
    assert manifest["weights"]["source"] == "random" and manifest["weights"]["trained"] is False
    assert manifest["preprocessing"]["range"] == [-1.0, 1.0] and manifest["preprocessing"]["layout"] == "NHWC"
    assert manifest["macs"] == 13_570_304
    assert {"mbdeploy", "tensorflow", "ai-edge-litert"} <= set(manifest["tools"])
    assert [(a["format"], a["precision"]) for a in manifest["artifacts"]] == [
        ("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "dynamic"), ("tflite", "int8")]
    for artifact in manifest["artifacts"]:
        path = small_models / NAME / artifact["path"]
        assert path.stat().st_size == artifact["bytes"]
        assert sha256_file(path) == artifact["sha256"]
        assert artifact["verification"]["passed"] is True, artifact["verification"]
    fp32 = manifest["artifacts"][0]["verification"]
    assert fp32["max_abs_diff"] <= 1e-4
    sizes = {a["precision"]: a["bytes"] for a in manifest["artifacts"]}
    assert sizes["fp16"] < 0.6 * sizes["fp32"] and sizes["int8"] < 0.35 * sizes["fp32"]


def test_int8_model_has_integer_io(small_models):
    from mbdeploy.inspection import inspect_model

    report = inspect_model(small_models / NAME / f"{NAME}_int8.tflite")
    assert report["inputs"][0]["dtype"] == "int8" and report["outputs"][0]["dtype"] == "int8"
    assert report["inputs"][0]["quantization"]["scale"] == pytest.approx(2 / 255, rel=1e-3)


def test_rerun_reuses_everything_without_importing_tensorflow(small_models):
    code = (
        "import sys; from pathlib import Path;"
        "from mbdeploy.convert import ConvertRequest, convert_model;"
        f"r = convert_model(ConvertRequest(0.25, 128, out_dir=Path({str(small_models)!r}), formats=['tflite']));"
        "print(len(r.built), len(r.reused), 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "4", "False"]


def test_changed_input_rebuilds_only_what_it_affects(tmp_path):
    first = convert_model(ConvertRequest(0.25, 128, out_dir=tmp_path, formats=["tflite"], precisions=["fp32"]))
    assert first.built == ["tflite/fp32"]
    second = convert_model(ConvertRequest(0.25, 128, out_dir=tmp_path, formats=["tflite"], precisions=["fp32", "fp16"]))
    assert second.built == ["tflite/fp16"] and second.reused == ["tflite/fp32"]
    # Tampering with a file under its final name is noticed and repaired.
    path = tmp_path / NAME / f"{NAME}_fp16.tflite"
    path.write_bytes(path.read_bytes()[:-10])
    third = convert_model(ConvertRequest(0.25, 128, out_dir=tmp_path, formats=["tflite"], precisions=["fp16"]))
    assert third.built == ["tflite/fp16"]
    # Another seed is other weights: the folder starts over.
    fourth = convert_model(ConvertRequest(0.25, 128, out_dir=tmp_path, formats=["tflite"], precisions=["fp32"], seed=1))
    assert fourth.built == ["tflite/fp32"] and len(load_manifest(tmp_path / NAME)["artifacts"]) == 1


def test_failed_verification_exits_non_zero_and_marks_the_manifest(tmp_path, monkeypatch):
    from mbdeploy import verify

    monkeypatch.setitem(verify.TOLERANCES, ("tflite", "fp32"), verify.Tolerance(max_logit_diff=0.0))
    with pytest.raises(VerificationError, match="tflite/fp32: max logit diff"):
        convert_model(ConvertRequest(0.25, 128, out_dir=tmp_path, formats=["tflite"], precisions=["fp32"]))
    artifact = load_manifest(tmp_path / NAME)["artifacts"][0]
    assert artifact["verification"]["passed"] is False


def test_real_weights_give_the_official_top1(tmp_path, reference_dir):
    """Import Google's 0.5_160 quant model, convert to fp32: same top-1 on the three photos."""
    from mbdeploy.export.tflite import predictor
    from mbdeploy.weights.tflite_import import open_interpreter
    from PIL import Image

    official = reference_dir / "mobilenet_v1_0.5_160_quant.tflite"
    result = convert_model(ConvertRequest(0.5, 160, weights=official, out_dir=tmp_path, formats=["tflite"],
                                          precisions=["fp32"]))
    assert result.manifest["weights"]["source"] == "tflite" and result.manifest["weights"]["trained"]
    ours = tmp_path / "mobilenet_v1_0.5_160" / "mobilenet_v1_0.5_160_fp32.tflite"
    labels = (reference_dir / "imagenet_labels.txt").read_text().splitlines()
    interpreter = open_interpreter(official)
    expected = {"cat.bmp": "Egyptian cat", "bird.bmp": "chickadee", "hot_dog.jpg": "hotdog, hot dog, red hot"}
    for photo, label in expected.items():
        pixels = np.asarray(Image.open(reference_dir / photo).convert("RGB").resize((160, 160)), np.uint8)
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels[None])
        interpreter.invoke()
        official_top1 = int(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].argmax())
        our_top1 = int(predictor(ours)((pixels.astype(np.float32) - 128) / 128).argmax())
        assert labels[official_top1] == label
        assert our_top1 == official_top1, (photo, labels[our_top1])


# --- the command line --------------------------------------------------------

@pytest.mark.parametrize(
    "args, message",
    [
        (["--alpha", "0"], "alpha must be in (0, 1.4], got 0"),
        (["--alpha", "1.5"], "alpha must be in (0, 1.4], got 1.5"),
        (["--res", "31"], "resolution must be an integer in [32, 1024], got 31"),
        (["--res", "abc"], "'abc' is not a valid integer"),
        (["--precisions", "fp8"], "precision 'fp8' is not supported for tflite; allowed: fp32, fp16, dynamic, int8"),
        (["--formats", "tensorrt"], "unknown format 'tensorrt'; allowed: tflite, coreml, onnx"),
        (["--calib", "/nonexistent/calib"], "calibration folder /nonexistent/calib does not exist"),
        (["--weights", "/nonexistent/w.tflite"], "weights file /nonexistent/w.tflite does not exist"),
        (["--weights", "weights.bin"], "cannot tell what kind of weights weights.bin holds"),
        (["--weights", "/nonexistent/mobilenet_v1_0.25_128.tgz"], "weights file /nonexistent/mobilenet_v1_0.25_128.tgz does not exist"),
        (["--weights", "/"], "cannot tell what kind of weights / holds"),
        (["--grid", "--weights", "w.tflite"], "--grid converts 16 widths and one weights file fits one alpha"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    result = run_cli("convert", "--alpha", "0.25", "--res", "128", "--formats", "tflite", "--out", tmp_path, *args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and message in error_lines[0], result.stderr
    assert not any(tmp_path.iterdir())  # rejected before any work started


def test_empty_calibration_folder(tmp_path):
    (tmp_path / "calib").mkdir()
    result = run_cli("convert", "--alpha", "0.25", "--res", "128", "--formats", "tflite", "--calib",
                     tmp_path / "calib", "--out", tmp_path / "out")
    assert result.returncode == 2 and "Error: calibration folder" in result.stderr and "is empty" in result.stderr


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_cli("convert", "--alpha", "0.25", "--res", "128", "--formats", "tflite", "--out", blocker / "models")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "Error: output folder" in result.stderr and "is not writable" in result.stderr


def test_corrupt_and_mismatched_weights_from_the_cli(tmp_path, reference_dir):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\x00" * 64)
    result = run_cli("convert", "--alpha", "0.25", "--res", "128", "--formats", "tflite", "--weights", broken,
                     "--out", tmp_path / "out")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "Error: broken.tflite is not a readable .tflite model" in result.stderr
    result = run_cli("convert", "--alpha", "0.25", "--res", "128", "--formats", "tflite", "--weights",
                     reference_dir / "mobilenet_v1_0.5_160_quant.tflite", "--out", tmp_path / "out")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "expected (3, 3, 3, 8) for alpha 0.25" in result.stderr


def test_calibration_folder_with_non_images_and_json_output(tmp_path, reference_dir):
    calib = tmp_path / "calib"
    calib.mkdir()
    for photo in ("cat.bmp", "bird.bmp"):
        os.symlink(reference_dir / photo, calib / photo)
    (calib / "notes.txt").write_text("not an image")
    result = run_cli("convert", "--alpha", "0.25", "--res", "128", "--formats", "tflite", "--precisions", "int8",
                     "--calib", calib, "--out", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr
    assert "Warning: skipped 1 non-image file(s)" in result.stderr and "notes.txt" in result.stderr
    data = json.loads(result.stdout)
    assert data["name"] == NAME and data["built"] == ["tflite/int8"]
    # Real images join the synthetic probes, so top-1 agreement covers photos too.
    assert data["artifacts"][0]["verification"]["probes"] == 2 + 8


def test_interrupted_convert_leaves_no_partial_file_under_a_final_name(tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "mbdeploy", "convert", "--alpha", "0.25", "--res", "128", "--formats", "tflite",
         "--out", str(out), "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    model_dir = out / NAME
    deadline = time.time() + 120
    while time.time() < deadline and not list(model_dir.glob("*.tflite")):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finals = sorted(model_dir.glob("*.tflite"))
    assert finals, "the convert was killed before writing anything; the test proves nothing"
    manifest = load_manifest(model_dir) if (model_dir / "manifest.json").exists() else {"artifacts": []}
    listed = {a["path"]: a["sha256"] for a in manifest["artifacts"]}
    from mbdeploy.weights.tflite_import import open_interpreter

    for path in finals:
        open_interpreter(path)  # whole, loadable models only under final names
        if path.name in listed:
            assert sha256_file(path) == listed[path.name]
    # The next run cleans temporaries and finishes the rest.
    result = run_cli("convert", "--alpha", "0.25", "--res", "128", "--formats", "tflite", "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    assert not list(model_dir.glob(".*.tmp"))
    assert len(load_manifest(model_dir)["artifacts"]) == 4


def test_outputs_get_the_usual_file_mode(small_models):
    umask = os.umask(0)
    os.umask(umask)
    for path in (small_models / NAME).iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_weights_that_are_a_folder(tmp_path):
    folder = tmp_path / "w.h5"
    folder.mkdir()
    result = run_cli("convert", "--alpha", "0.25", "--res", "128", "--formats", "tflite", "--weights", folder,
                     "--out", tmp_path / "out")
    assert result.returncode == 2 and f"Error: weights {folder} is not a file" in result.stderr


def test_a_rebuilt_artifact_loses_the_accuracy_measured_on_the_old_file(tmp_path):
    from mbdeploy.manifest import save_manifest

    convert_model(ConvertRequest(0.25, 128, out_dir=tmp_path, formats=["tflite"], precisions=["fp32", "int8"]))
    manifest = load_manifest(tmp_path / NAME)
    manifest["accuracy"] = {"tflite/int8": {"top1_percent": 50.0}, "tflite/fp32": {"top1_percent": 51.0}}
    save_manifest(tmp_path / NAME, manifest)
    calib = tmp_path / "calib"
    calib.mkdir()
    from mbdeploy.preprocessing import synthetic_images
    from PIL import Image

    for index, image in enumerate(synthetic_images(3, 64, seed=9)):
        Image.fromarray(((image + 1) * 127.5).astype(np.uint8)).save(calib / f"{index}.png")
    result = convert_model(ConvertRequest(0.25, 128, out_dir=tmp_path, formats=["tflite"], precisions=["fp32", "int8"],
                                          calib_dir=calib))
    assert result.built == ["tflite/int8"]
    manifest = load_manifest(tmp_path / NAME)
    assert manifest["accuracy"] == {"tflite/fp32": {"top1_percent": 51.0}}
    int8 = next(a for a in manifest["artifacts"] if a["precision"] == "int8")
    fp32 = next(a for a in manifest["artifacts"] if a["precision"] == "fp32")
    assert int8["calibration"] == str(calib) and fp32["calibration"] is None
