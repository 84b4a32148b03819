"""Bad input and hostile environments get one `Error:` line, never a traceback (issue 13, items 18 and 20).

All through the real CLI. A full disk is a real tmpfs and a read-only folder a real read-only
bind mount, both in a user and mount namespace (`unshare -rm`), so the tests hold when run as root.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from mbdeploy.architecture import grid_specs
from support.cli import PYTHON, harness_env, mbdeploy
from support.namespaces import namespaces_unavailable_reason
from support.records import make_record, power_law_latency, write_run
from support.tiny_model import tiny_tflite

SMALL = ["--alpha", "0.25", "--res", "128", "--formats", "tflite"]


def _one_error_line(done: subprocess.CompletedProcess, code: int | None = None) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    if code is not None:
        assert done.returncode == code, done.stderr
    else:
        assert done.returncode != 0
    return errors[0]


def _in_namespace(tmp_path, script: str) -> subprocess.CompletedProcess:
    reason = namespaces_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return subprocess.run(["unshare", "-rm", "sh", "-c", f"set -u\n{script}"], cwd=tmp_path,
                          env=harness_env(tmp_path), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("res", ["10000", "1000000000"])
def test_a_resolution_that_cannot_fit_is_refused_before_work_with_the_limit(tmp_path, res):
    started = time.monotonic()
    done = mbdeploy(["convert", *SMALL, "--res", res, "--out", str(tmp_path / "m")], cwd=tmp_path,
                    env=harness_env(tmp_path))
    line = _one_error_line(done, 2)
    assert f"resolution must be an integer in [32, 1024], got {res}" in line
    assert time.monotonic() - started < 60 and not (tmp_path / "m" / f"mobilenet_v1_0.25_{res}").exists()


@pytest.mark.parametrize("args", [
    ["bench", "--device", "local", "--max-secs", "nan"],
    ["bench", "--device", "local", "--min-secs", "nan"],
    ["bench", "--device", "local", "--target-ci", "nan"],
    ["bench", "--device", "local", "--cooldown", "inf"],
    ["bench", "--device", "local", "--cooldown-temp", "nan"],
    ["select", "--device", "local", "--budget-ms", "nan"],
    ["select", "--device", "local", "--budget-ms", "10", "--max-size-mb", "inf"],
    ["convert", "--alpha", "nan"],
    ["profile", "--device", "local", "--layer-secs", "nan"],
    ["profile", "--device", "local", "--max-secs", "inf"],
    ["profile", "--device", "local", "--target-ci", "nan"],
])
def test_non_finite_numbers_in_float_options_are_refused(tmp_path, args):
    done = mbdeploy(args, cwd=tmp_path, env=harness_env(tmp_path))
    line = _one_error_line(done, 2)
    assert "is not a finite number" in line and not (tmp_path / "results").exists()


@pytest.mark.parametrize("command", [["compare", "a.txt", "a.txt"], ["report", "a.txt"]])
def test_a_plain_file_where_a_run_belongs_is_one_line(tmp_path, command):
    (tmp_path / "a.txt").write_text("not a run\n")
    done = mbdeploy(command, cwd=tmp_path, env=harness_env(tmp_path))
    line = _one_error_line(done, 1)
    assert "a.txt is a file" in line and "results.jsonl" in line


def test_help_of_an_unbounded_float_option_shows_no_range(tmp_path):
    done = mbdeploy(["convert", "--help"], cwd=tmp_path, env=harness_env(tmp_path))
    assert done.returncode == 0 and "--alpha" in done.stdout
    assert "None" not in done.stdout, done.stdout


def test_an_alpha_whose_id_would_not_read_back_is_refused(tmp_path):
    for alpha in ("1e-300", "0.123456"):
        done = mbdeploy(["convert", "--alpha", alpha, "--res", "128", "--out", str(tmp_path / "m")], cwd=tmp_path,
                        env=harness_env(tmp_path))
        assert "has no model id that reads back as itself" in _one_error_line(done, 2)
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").iterdir())


def test_a_tgz_that_is_not_a_tar_is_one_line(tmp_path):
    (tmp_path / "weights.tgz").write_bytes(b"\x00not a tar at all" * 64)
    done = mbdeploy(["convert", *SMALL, "--weights", "weights.tgz", "--out", "m"], cwd=tmp_path,
                    env=harness_env(tmp_path))
    line = _one_error_line(done)
    assert line == ("Error: weights.tgz is not a readable checkpoint archive: not a tar file (plain, gzip, bzip2 "
                    "or xz), as Google's .tgz releases are")
    assert done.stderr.strip().endswith(line)  # nothing after it: the five-line list of methods is gone


def _runs(results, name="mobilenet_v1_0.25_128"):
    specs = grid_specs()[-4:]
    records = [make_record("r", s, median=power_law_latency(s)) for s in specs]
    records[0]["artifact"]["name"] = name
    return write_run(results, "r", records)


def test_report_out_naming_a_file_or_a_read_only_folder(tmp_path):
    _runs(tmp_path / "results")
    (tmp_path / "a-file").write_text("mine")
    done = mbdeploy(["report", "--out", "a-file"], cwd=tmp_path, env=harness_env(tmp_path))
    assert "--out a-file is a file; name a folder" in _one_error_line(done)
    assert (tmp_path / "a-file").read_text() == "mine"

    (tmp_path / "ro").mkdir()
    script = f"""
        mount --bind ro ro && mount -o remount,ro,bind ro
        {PYTHON} -m mbdeploy report --out ro/report > out.txt 2> err.txt; echo $? > rc.txt
    """
    assert _in_namespace(tmp_path, script).returncode == 0
    err = (tmp_path / "err.txt").read_text()
    assert (tmp_path / "rc.txt").read_text().strip() in ("1", "2"), err
    assert "Traceback" not in err and "Error: --out ro/report" in err and "Read-only file system" in err


def test_a_full_disk_in_convert_and_report_is_one_line_and_leaves_no_partial_file(tmp_path):
    _runs(tmp_path / "results")
    (tmp_path / "fs").mkdir()
    script = f"""
        mount -t tmpfs -o size=256k tmpfs fs
        {PYTHON} -m mbdeploy convert {' '.join(SMALL)} --precisions fp32 --no-verify --out fs/models \\
            > convert.out 2> convert.err; echo $? > convert.rc
        ls -A fs/models/mobilenet_v1_0.25_128 > convert.ls
        head -c 250000 /dev/zero > fs/filler
        {PYTHON} -m mbdeploy report --out fs/report > report.out 2> report.err; echo $? > report.rc
        ls -A fs > report.ls
    """
    assert _in_namespace(tmp_path, script).returncode == 0
    for command in ("convert", "report"):
        err = (tmp_path / f"{command}.err").read_text()
        assert (tmp_path / f"{command}.rc").read_text().strip() == "1", err
        line = _one_error_line(subprocess.CompletedProcess([], 1, "", err))
        assert line.startswith("Error: cannot write fs/") and "No space left on device" in line
        left = (tmp_path / f"{command}.ls").read_text().split()
        assert not [name for name in left if name.endswith(".tmp")], left  # temporaries removed
    assert "mobilenet_v1_0.25_128_fp32.tflite" not in (tmp_path / "convert.ls").read_text()


def test_a_read_only_cache_is_one_line_and_leaves_no_run_folder(tmp_path):
    tiny_tflite(tmp_path / "models" / "m.tflite")
    (tmp_path / "cache").mkdir()
    script = f"""
        mount --bind cache cache && mount -o remount,ro,bind cache
        {PYTHON} -m mbdeploy bench --device local --models models --runs 2 --out results > out.txt 2> err.txt
        echo $? > rc.txt
    """
    assert _in_namespace(tmp_path, script).returncode == 0  # harness_env: XDG_CACHE_HOME=tmp_path/cache
    err = (tmp_path / "err.txt").read_text()
    line = _one_error_line(subprocess.CompletedProcess([], 1, "", err))
    assert "is not writable: Read-only file system" in line and "XDG_CACHE_HOME" in line
    assert (tmp_path / "rc.txt").read_text().strip() == "1" and not (tmp_path / "results").exists()


def test_a_dollar_in_a_model_name_is_drawn_as_written(tmp_path):
    _runs(tmp_path / "results", name="$\\frac{1$")
    done = mbdeploy(["report", "--out", "report", "--json"], cwd=tmp_path, env=harness_env(tmp_path))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    figures = {f["name"]: f for f in json.loads(done.stdout)["figures"]}
    drawn = figures["latency_vs_macs"]
    assert drawn["note"] is None and (tmp_path / drawn["png"]).stat().st_size > 0  # drawn, not replaced by a note


def test_bench_on_an_unauthorized_phone_prints_the_fix(server, tmp_path):
    from mbdeploy.testing.adb_device import AdbTestDevice

    tiny_tflite(tmp_path / "models" / "m.tflite")
    with AdbTestDevice(tmp_path / "locked", unauthorized=True) as locked:
        server.client().connect(locked.serial, timeout=10)
        env = harness_env(tmp_path)
        deadline = time.monotonic() + 20
        while True:
            done = mbdeploy(["bench", "--device", locked.serial, "--adb-host", server.address, "--models", "models",
                             "--runner", "litert", "--runs", "2"], cwd=tmp_path, env=env)
            if "is unauthorized" in done.stderr or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        line = _one_error_line(done, 1)
        assert f"{locked.serial} is unauthorized: unlock the phone and accept the 'Allow USB debugging?'" in line
        server.client().disconnect(locked.serial)
