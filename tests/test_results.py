"""Run folders, schema validation of untrusted records, crash-tolerant reading, device locks."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time

import pytest

from mbdeploy.errors import InvalidInput, ResultsError
from mbdeploy.devices.lock import DeviceLock
from mbdeploy.records.schema import validate_record
from mbdeploy.records.store import RunFolder, read_records, record_key

GOOD = {
    "schema": "mbdeploy.record/1", "run_id": "r1", "status": "ok", "error": None,
    "device": {"kind": "local", "id": "local"},
    "artifact": {"name": "mobilenet_v1_0.25_128", "format": "tflite", "precision": "fp32", "sha256": "a" * 64,
                 "macs": 14_000_000, "params": 470_000, "bytes": 1_900_000},
    "runner": {"name": "litert", "threads": 1}, "config_key": "abc",
    "latency_ms": {"median": 2.0, "mean": 2.1, "count": 10, "ci95_low": 1.9, "ci95_high": 2.2},
    "init_ms": 3.0, "first_inference_ms": 4.0, "peak_memory_mb": 50.0,
    "power": {"status": "unavailable", "reason": "no sensor"}, "thermal": {}, "throttled": False,
    "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z",
}


def _record(**changes) -> dict:
    record = copy.deepcopy(GOOD)
    for dotted, value in changes.items():
        target = record
        *parents, leaf = dotted.split("__")
        for part in parents:
            target = target[part]
        target[leaf] = value
    return record


def test_a_good_record_validates():
    validate_record(_record())


@pytest.mark.parametrize("changes, where", [
    ({"latency_ms__median": -1.0}, "latency_ms"),
    ({"device__kind": "toaster"}, "device/kind"),
    ({"artifact__sha256": "not-a-hash"}, "artifact/sha256"),
    ({"power__status": "made-up"}, "power/status"),
    ({"throttled": "no"}, "throttled"),
    ({"phases_ms": {"push": -3.0}}, "phases_ms/push"),
])
def test_schema_rejects_untrusted_values_and_names_where(changes, where):
    with pytest.raises(ResultsError, match=f"at {where}"):
        validate_record(_record(**changes))


def test_append_validates_before_writing(tmp_path):
    folder = RunFolder.create(tmp_path, {"options": {}}, run_id="run-1")
    folder.append(_record())
    with pytest.raises(ResultsError):
        folder.append(_record(status="maybe"))
    assert [r["status"] for r in folder.records()] == ["ok"]
    assert folder.records_file.read_text().count("\n") == 1


def test_reader_ignores_a_cut_short_last_line_and_resume_drops_it(tmp_path):
    folder = RunFolder.create(tmp_path, {}, run_id="run-2")
    folder.append(_record())
    whole = json.dumps(_record(config_key="second"))
    with open(folder.records_file, "a") as handle:
        handle.write(whole[: len(whole) // 2])  # what a crash mid-write could leave
    skipped = []
    assert len(folder.records(on_skip=lambda line, why: skipped.append(why))) == 1
    assert skipped and "partial" in skipped[0]

    assert folder.drop_partial_line() == len(whole) // 2
    assert folder.drop_partial_line() == 0
    folder.append(_record(config_key="third"))
    lines = folder.records_file.read_text().splitlines()
    assert [json.loads(line)["config_key"] for line in lines] == ["abc", "third"]  # every line whole
    assert folder.recorded_keys() == {("local", "mobilenet_v1_0.25_128", "a" * 64, "abc"),
                                     ("local", "mobilenet_v1_0.25_128", "a" * 64, "third")}
    assert record_key(folder.records()[1]) == ("local", "mobilenet_v1_0.25_128", "a" * 64, "third")


def test_resume_retries_failed_records(tmp_path):
    folder = RunFolder.create(tmp_path, {}, run_id="run-3")
    folder.append(_record(status="failed", error="device disconnected", latency_ms=None, config_key="k1"))
    folder.append(_record(config_key="k2"))
    assert folder.recorded_keys() == {("local", "mobilenet_v1_0.25_128", "a" * 64, "k2")}


def test_run_folders(tmp_path):
    folder = RunFolder.create(tmp_path, {"devices": []}, run_id="r")
    assert folder.meta()["run_id"] == "r" and folder.meta()["schema"] == "mbdeploy.run/1"
    with pytest.raises(ResultsError, match="--resume r"):
        RunFolder.create(tmp_path, {}, run_id="r")
    assert RunFolder.open(tmp_path, "r").path == folder.path
    assert RunFolder.open(tmp_path / "elsewhere", str(folder.path)).path == folder.path
    with pytest.raises(ResultsError, match="no run 'missing'"):
        RunFolder.open(tmp_path, "missing")
    with pytest.raises(InvalidInput, match="run id"):
        RunFolder.create(tmp_path, {}, run_id="../escape")
    assert read_records(tmp_path / "none.jsonl") == []
    folder.update_meta(resumed_at=["x"])
    assert folder.meta()["resumed_at"] == ["x"] and folder.meta()["devices"] == []


HOLDER = """
import sys, time
from pathlib import Path
from mbdeploy.devices.lock import DeviceLock
lock = DeviceLock("ssh://pi@10.0.0.5", directory=Path(sys.argv[1]))
lock.acquire()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(tmp_path, seconds: float) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), str(seconds)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_bench_on_a_locked_device_fails_with_no_wait(tmp_path):
    holder = _holder(tmp_path, 30)
    try:
        with pytest.raises(ResultsError, match=r"device ssh://pi@10.0.0.5 is busy: a bench \(pid \d+"):
            DeviceLock("ssh://pi@10.0.0.5", wait=False, directory=tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the killed holder's lock: no stale lock file blocks the next bench.
    with DeviceLock("ssh://pi@10.0.0.5", wait=False, directory=tmp_path):
        pass


def test_a_second_bench_waits_for_the_lock(tmp_path):
    holder = _holder(tmp_path, 0.8)
    messages = []
    started = time.monotonic()
    with DeviceLock("ssh://pi@10.0.0.5", wait=True, on_wait=messages.append, directory=tmp_path):
        waited = time.monotonic() - started
    holder.wait()
    assert messages and "waiting" in messages[0]
    assert waited > 0.3  # it really blocked until the holder exited
