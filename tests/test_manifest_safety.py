"""A manifest is untrusted input: paths stay in their folder, files are checked, updates are never lost.

Issue 13 items 1, 6, 7, 8, 9 (and the manifest path `/` of item 18), through the real CLI where
the item is about the CLI.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import pytest

from mbdeploy.atomic import sha256_file
from mbdeploy.bench.artifacts import collect_artifacts
from mbdeploy.errors import ManifestError
from mbdeploy.manifest import (PREPROCESSING, SCHEMA, artifact_digest, checked_artifact, load_manifest,
                               save_manifest, update_manifest)
from support.cli import harness_env, mbdeploy
from support.tiny_model import tiny_tflite


def _entry(folder: Path, path: str, fmt: str = "tflite", precision: str = "fp32", digest_of: Path | None = None) -> dict:
    entry = {"format": fmt, "precision": precision, "path": path}
    if digest_of is not None:
        entry["bytes"], entry["sha256"] = artifact_digest(digest_of)
    return entry


def _manifest(folder: Path, entries: list[dict], name: str = "mobilenet_v1_0.25_128") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return save_manifest(folder, {"schema": SCHEMA, "name": name,
                                  "spec": {"alpha": 0.25, "resolution": 128, "classes": 1001},
                                  "weights": {"source": "random", "sha256": "w" * 64}, "preprocessing": PREPROCESSING,
                                  "artifacts": entries})


def _hostile_manifests(tmp_path: Path) -> dict[str, Path]:
    """One model folder per way out of it; `secret.tflite` stands for /etc/shadow or an ssh host key."""
    secret = tiny_tflite(tmp_path / "secret.tflite")
    cases = {
        "absolute": [_entry(tmp_path, str(secret), digest_of=secret)],
        "dotdot": [_entry(tmp_path, "../../secret.tflite", digest_of=secret)],
        "root": [_entry(tmp_path, "/")],
        "no digest": [_entry(tmp_path, "inside.tflite")],
        "symlink": [_entry(tmp_path, "link.tflite", digest_of=secret)],
    }
    folders = {}
    for case, entries in cases.items():
        folder = tmp_path / "models" / case.replace(" ", "_") / "m"
        _manifest(folder, entries)
        tiny_tflite(folder / "inside.tflite")
        (folder / "link.tflite").symlink_to(secret)
        folders[case] = folder
    return folders


@pytest.mark.parametrize("case, message", [
    ("absolute", "is refused; expected a relative path inside the model folder"),
    ("dotdot", "is refused; expected a relative path inside the model folder"),
    ("root", "'/' is refused"),
    ("no digest", "has no bytes and sha256"),
    ("symlink", "leaves the model folder through a symlink"),
])
def test_bench_refuses_a_manifest_path_outside_its_folder_or_without_a_digest(tmp_path, case, message):
    folder = _hostile_manifests(tmp_path)[case]
    env = harness_env(tmp_path)
    done = mbdeploy(["bench", "--device", "local", "--models", str(folder), "--runs", "2", "--out", "results"],
                    cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr
    assert not (tmp_path / "results").exists()  # refused before any run starts
    # The device's work folder never received a file.
    assert not [p for p in (tmp_path / "cache").rglob("*.tflite")]


def test_eval_refuses_the_same_paths_and_report_ignores_a_record_naming_a_host_file(tmp_path):
    folders = _hostile_manifests(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 10, 10)).save(data / "a.png")
    for case in ("absolute", "dotdot", "root", "symlink", "no digest"):
        done = mbdeploy(["eval", "--data", str(data), "--models", str(folders[case])], cwd=tmp_path,
                        env=harness_env(tmp_path))
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.splitlines()[-1].startswith("Error: ") and "manifest.json" in done.stderr
        assert "accuracy" not in load_manifest(folders[case])

    from mbdeploy.records.reader import ManifestIndex

    index = ManifestIndex()
    record = {"artifact": {"manifest": str(tmp_path / "secret.tflite"), "sha256": "0" * 64}}
    assert index.for_record(record) is None and index.entries() == []


def test_convert_up_to_date_check_never_trusts_an_escaping_path(tmp_path):
    from mbdeploy.convert import up_to_date

    secret = tiny_tflite(tmp_path / "secret.tflite")
    folder = tmp_path / "models" / "m"
    _manifest(folder, [])
    size, digest = artifact_digest(secret)
    for path in (str(secret), "../../secret.tflite", "/"):
        assert not up_to_date(folder, {"build_key": "k", "path": path, "bytes": size, "sha256": digest,
                                       "format": "tflite"}, "k")
    shutil.copy(secret, folder / "ok.tflite")
    assert up_to_date(folder, {"build_key": "k", "path": "ok.tflite", "bytes": size, "sha256": digest,
                               "format": "tflite"}, "k")


def test_eval_checks_size_and_sha256_of_each_artifact(tmp_path):
    folder = tmp_path / "models" / "m"
    model = tiny_tflite(folder / "m_fp32.tflite", channels=8)
    _manifest(folder, [_entry(folder, "m_fp32.tflite", digest_of=model)])
    tiny_tflite(model, channels=12)  # swapped for another model after convert
    data = tmp_path / "data"
    data.mkdir()
    from PIL import Image

    Image.new("RGB", (16, 16)).save(data / "a.png")
    done = mbdeploy(["eval", "--data", str(data), "--models", "models"], cwd=tmp_path, env=harness_env(tmp_path))
    assert done.returncode == 1
    assert "is not the file" in done.stderr or "changed since" in done.stderr
    assert "accuracy" not in load_manifest(folder)
    # Same size, other bytes: the sha256 catches it.
    same_size = bytearray(model.read_bytes())
    same_size[-1] ^= 0xFF
    model.write_bytes(bytes(same_size))
    _manifest(folder, [_entry(folder, "m_fp32.tflite", digest_of=model)])
    same_size[-1] ^= 0x0F
    model.write_bytes(bytes(same_size))
    with pytest.raises(ManifestError, match="sha256 differs"):
        checked_artifact(folder / "manifest.json", load_manifest(folder)["artifacts"][0])


def _add_keys(folder: str, prefix: str, count: int) -> None:
    def add(key: str):
        def change(current):
            current.setdefault("accuracy", {})[key] = {"top1_percent": 1.0}
            return current
        return change

    for number in range(count):
        update_manifest(Path(folder), add(f"{prefix}{number}"))


def test_concurrent_manifest_updates_are_all_kept(tmp_path):
    folder = tmp_path / "m"
    _manifest(folder, [])
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_add_keys, args=(str(folder), prefix, 40)) for prefix in "abc"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert len(load_manifest(folder)["accuracy"]) == 120


def test_convert_merges_what_eval_and_another_convert_wrote_meanwhile(tmp_path, monkeypatch):
    from mbdeploy import convert

    real_build = convert._build_artifact

    def build_while_others_write(job, fmt, precision, model_dir, request, key):
        artifact = real_build(job, fmt, precision, model_dir, request, key)

        def others(current):  # an eval finished and a convert of int8 landed while we built fp32
            current.setdefault("accuracy", {})["tflite/int8"] = {"top1_percent": 12.5}
            current["artifacts"].append({"format": "tflite", "precision": "int8", "path": "other_int8.tflite"})
            return current

        if (model_dir / "manifest.json").exists():
            update_manifest(model_dir, others)
        return artifact

    request = convert.ConvertRequest(0.25, 128, out_dir=tmp_path / "models", formats=["tflite"],
                                     precisions=["fp32", "fp16"], verify=False)
    monkeypatch.setattr(convert, "_build_artifact", build_while_others_write)
    result = convert.convert_model(request)
    manifest = load_manifest(result.manifest_path)
    assert sorted(a["precision"] for a in manifest["artifacts"]) == ["fp16", "fp32", "int8"]
    assert manifest["accuracy"]["tflite/int8"] == {"top1_percent": 12.5}
    assert result.manifest == manifest


def test_new_weights_move_the_old_files_out_and_bench_times_only_listed_artifacts(tmp_path):
    env = harness_env(tmp_path)
    base = ["convert", "--alpha", "0.25", "--res", "128", "--formats", "tflite", "--no-verify", "--json"]
    first = mbdeploy([*base, "--precisions", "fp32,fp16", "--seed", "1"], cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "models" / "mobilenet_v1_0.25_128"
    old_fp16 = sha256_file(folder / "mobilenet_v1_0.25_128_fp16.tflite")
    second = mbdeploy([*base, "--precisions", "fp32", "--seed", "2"], cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert "Warning:" in second.stderr and "moved to" in second.stderr
    assert sorted(p.name for p in folder.glob("*.tflite")) == ["mobilenet_v1_0.25_128_fp32.tflite"]
    [aside] = folder.glob("superseded-*")
    assert sorted(p.name for p in aside.iterdir()) == [
        "manifest.json.old", "mobilenet_v1_0.25_128_fp16.tflite", "mobilenet_v1_0.25_128_fp32.tflite"]
    assert sha256_file(aside / "mobilenet_v1_0.25_128_fp16.tflite") == old_fp16
    # A stray file beside a manifest is not timed either; a plain file the user names is.
    tiny_tflite(folder / "stray.tflite")
    found = collect_artifacts([tmp_path / "models"])
    assert [(a.name, a.precision) for a in found] == [("mobilenet_v1_0.25_128", "fp32")]
    [named] = collect_artifacts([folder / "stray.tflite"])
    assert named.name == "stray"


def test_the_calibration_key_covers_exactly_the_images_read(tmp_path):
    from PIL import Image

    from mbdeploy.convert import CALIBRATION_LIMIT, calibration_fingerprint
    from mbdeploy.preprocessing import readable_images

    calib = tmp_path / "calib"
    (calib / "a_notes").mkdir(parents=True)
    for number in range(CALIBRATION_LIMIT * 4 + 50):  # more non-images than the old key ever looked at
        (calib / "a_notes" / f"{number:05d}.txt").write_text(f"note {number}")
    (calib / "photos").mkdir()
    for number in range(3):
        Image.new("RGB", (20, 20), (number * 80, 0, 0)).save(calib / "photos" / f"{number}.png")
    images, skipped = readable_images(calib, CALIBRATION_LIMIT)
    assert [p.name for p in images] == ["0.png", "1.png", "2.png"] and len(skipped) == CALIBRATION_LIMIT * 4 + 50
    before = calibration_fingerprint(calib, 0)
    Image.new("RGB", (20, 20), (0, 0, 255)).save(calib / "photos" / "1.png")  # a photo replaced
    replaced = calibration_fingerprint(calib, 0)
    assert replaced != before
    (calib / "photos" / "1.png").rename(calib / "photos" / "9.png")  # same bytes, another name
    assert calibration_fingerprint(calib, 0) != replaced
    (calib / "a_notes" / "00000.txt").write_text("edited")  # a file that is not read changes nothing
    assert calibration_fingerprint(calib, 0) == calibration_fingerprint(calib, 0)
    renamed = calibration_fingerprint(calib, 0)
    (calib / "a_notes" / "00001.txt").write_text("edited too")
    assert calibration_fingerprint(calib, 0) == renamed
