"""Latency statistics against known distributions and exact binomial coverage."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from mbdeploy.records import stats
from mbdeploy.runners.litert import DEVICE_SCRIPT


def _device_script():
    spec = importlib.util.spec_from_file_location("litert_runner_copy", DEVICE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("n, ranks", [(6, (1, 6)), (10, (2, 9)), (20, (6, 15)), (100, (40, 61))])
def test_median_ci_ranks_match_published_tables(n, ranks):
    # Distribution-free CI tables for the median (e.g. Conover, Practical Nonparametric Statistics).
    assert stats.median_ci_ranks(n) == ranks


@pytest.mark.parametrize("n", [1_000, 10_000, 100_001, 1_000_000])
def test_large_sample_ranks_follow_the_normal_approximation(n):
    low, high = stats.median_ci_ranks(n)
    assert high == n + 1 - low
    assert abs(low - (n / 2 - 1.959964 * math.sqrt(n) / 2)) <= 2


def test_no_interval_below_six_samples():
    assert stats.median_ci_ranks(5) is None
    assert stats.median_ci([1.0, 2.0, 3.0, 4.0, 5.0]) is None
    assert stats.summarize([3.0])["ci95_low"] is None


def _exact_coverage(n: int) -> float:
    low, _ = stats.median_ci_ranks(n)
    return 1.0 - 2.0 * sum(math.comb(n, k) for k in range(low)) / 2.0**n


@pytest.mark.parametrize("distribution, true_median", [
    ("exponential", math.log(2.0)),           # Exp(1): median ln 2
    ("lognormal", 1.0),                       # LogNormal(0, 1): median e^0
    ("uniform", 0.5),
])
def test_median_ci_covers_the_true_median_at_the_binomial_rate(distribution, true_median):
    rng = np.random.default_rng(7)
    n, trials = 41, 3000
    draws = {"exponential": lambda: rng.exponential(1.0, n), "lognormal": lambda: rng.lognormal(0.0, 1.0, n),
             "uniform": lambda: rng.uniform(0.0, 1.0, n)}[distribution]
    hits = 0
    for _ in range(trials):
        low, high = stats.median_ci(draws().tolist())
        hits += low <= true_median <= high
    expected = _exact_coverage(n)
    assert expected >= 0.95
    sigma = math.sqrt(expected * (1 - expected) / trials)
    assert abs(hits / trials - expected) < 4 * sigma, (hits / trials, expected)


def test_summary_matches_numpy_on_a_skewed_sample():
    rng = np.random.default_rng(3)
    samples = (5.0 + rng.gamma(2.0, 0.3, 999)).tolist()
    summary = stats.summarize(samples)
    array = np.asarray(samples)
    assert summary["count"] == 999
    assert summary["median"] == pytest.approx(np.median(array))
    assert summary["mean"] == pytest.approx(array.mean())
    assert summary["std"] == pytest.approx(array.std(ddof=1))
    for key, q in (("p5", 5), ("p90", 90), ("p95", 95), ("p99", 99)):
        assert summary[key] == pytest.approx(np.percentile(array, q))
    assert summary["min"] == array.min() and summary["max"] == array.max()
    assert summary["ci95_low"] <= summary["median"] <= summary["ci95_high"]
    assert set(summary) == set(stats.LATENCY_KEYS)


def test_summary_of_a_large_normal_sample_recovers_its_parameters():
    rng = np.random.default_rng(11)
    summary = stats.summarize(rng.normal(10.0, 2.0, 200_000).tolist())
    assert summary["median"] == pytest.approx(10.0, abs=0.03)
    assert summary["std"] == pytest.approx(2.0, rel=0.01)
    assert summary["p95"] == pytest.approx(10.0 + 1.6449 * 2.0, abs=0.05)
    assert summary["p5"] == pytest.approx(10.0 - 1.6449 * 2.0, abs=0.05)
    # The CI of the median narrows as 1/sqrt(n): half-width ~ 1.96 * sigma * sqrt(pi/2) / sqrt(n).
    half = (summary["ci95_high"] - summary["ci95_low"]) / 2
    assert half == pytest.approx(1.96 * 2.0 * math.sqrt(math.pi / 2) / math.sqrt(200_000), rel=0.2)


def test_stop_rules():
    tight = [10.0 + 0.01 * (i % 7) for i in range(200)]
    loose = [1.0 + 9.0 * (i % 2) for i in range(200)]  # half 1 ms, half 10 ms: the median is unpinned
    common = {"min_secs": 1.0, "max_secs": 5.0, "runs": None, "target_ci": 0.02}
    assert stats.stop_reason(tight, 0.5, **common) is None  # never before min_secs
    assert stats.stop_reason(tight, 1.5, **common) == "target_ci"
    assert stats.stop_reason(loose, 1.5, **common) is None
    assert stats.stop_reason(loose, 5.0, **common) == "max_secs"
    assert stats.stop_reason(tight[:9], 9.0, **{**common, "runs": 10}) is None
    assert stats.stop_reason(tight[:10], 0.0, **{**common, "runs": 10}) == "runs"


def test_device_side_copy_agrees_with_the_library():
    script = _device_script()
    rng = np.random.default_rng(5)
    for n in (5, 6, 7, 50, 333, 1000, 20_000):
        samples = rng.lognormal(1.0, 0.5, n).tolist()
        assert script.median_ci(samples) == stats.median_ci(samples)
        assert script.ci_half_width_fraction(samples) == pytest.approx(stats.ci_half_width_fraction(samples)) \
            if n >= 6 else script.ci_half_width_fraction(samples) is None
        for elapsed in (0.1, 1.5, 20.0):
            for target in (0.001, 0.05, 0.5):
                assert script.stop_reason(samples, elapsed, 1.0, 10.0, None, target) == stats.stop_reason(
                    samples, elapsed, min_secs=1.0, max_secs=10.0, runs=None, target_ci=target)


def test_wilson_interval_of_five_out_of_five_is_57_to_100_percent():
    from mbdeploy.records.stats import wilson_interval

    low, high = wilson_interval(5, 5)
    assert low == pytest.approx(0.5655, abs=1e-4) and high == 1.0
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    # Large n: close to the normal interval.
    low, high = wilson_interval(29950, 50000)
    assert (high - low) / 2 == pytest.approx(1.96 * (0.599 * 0.401 / 50000) ** 0.5, rel=0.01)


def test_paired_difference_interval_is_never_zero_width():
    from mbdeploy.records.stats import paired_difference_ci

    low, high = paired_difference_ci(0, 0, 5)
    assert low < 0 < high and high - low > 0.9
    low, high = paired_difference_ci(30, 5, 1000)  # 2.5 points lost, 35 disagreements
    assert 0 < low < 0.025 < high < 0.05
