"""The trained-weights path a user follows first (issue 13, items 21-23)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from support.cli import run_cli
from mbdeploy import verify

PHOTOS = ("bird.bmp", "cat.bmp", "hot_dog.jpg")


@pytest.fixture
def photos(tmp_path, reference_dir):
    """The reference photos, linked (never copied) into a calibration folder."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in PHOTOS:
        os.symlink(reference_dir / photo, folder / photo)
    return folder


# --- 21: principled criteria -------------------------------------------------

def test_google_weights_with_real_photos_pass_verification(tmp_path, reference_dir, photos):
    """The README's example: fp16 of 0.5_160 on photos moved probabilities by 6.7e-3 (> 5e-3) and
    failed; int8 of 0.25_128 failed top-1 agreement on 2 decisive probes. Neither is a fault."""
    result = run_cli("convert", "--alpha", "0.5", "--res", "160", "--weights",
                     reference_dir / "mobilenet_v1_0.5_160_quant.tflite", "--calib", photos,
                     "--formats", "tflite", "--precisions", "fp16", "--out", tmp_path / "m", "--json")
    assert result.returncode == 0, result.stderr
    fp16 = json.loads(result.stdout)["artifacts"][0]["verification"]
    assert fp16["passed"] and fp16["max_abs_diff"] > 5e-3  # the old probability bound would have failed it
    assert fp16["max_logit_diff"] < 0.25

    result = run_cli("convert", "--alpha", "0.25", "--res", "128", "--weights",
                     reference_dir / "mobilenet_v1_0.25_128_quant.tflite", "--calib", photos,
                     "--formats", "onnx,coreml", "--precisions", "int8", "--out", tmp_path / "m", "--json")
    assert result.returncode == 0, result.stderr
    for artifact in json.loads(result.stdout)["artifacts"]:
        figures = artifact["verification"]
        assert figures["passed"], figures
        assert figures["decisive_probes"] < verify.MIN_DECISIVE_PROBES
        assert figures["notes"] == [f"top-1 agreement not judged: {figures['decisive_probes']} decisive probes "
                                    f"< {verify.MIN_DECISIVE_PROBES}"]


def _peaked(rows: int, classes: int = 10, seed: int = 0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(rows, classes))
    logits[np.arange(rows), np.arange(rows) % classes] += 4.0  # a clear winner in each row
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def test_float_exports_are_judged_on_logits():
    reference = _peaked(4).astype(np.float32)
    assert verify.compare("tflite", "fp32", reference, reference, "t")["passed"]
    # A wrong layer: every logit off by a fraction of a nat fails, however small the probabilities.
    logits = np.log(reference) + np.random.default_rng(1).normal(0, 0.5, reference.shape)
    wrong = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    figures = verify.compare("tflite", "fp16", wrong, reference, "t")
    assert not figures["passed"] and figures["failures"][0].startswith("max logit diff")
    # Mass moved to a class the reference gives almost nothing still counts.
    moved = reference.copy()
    moved[:, 5] = 0.3
    assert not verify.compare("tflite", "fp32", moved / moved.sum(1, keepdims=True), reference, "t")["passed"]
    # A class the export drops to zero (that the reference has) is an infinite difference.
    dropped = reference.copy()
    dropped[0, 9] = 0.0
    figures = verify.compare("tflite", "fp32", dropped, reference, "t")
    assert figures["max_logit_diff"] is None and not figures["passed"]  # infinite: stored as null, valid JSON
    assert figures["failures"][0].startswith("max logit diff infinite")


def test_top1_agreement_decides_only_with_enough_decisive_probes():
    for rows, judged in ((2, False), (verify.MIN_DECISIVE_PROBES, True)):
        reference = _peaked(rows).astype(np.float32)
        swapped = reference.copy()  # every other probe's top-1 moves to another class
        swapped[::2] = np.roll(reference[::2], 1, axis=1)
        figures = verify.compare("onnx", "int8", swapped, reference, "t")
        assert figures["decisive_probes"] == rows
        assert any("top-1 agreement" in f for f in figures["failures"]) is judged, figures
        assert bool(figures["notes"]) is not judged


