"""`eval --device D`: top-1/top-5 computed by the device (litert runner), over local, ssh and the adb test device.

Google's trained mobilenet_v1_0.25_128_quant (uint8 input: the device quantizes the pushed floats with the
tensor's own scale) on the three reference photos: the device must rank exactly as the host does (1 of 3
top-1, 2 of 3 top-5: it sees a gecko in the hot dog), and its figure goes under its own key, which
select and the report never take for the host's or the release's.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from support.cli import harness_env, mbdeploy
from support.skips import needs_adb
from support.sshd import sshd
from mbdeploy.manifest import PREPROCESSING, SCHEMA, artifact_digest, load_manifest, save_manifest
from mbdeploy.records.reader import accuracy_evidence, device_accuracy
from mbdeploy.report.html import device_top1

PHOTOS = {"cat.bmp": "Egyptian cat", "bird.bmp": "chickadee", "hot_dog.jpg": "hotdog, hot dog, red hot"}
NAME = "mobilenet_v1_0.25_128"


def _setup(reference_dir: Path, root: Path) -> tuple[Path, Path, list[str]]:
    for photo, label in PHOTOS.items():
        (root / "photos" / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(reference_dir / photo, root / "photos" / label / photo)
    folder = root / "models" / NAME
    folder.mkdir(parents=True)
    shutil.copy(reference_dir / f"{NAME}_quant.tflite", folder / "m.tflite")
    size, digest = artifact_digest(folder / "m.tflite")
    save_manifest(folder, {"schema": SCHEMA, "name": NAME, "spec": {"alpha": 0.25, "resolution": 128, "classes": 1001},
                           "weights": {"source": "tflite", "trained": True}, "preprocessing": dict(PREPROCESSING),
                           "artifacts": [{"format": "tflite", "precision": "uint8", "path": "m.tflite",
                                          "bytes": size, "sha256": digest}]})
    common = ["--data", "photos", "--models", "models", "--class-names", str(reference_dir / "imagenet_labels.txt"),
              "--limit", "3", "--json"]
    return folder, root, common


def _eval(root: Path, args: list[str], env: dict | None = None) -> dict:
    done = mbdeploy(["eval", *args], cwd=root, env=env or harness_env(root))
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    return result


def test_eval_on_local_ranks_as_the_host_and_keeps_its_own_key(reference_dir, tmp_path):
    folder, root, common = _setup(reference_dir, tmp_path)
    host = _eval(root, common)
    assert host["images"] == 3 and round(host["top1_percent"], 1) == 33.3 and host["device"] is None
    device = _eval(root, [*common, "--device", "local", "--batch", "2"])  # two device calls: 2 + 1 images
    assert device["device"] == "local" and device["status"] == "ok"
    for key in ("images", "top1_percent", "top5_percent", "top1_ci95_percent"):
        assert device[key] == host[key], key
    accuracy = load_manifest(folder)["accuracy"]
    on_device = accuracy["tflite/uint8@local"]
    assert on_device["images"] == 3 and on_device["device"] == "local" and on_device["runtime"].startswith("litert runner on local")
    assert accuracy["tflite/uint8"]["runtime"] != on_device["runtime"]  # the host's entry is still the host's
    # select and the report rank by the host's key only: without it, a device figure is no accuracy of the model;
    # the report shows it beside, on rows of that device only.
    manifest = load_manifest(folder)
    artifact = manifest["artifacts"][0]
    assert accuracy_evidence(manifest, artifact, NAME, "tflite")["images"] == 3
    del manifest["accuracy"]["tflite/uint8"]
    assert accuracy_evidence(manifest, artifact, NAME, "tflite")["source"] is None
    shown = device_accuracy(manifest, artifact, "local")
    assert round(shown["device_top1_percent"], 1) == 33.3 and shown["device_top1_images"] == 3
    assert device_accuracy(manifest, artifact, "pixel-7")["device_top1_percent"] is None
    assert device_top1(shown).startswith("33.3% (") and "3 images; eval --device" in device_top1(shown)

    # Bad input: one line each.
    for args, words in ((["--device", "local", "--batch", "0"], "0 is not in the range 1<=x<=1024"),
                        (["--device", "local", "--batch", "2000"], "2000 is not in the range 1<=x<=1024"),
                        (["--runner", "litert"], "give --device too"),
                        (["--threads", "2"], "--threads: only with --device"),
                        (["--device", "no-such-board", "--adb-host", "192.0.2.1:5037"], "no-such-board")):
        done = mbdeploy(["eval", *common, *args], cwd=root, env=harness_env(root))
        lines = done.stderr.strip().splitlines()
        assert done.returncode != 0 and lines[-1].startswith("Error: ") and words in lines[-1], done.stderr
        assert "Traceback" not in done.stderr


def test_eval_over_ssh(reference_dir, tmp_path):
    _, root, common = _setup(reference_dir, tmp_path)
    with sshd(tmp_path / "sshd") as (url, config):
        (root / "mbdeploy.toml").write_text(
            f'[aliases]\nboard = "{url}?python={sys.executable}&workdir={tmp_path / "remote"}"\n')
        (root / "config" / "mbdeploy").mkdir(parents=True)
        (root / "config" / "mbdeploy" / "config.toml").write_text(f'[ssh]\nconfig = "{config}"\n')
        result = _eval(root, [*common, "--device", "board"])
    assert result["images"] == 3 and round(result["top1_percent"], 1) == 33.3
    assert any(key.startswith("tflite/uint8@") for key in load_manifest(root / "models" / NAME)["accuracy"])


@needs_adb
def test_eval_on_the_adb_test_device(server, phone, reference_dir, tmp_path):
    _, root, common = _setup(reference_dir, tmp_path)
    config = tmp_path / "mbdeploy.toml"
    config.write_text("")
    env = dict(harness_env(tmp_path), MBDEPLOY_CONFIG=str(config))
    env.pop("ANDROID_SERIAL", None)
    # The phone's default runner (the pinned LiteRT 2.x benchmark_model) cannot feed chosen inputs: one line.
    done = mbdeploy(["eval", *common, "--device", "pixel", "--adb-host", server.address], cwd=root, env=env)
    assert done.returncode == 2 and done.stderr.startswith("Error: eval --device ") and "--runner litert" in done.stderr
    result = _eval(root, [*common, "--device", "pixel", "--adb-host", server.address, "--runner", "litert"], env)
    assert result["images"] == 3 and round(result["top1_percent"], 1) == 33.3 and result["top5_percent"] is not None
    assert f"tflite/uint8@{result['device']}" in load_manifest(root / "models" / NAME)["accuracy"]
    assert not (phone.root / "data/local/tmp/mbdeploy").exists()  # what eval pushed is gone

    # The classic benchmark_model: one tool run per image, uint8 input files, the output file pulled. The tool is
    # the stand-in of tests/test_numerics_tools.py (upstream's file layouts, the host's LiteRT computing).
    tool = tmp_path / "benchmark_model"
    tool.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
                    "from mbdeploy.testing.benchmark_tool import main\nsys.exit(main(sys.argv[1:]))\n")
    tool.chmod(0o755)
    classic = _eval(root, [*common, "--device", "pixel", "--adb-host", server.address, "--runner", "benchmark_model",
                           "--benchmark-flavour", "tflite", "--benchmark-binary", str(tool)], env)
    for key in ("images", "top1_percent", "top5_percent"):
        assert classic[key] == result[key], key
    done = mbdeploy(["eval", *common, "--device", "pixel", "--adb-host", server.address, "--runner", "litert",
                     "--benchmark-binary", str(tool)], cwd=root, env=env)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("Error: the litert runner takes no")
