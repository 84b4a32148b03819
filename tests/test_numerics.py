"""bench --check-outputs: the device's outputs on convert's probe inputs, checked against convert's reference.

On `local`, over ssh (a real OpenSSH server on loopback) and on the adb test device through the
real adb server, with the litert runner. A model whose weights changed after the manifest was
written (the sha256 check disabled by rewriting the manifest's digest) fails with its figures.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from support.cli import harness_env, mbdeploy
from support.skips import needs_adb
from support.sshd import sshd
from mbdeploy.bench.numerics import REFERENCE
from mbdeploy.manifest import artifact_digest, load_manifest, save_manifest
from mbdeploy.records.store import read_records

QUICK = ["--runs", "5", "--warmup", "1", "--precisions", "fp32,int8", "--check-outputs", "--json"]


def _records(stdout: str, cwd: Path) -> list[dict]:
    run_dir = Path(json.loads(stdout)["run_dir"])
    return read_records((run_dir if run_dir.is_absolute() else cwd / run_dir) / "results.jsonl")


def _assert_checked_and_passed(records: list[dict]) -> None:
    assert {r["artifact"]["precision"] for r in records} == {"fp32", "int8"}
    for record in records:
        numerics = record["numerics"]
        assert record["status"] == "ok" and numerics["passed"] is True, numerics
        assert numerics["probes"] == 8 and numerics["reference"] == REFERENCE
        assert numerics["cosine"] > 0.99 and numerics["max_abs_diff"] is not None
        if record["artifact"]["precision"] == "fp32":
            assert numerics["max_logit_diff"] < 1e-3  # the same float graph: only summation order differs


def test_probes_file_holds_the_inputs_and_reference_convert_verified_with(small_models):
    manifest = load_manifest(small_models / "mobilenet_v1_0.25_128")
    entry = manifest["probes"]
    assert entry["path"] == "probes.npz" and entry["count"] == 8 and entry["calibration_images"] == 0
    with np.load(small_models / "mobilenet_v1_0.25_128" / "probes.npz") as data:
        assert data["inputs"].shape == (8, 128, 128, 3) and data["reference"].shape == (8, 1001)
        assert -1.0 <= data["inputs"].min() and data["inputs"].max() <= 1.0


def test_check_outputs_passes_on_local_and_a_wrong_model_fails_with_its_figures(small_models, tmp_path):
    from mbdeploy.convert import ConvertRequest, convert_model

    models = shutil.copytree(small_models, tmp_path / "models")
    env = harness_env(tmp_path)
    done = mbdeploy(["bench", "--device", "local", "--models", "models", *QUICK], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    _assert_checked_and_passed(_records(done.stdout, tmp_path))

    # Weights altered after the manifest was written: the fp32 file replaced by one of other (seeded) weights,
    # and the manifest's digest rewritten to match, as if the sha256 check were off.
    other = convert_model(ConvertRequest(0.25, 128, out_dir=tmp_path / "other", formats=["tflite"],
                                         precisions=["fp32"], seed=1, verify=False))
    folder = models / "mobilenet_v1_0.25_128"
    manifest = load_manifest(folder)
    [entry] = [a for a in manifest["artifacts"] if a["precision"] == "fp32"]
    shutil.copy(other.manifest_path.parent / entry["path"], folder / entry["path"])
    entry["bytes"], entry["sha256"] = artifact_digest(folder / entry["path"])
    save_manifest(folder, manifest)

    done = mbdeploy(["bench", "--device", "local", "--models", "models", *QUICK[:-1]], cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert "Error: 1 of 2 records computed wrong outputs on the device (first: mobilenet_v1_0.25_128 fp32" in done.stderr
    assert "max logit diff" in done.stderr and "Traceback" not in done.stderr
    summary = " ".join(done.stdout.split())
    assert "OUTPUTS WRONG: max logit diff" in summary and "outputs ok" in summary  # int8 still right
    run = sorted((tmp_path / "results").iterdir())[-1]
    wrong = {r["artifact"]["precision"]: r for r in read_records(run / "results.jsonl")}
    fp32 = wrong["fp32"]
    # The timing is kept; the record is marked.
    assert fp32["status"] == "ok" and fp32["latency_ms"]["count"] == 5
    assert fp32["numerics"]["passed"] is False and fp32["numerics"]["failures"][0].startswith("max logit diff")
    assert fp32["numerics"]["max_logit_diff"] > 1e-3
    assert wrong["int8"]["numerics"]["passed"] is True
    # The report names it above everything else, and marks its row.
    done = mbdeploy(["report", str(run), "--out", "report", "--models", "models"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Wrong outputs on the device" in page and "WRONG: max logit diff" in page

    done = mbdeploy(["bench", "--device", "local", "--models", "models", *QUICK, "--allow-numerics-failure"],
                    cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["numerics_failed"] == 1


def test_check_outputs_over_ssh(small_models, tmp_path):
    with sshd(tmp_path / "sshd") as (url, config):
        # The alias from the project file, the ssh config from the user's own (harness_env: XDG_CONFIG_HOME).
        (tmp_path / "mbdeploy.toml").write_text(
            f'[aliases]\nboard = "{url}?python={sys.executable}&workdir={tmp_path / "remote"}"\n')
        (tmp_path / "config" / "mbdeploy").mkdir(parents=True)
        (tmp_path / "config" / "mbdeploy" / "config.toml").write_text(f'[ssh]\nconfig = "{config}"\n')
        done = mbdeploy(["bench", "--device", "board", "--models", str(small_models), *QUICK], cwd=tmp_path,
                        env=harness_env(tmp_path))
    assert done.returncode == 0, done.stderr
    records = _records(done.stdout, tmp_path)
    assert {r["device"]["kind"] for r in records} == {"ssh"}
    _assert_checked_and_passed(records)


@needs_adb
def test_check_outputs_on_the_adb_test_device(server, phone, small_models, tmp_path):
    import os

    config = tmp_path / "mbdeploy.toml"
    config.write_text("")
    env = dict(harness_env(tmp_path), MBDEPLOY_CONFIG=str(config))
    env.pop("ANDROID_SERIAL", None)
    done = mbdeploy(["bench", "--device", "pixel", "--runner", "litert", "--adb-host", server.address,
                     "--models", str(small_models), *QUICK], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    records = _records(done.stdout, tmp_path)
    assert {r["device"]["kind"] for r in records} == {"android"}
    _assert_checked_and_passed(records)
    assert os.path.isdir(phone.root) and not (phone.root / "data/local/tmp/mbdeploy").exists()
