"""bench --repeat K: interleaved sessions in fresh processes, the aggregate's between-session CI, compare on it."""

from __future__ import annotations

import json

import pytest

from support.cli import harness_env, mbdeploy
from support.tiny_model import tiny_tflite
from mbdeploy.records import stats
from mbdeploy.records.sessions import aggregate
from mbdeploy.records.store import read_records

QUICK = ["--min-secs", "0.1", "--max-secs", "0.3", "--warmup", "2"]


def test_between_session_ci_is_distribution_free_from_six_sessions_and_says_its_method():
    assert stats.between_session_ci([5.0]) is None
    low, high, method = stats.between_session_ci([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert (low, high) == (1.0, 6.0) and method == stats.BETWEEN_ORDER_STATISTIC  # n=6: ranks 1 and 6
    low, high, method = stats.between_session_ci([10.0, 11.0, 12.0])
    # mean 11, sd 1, t(2)=4.303: 11 +- 4.303/sqrt(3)
    assert (low, high) == pytest.approx((11 - 4.303 / 3 ** 0.5, 11 + 4.303 / 3 ** 0.5)) and method == stats.BETWEEN_T


def _session(index: int, samples: list[float], status: str = "ok") -> dict:
    return {"schema": "mbdeploy.record/1", "run_id": "r", "status": status, "error": None if status == "ok" else "x",
            "session": {"index": index, "of": 3}, "latency_ms": stats.summarize(samples) if status == "ok" else None,
            "samples_ms": samples if status == "ok" else [], "started_at": f"2026-01-01T00:00:0{index}Z",
            "throttled": False, "runner_extra": {"inputs": 1}}


def test_aggregate_pools_samples_and_keeps_each_sessions_median_and_ci():
    sessions = [_session(1, [1.0] * 10), _session(2, [2.0] * 10), _session(3, [3.0] * 10)]
    record = aggregate(sessions)
    assert record["status"] == "ok" and "session" not in record and record["samples_ms"] == []
    block = record["sessions"]
    assert block["count"] == 3 and block["medians_ms"] == [1.0, 2.0, 3.0]
    assert block["within_ci95_ms"] == [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]
    assert block["between_ci95_low_ms"] < 1.0 < 3.0 < block["between_ci95_high_ms"]
    assert record["latency_ms"]["count"] == 30
    failed = aggregate([_session(1, [1.0] * 10), _session(2, [], "failed"), _session(3, [], "failed")])
    assert failed["status"] == "failed" and "1 of 3 sessions succeeded" in failed["error"]


def test_repeat_3_on_local_gives_three_interleaved_sessions_and_an_aggregate_that_compare_uses(tmp_path):
    models = tmp_path / "models"
    tiny_tflite(models / "a.tflite", channels=8)
    tiny_tflite(models / "b.tflite", channels=16)
    env = harness_env(tmp_path)
    runs = []
    for _ in range(2):
        done = mbdeploy(["bench", "--device", "local", "--models", "models", "--repeat", "3", *QUICK, "--json"],
                        cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout))
    records = read_records(tmp_path / runs[0]["run_dir"] / "results.jsonl")
    sessions = [r for r in records if "session" in r]
    # Interleaved: a, b, a, b, a, b; then one aggregate per artifact.
    assert [(r["artifact"]["name"], r["session"]["index"]) for r in sessions] == [
        (name, index) for index in (1, 2, 3) for name in ("a", "b")]
    assert all(r["status"] == "ok" for r in records)
    aggregates = [r for r in records if "sessions" in r]
    assert [r["artifact"]["name"] for r in aggregates] == ["a", "b"] and records[-2:] == aggregates
    for record in aggregates:
        block = record["sessions"]
        mine = [r for r in sessions if r["artifact"]["name"] == record["artifact"]["name"]]
        assert block["medians_ms"] == [r["latency_ms"]["median"] for r in mine]
        assert block["between_method"] == stats.BETWEEN_T
        assert block["between_ci95_low_ms"] <= block["median_of_medians_ms"] <= block["between_ci95_high_ms"]
        # Each session was its own process: its own warm-up and interpreter start.
        assert all(r["init_ms"] is not None for r in mine)
    assert [row["sessions"] for row in runs[0]["summary"]] == [3, 3]
    # Two runs of the same artifacts: compare judges on the between-session CI and passes the gate.
    done = mbdeploy(["compare", runs[0]["run_dir"], runs[1]["run_dir"], "--json"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    pairs = json.loads(done.stdout)["pairs"]
    assert len(pairs) == 2 and {p["ci_used"] for p in pairs} == {"between-session"}
    # An interrupted or resumed run redoes an artifact's sessions: a session alone is not a finished artifact.
    done = mbdeploy(["bench", "--resume", runs[0]["run_id"], "--json"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["skipped"] == 2


def test_a_session_with_wrong_outputs_marks_the_aggregate():
    sessions = [_session(1, [1.0] * 10), _session(2, [1.1] * 10), _session(3, [1.2] * 10)]
    for record, passed in zip(sessions, (True, False, True)):
        record["numerics"] = {"probes": 8, "passed": passed, "reference": "r", "failures": [] if passed else ["x"]}
    assert aggregate(sessions)["numerics"]["passed"] is False
    assert "numerics" not in aggregate([_session(1, [1.0] * 10), _session(2, [1.0] * 10)])