def test_failed_verification_still_shows_the_summary_table(tmp_path, monkeypatch):
    from mbdeploy.cli import cli

    monkeypatch.setitem(verify.TOLERANCES, ("tflite", "fp32"), verify.Tolerance(max_logit_diff=0.0))
    result = CliRunner().invoke(cli, ["convert", "--alpha", "0.25", "--res", "128", "--formats", "tflite",
                                      "--precisions", "fp32,fp16", "--out", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    table = [line for line in lines if "tflite/" in line]
    assert any("tflite/fp32" in line and "FAILED" in line and "max logit diff" in line for line in table), result.output
    assert any("tflite/fp16" in line and "ok" in line for line in table), result.output
    assert lines[-1].startswith("Error: mobilenet_v1_0.25_128 failed verification (tflite/fp32: max logit diff")


# --- 22: random weights never silently replace trained ones ------------------

def test_grid_refuses_to_replace_trained_weights_unless_forced(tmp_path, reference_dir):
    from mbdeploy.manifest import load_manifest

    out = tmp_path / "models"
    result = run_cli("convert", "--alpha", "0.25", "--res", "128", "--weights",
                     reference_dir / "mobilenet_v1_0.25_128_quant.tflite", "--formats", "tflite",
                     "--precisions", "fp32", "--out", out)
    assert result.returncode == 0, result.stderr
    trained = load_manifest(out / "mobilenet_v1_0.25_128")
    for args in (["--grid"], ["--alpha", "0.25", "--res", "128"]):
        result = run_cli("convert", *args, "--formats", "tflite", "--precisions", "fp32", "--out", out)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.splitlines() == [
            f"Error: {out / 'mobilenet_v1_0.25_128'} holds a model converted from trained weights (tflite); random "
            "weights would replace it: pass --force to replace it, --weights to rebuild from trained weights, "
            "or --out another folder"]
        assert load_manifest(out / "mobilenet_v1_0.25_128") == trained  # untouched
        assert [p.name for p in out.iterdir()] == ["mobilenet_v1_0.25_128"]  # refused before any work
    result = run_cli("convert", "--alpha", "0.25", "--res", "128", "--formats", "tflite", "--precisions", "fp32",
                     "--out", out, "--force", "--json")
    assert result.returncode == 0, result.stderr
    assert load_manifest(out / "mobilenet_v1_0.25_128")["weights"]["trained"] is False


# --- 23: random-weight accuracy is meaningless downstream; failed verification is not evaluated ----

def _labelled_photos(tmp_path, reference_dir):
    folder = tmp_path / "data"
    folder.mkdir()
    for photo in PHOTOS:
        os.symlink(reference_dir / photo, folder / photo)
    (folder / "labels.txt").write_text("cat.bmp tiger cat\nbird.bmp chickadee\nhot_dog.jpg hotdog\n")
    return folder


def _record_for(manifest, artifact, device="host"):
    from support.records import make_record

    from mbdeploy.architecture import ModelSpec

    record = make_record("r1", ModelSpec(manifest["spec"]["alpha"], manifest["spec"]["resolution"]), median=3.0,
                         device=device, precision=artifact["precision"], weights_source=manifest["weights"]["source"])
    record["artifact"] |= {"sha256": artifact["sha256"], "bytes": artifact["bytes"]}
    return record


def test_random_weight_accuracy_is_marked_and_kept_out_of_select_and_report(tmp_path, small_models, reference_dir):
    import shutil

    from support.records import write_run

    from mbdeploy.manifest import load_manifest

    models = tmp_path / "models"
    shutil.copytree(small_models, models)
    data = _labelled_photos(tmp_path, reference_dir)
    result = run_cli("eval", "--data", data, "--labels", data / "labels.txt", "--class-names",
                     reference_dir / "imagenet_labels.txt", "--models", models, "--formats", "tflite", "--json")
    assert result.returncode == 0, result.stderr
    assert {r["status"] for r in json.loads(result.stdout)} == {"ok (weights untrained: top-1 meaningless)"}
    assert "has seeded random weights: its top-1 is chance level" in result.stderr
    manifest = load_manifest(models / "mobilenet_v1_0.25_128")
    assert all("weights untrained" in entry["meaningless"] for entry in manifest["accuracy"].values())

    fp32 = next(a for a in manifest["artifacts"] if a["precision"] == "fp32")
    write_run(tmp_path / "results", "r1", [_record_for(manifest, fp32)])
    result = run_cli("select", "--device", "host", "--budget-ms", "100", "--results", tmp_path / "results",
                     "--models", models, "--json")
    assert result.returncode == 1 and "Error: no model with known accuracy fits" in result.stderr
    candidates = json.loads(result.stdout)["candidates"]
    assert {c["status"] for c in candidates if c["latency_ms"] is not None} == {
        "accuracy weights untrained (top-1 meaningless)"}
    assert all(c["top1_percent"] is None for c in candidates)

    result = run_cli("report", tmp_path / "results", "--models", models, "--out", tmp_path / "report", "--json")
    assert result.returncode == 0, result.stderr
    import csv

    rows = list(csv.DictReader((tmp_path / "report" / "results.csv").open()))
    assert rows[0]["top1_percent"] == "" and rows[0]["accuracy_source"] == "none: weights untrained (top-1 meaningless)"
    accuracy = next(f for f in json.loads(result.stdout)["figures"] if f["name"] == "accuracy_vs_latency")
    assert accuracy["png"] is None and accuracy["note"]


def test_eval_refuses_an_artifact_that_failed_verification(tmp_path, small_models, reference_dir):
    import shutil

    from mbdeploy.manifest import load_manifest, save_manifest

    models = tmp_path / "models"
    shutil.copytree(small_models, models)
    folder = models / "mobilenet_v1_0.25_128"
    manifest = load_manifest(folder)
    manifest["artifacts"][3]["verification"] |= {"passed": False, "failures": ["cosine 0.5000 < 0.9"]}
    save_manifest(folder, manifest)
    data = _labelled_photos(tmp_path, reference_dir)
    result = run_cli("eval", "--data", data, "--labels", data / "labels.txt", "--class-names",
                     reference_dir / "imagenet_labels.txt", "--models", models, "--json")
    assert result.returncode == 0, result.stderr
    int8 = next(r for r in json.loads(result.stdout) if r["precision"] == "int8")
    assert int8["status"] == ("skipped: failed verification at convert (cosine 0.5000 < 0.9); reconvert, "
                              "or accept it with convert --no-verify") and int8["images"] == 0
    assert "tflite/int8" not in load_manifest(folder)["accuracy"]
