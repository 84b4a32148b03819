"""Processes and signals on the local host: a killed or terminated bench leaves nothing timing.

Every test drives the real CLI in a subprocess, waits for the event it needs
(the runner process appearing, a process exiting: pidfd) and kills whatever
it started on the way out, pass or fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from mbdeploy.devices.local import LocalDevice
from mbdeploy.devices.lock import DeviceLock
from support.cli import PYTHON, harness_env, mbdeploy
from support.processes import exits_within, killed_afterwards, runners_under, wait_for
from support.tiny_model import tiny_tflite

LONG = ["--min-secs", "120", "--max-secs", "120", "--warmup", "0"]


def _start_bench(tmp_path: Path, *extra: str) -> subprocess.Popen:
    tiny_tflite(tmp_path / "models" / "m.tflite", channels=8)
    return subprocess.Popen([PYTHON, "-m", "mbdeploy", "bench", "--device", "local", "--models", "models",
                             "--out", "results", *LONG, *extra], cwd=tmp_path, env=harness_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _runner_of(tmp_path: Path) -> int:
    [pid] = wait_for(lambda: runners_under(tmp_path), 90, "the runner to start")
    return pid


def test_a_killed_bench_leaves_no_runner_and_frees_the_device(tmp_path):
    with killed_afterwards("litert_runner.py", str(tmp_path)):
        bench = _start_bench(tmp_path)
        try:
            runner = _runner_of(tmp_path)
        finally:
            bench.kill()
            bench.communicate()
        assert exits_within(runner, 10), "the runner kept timing after its bench was killed"
    # Nothing of the dead bench holds the device: a new bench gets the lock at once.
    DeviceLock("local", wait=False, directory=tmp_path / "cache" / "mbdeploy" / "locks").acquire()


def test_device_work_holds_the_device_lock_while_it_runs(tmp_path):
    device = LocalDevice(workdir=tmp_path / "work")
    with DeviceLock("local", wait=False, directory=tmp_path / "locks") as lock:
        device.lock = lock
        held = device.shell(["sh", "-c", 'ls -l "/proc/$$/fd"'])
        device.lock = None
        free = device.shell(["sh", "-c", 'ls -l "/proc/$$/fd"'])
    assert str(lock.path) in held.stdout  # the child has the locked file open: the lock lives as long as it does
    assert str(lock.path) not in free.stdout


def test_device_work_runs_in_its_own_process_group(tmp_path):
    group = LocalDevice(workdir=tmp_path).shell(["sh", "-c", "ps -o pgid= -p $$"]).stdout.strip()
    assert group and int(group) != os.getpgrp()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_end_a_bench_as_ctrl_c_does(tmp_path, signum):
    with killed_afterwards("litert_runner.py", str(tmp_path)):
        bench = _start_bench(tmp_path)
        try:
            runner = _runner_of(tmp_path)
            bench.send_signal(signum)
            _, stderr = bench.communicate(timeout=60)
        finally:
            bench.kill()
        assert exits_within(runner, 10)
    assert bench.returncode == 128 + signum, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"Error: interrupted ({signal.Signals(signum).name}); finished outputs are kept, partial ones were discarded")
    assert "Traceback" not in stderr
    # The work folder was cleaned up as after Ctrl-C.
    workdir = tmp_path / "cache" / "mbdeploy" / "local-device"
    assert not list(workdir.rglob("*.tflite"))
    [run] = (tmp_path / "results").iterdir()
    assert json.loads((run / "run.json").read_text())["options"]["timing"]["min_secs"] == 120


# --- a phone's settings survive SIGTERM and SIGKILL (the adb test device through the real adb server) ---------

def _phone_bench(tmp_path: Path, server, phone, *extra: str) -> list[str]:  # noqa: ANN001
    tiny_tflite(tmp_path / "models" / "m.tflite", channels=8)
    return [PYTHON, "-m", "mbdeploy", "bench", "--device", phone.serial, "--adb-host", server.address,
            "--runner", "litert", "--models", "models", "--out", "results", *extra]


def _phone_env(tmp_path: Path) -> dict:
    env = harness_env(tmp_path)
    (tmp_path / "mbdeploy.toml").write_text("")
    env.update(MBDEPLOY_CONFIG=str(tmp_path / "mbdeploy.toml"), XDG_STATE_HOME=str(tmp_path / "state"))
    env.pop("ANDROID_SERIAL", None)
    return env


def _stay_on(phone) -> str:  # noqa: ANN001
    return (phone.state / "settings" / "global.stay_on_while_plugged_in").read_text().strip()


def test_sigterm_restores_the_phone_and_a_killed_run_is_restored_from_the_host_copy(server, phone, tmp_path):
    env = _phone_env(tmp_path)
    (phone.state / "settings").mkdir(exist_ok=True)
    (phone.state / "settings" / "global.stay_on_while_plugged_in").write_text("2\n")  # the user's own choice
    words = ("litert_runner.py", str(phone.root))
    with killed_afterwards(*words):
        # SIGTERM mid-run: restored as after Ctrl-C.
        bench = subprocess.Popen(_phone_bench(tmp_path, server, phone, *LONG), cwd=tmp_path, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: runners_under(phone.root), 90, "the runner to start on the phone")
            assert _stay_on(phone) == "7" and (phone.state / "fixed_performance_mode").read_text().strip() == "true"
            bench.terminate()
            _, stderr = bench.communicate(timeout=60)
        finally:
            bench.kill()
        assert bench.returncode == 128 + signal.SIGTERM, stderr
        assert _stay_on(phone) == "2" and (phone.state / "fixed_performance_mode").read_text().strip() == "false"
        # The phone hangs up on the first run's runner a moment after the host has gone (adbd's SIGHUP once
        # the stream closes): wait for that, or the wait below could see the old runner and kill too early.
        wait_for(lambda: not runners_under(phone.root), 30, "the first run's runner to end")

        # SIGKILL mid-run: nothing can restore, but the originals wait on the host ...
        bench = subprocess.Popen(_phone_bench(tmp_path, server, phone, *LONG), cwd=tmp_path, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: runners_under(phone.root), 90, "the runner to start on the phone")
        finally:
            bench.kill()
            bench.wait()
    assert _stay_on(phone) == "7"  # the forced value is what the phone now shows
    saved = list((tmp_path / "state" / "mbdeploy" / "android-settings").glob("*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["originals"]["stay_on_while_plugged_in"] == "2"
    # ... and the next run restores the user's value, not the forced one it would read from the phone.
    done = subprocess.run(_phone_bench(tmp_path, server, phone, "--runs", "3", "--warmup", "0"), cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert _stay_on(phone) == "2" and not saved[0].exists()


# --- --resume finishes the run it names ------------------------------------------------------------------

def test_resume_restores_the_runs_models_and_options_and_refuses_others(tmp_path):
    from mbdeploy.records.store import RunFolder

    for channels in (4, 8):
        tiny_tflite(tmp_path / "chosen" / f"m{channels}.tflite", channels=channels)
    tiny_tflite(tmp_path / "models" / "default.tflite", channels=12)  # the default --models: not part of the run
    env = harness_env(tmp_path)
    first = mbdeploy(["bench", "--device", "local", "--models", "chosen", "--runs", "7", "--warmup", "1",
                      "--threads", "2", "--json"], cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    folder = RunFolder.open(tmp_path / "results", run_id)
    lines = folder.records_file.read_bytes().splitlines(keepends=True)
    folder.records_file.write_bytes(lines[0])  # as if the run had been killed after its first model

    for args, difference in [
        (["--runs", "20"], "--runs 20 (the run has 7)"),
        (["--models", "models"], f"--models {tmp_path / 'models'} (the run has {tmp_path / 'chosen'})"),
        (["--threads", "1"], "--threads 1 (the run has 2)"),
        (["--precisions", "fp32"], "--precisions fp32 (the run has none)"),
    ]:
        refused = mbdeploy(["bench", "--device", "local", "--resume", run_id, *args], cwd=tmp_path, env=env)
        assert refused.returncode == 2, refused.stderr
        message = refused.stderr.strip()
        assert message.startswith(f"Error: --resume {run_id} continues the run with its own options; these differ: ")
        assert difference in message and "\n" not in message
    assert len(folder.records()) == 1  # a refusal touches nothing

    # The same value again is fine; nothing else is needed, not even the device (the run names it).
    resumed = mbdeploy(["bench", "--resume", run_id, "--threads", "2", "--json"],
                       cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["skipped"] == 1 and summary["records"] == 1
    records = folder.records()
    assert sorted(r["artifact"]["name"] for r in records) == ["m4", "m8"]
    assert all(r["runner"]["threads"] == 2 and r["latency_ms"]["count"] == 7 for r in records)


def test_a_run_with_a_path_option_is_stored_and_resumed_with_it(tmp_path):
    from mbdeploy import bench

    binary = tmp_path / "benchmark_model"
    options = bench.BenchOptions(runner="benchmark_model", runner_options={"binary": binary})
    settings = bench.run_settings(options, [tmp_path / "models"], [], ["tflite"])
    folder = bench.start_run(tmp_path / "results", options, [tmp_path / "models"], [], settings=settings)
    meta = json.loads(folder.run_file.read_text())
    assert meta["options"]["runner_options"]["binary"] == str(binary)
    _, stored = bench.resumed_settings(tmp_path / "results", folder.run_id, {"binary": str(binary)}, {})
    restored = bench.options_from_settings(stored, ("binary",))
    assert restored.runner == "benchmark_model" and str(restored.runner_options["binary"]) == str(binary)
