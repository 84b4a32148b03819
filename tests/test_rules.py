"""bench --rule mlperf: MLPerf Mobile's single-stream rule grades each record valid or invalid, with the reason."""

from __future__ import annotations

import json

from support.cli import harness_env, mbdeploy
from support.tiny_model import tiny_tflite
from mbdeploy.records import rules
from mbdeploy.records.store import read_records


def _binomial_cdf(n: int, t: int, q: float = 0.1) -> float:
    # Exact rational arithmetic: an independent check of the floating-point sum in rules.
    from fractions import Fraction
    from math import comb
    exact_q = Fraction(q).limit_denominator(10)
    return float(sum(comb(n, x) * exact_q ** x * (1 - exact_q) ** (n - x) for x in range(t + 1)))


def test_early_stopping_overlatency_is_the_largest_t_the_binomial_allows():
    # t = 1 first passes at 64 queries: P(Bin(64, 0.1) <= 1) <= 1% < P(Bin(63, 0.1) <= 1).
    assert rules.early_stopping_overlatency(63) == 0 and rules.early_stopping_overlatency(64) == 1
    assert _binomial_cdf(64, 1) <= 0.01 < _binomial_cdf(63, 1)
    for n in (100, 1024, 2000):
        t = rules.early_stopping_overlatency(n)
        assert _binomial_cdf(n, t) <= 0.01 < _binomial_cdf(n, t + 1)


def test_early_stopping_estimate_is_the_t_th_highest_latency():
    samples = [float(i) for i in range(1, 1025)]  # 1..1024 ms
    t = rules.early_stopping_overlatency(1024)
    assert rules.early_stopping_estimate(samples) == 1024 - t + 1.0
    assert rules.early_stopping_estimate(samples) > 0.9 * 1024  # above the plain 90th percentile
    assert rules.early_stopping_estimate(samples[:50]) is None


def test_a_long_enough_record_is_valid():
    samples = [60.0] * 1100  # 66 s of 60 ms queries
    record = {"status": "ok", "latency_ms": {"count": 1100, "mean": 60.0, "p90": 60.0}, "samples_ms": samples}
    graded = rules.grade(record, "mlperf")
    assert graded["verdict"] == "valid" and graded["reasons"] == [] and graded["early_stopping_p90_ms"] == 60.0


def test_a_short_run_on_local_is_graded_invalid_with_the_reason(tmp_path):
    tiny_tflite(tmp_path / "models" / "m.tflite", channels=8)
    done = mbdeploy(["bench", "--device", "local", "--models", "models", "--rule", "mlperf", "--runs", "30",
                     "--warmup", "1"], cwd=tmp_path, env=harness_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "invalid" in done.stdout and "fewer than 1024" in done.stdout.replace("\n", "")
    [run] = (tmp_path / "results").iterdir()
    [record] = read_records(run / "results.jsonl")
    grade = record["grade"]
    assert grade["verdict"] == "invalid" and grade["queries"] == 30
    assert grade["reasons"][0] == "30 queries, fewer than 1024"
    assert grade["reasons"][1].endswith("s of queries, less than 60 s")
    assert "too few queries (30) for an early-stopping estimate" in grade["reasons"][2]
    assert grade["reported_ms"] is not None and grade["early_stopping_p90_ms"] is None
    done = mbdeploy(["bench", "--device", "local", "--models", "models", "--rule", "nist"], cwd=tmp_path,
                    env=harness_env(tmp_path))
    assert done.returncode == 2 and "'nist' is not 'mlperf'" in done.stderr
