"""Latency statistics: order statistics, the median's confidence interval, adaptive stopping.

Pure Python so the host needs nothing heavy to summarise a run. The 95%
interval of the median comes from order statistics: the number of samples
below the true median is Binomial(n, 1/2), so [x_(l), x_(n+1-l)] covers the
median with probability 1 - 2 P(B <= l - 1). No distributional assumption,
which matters for latency (skewed, with a long right tail).

`mbdeploy/device_side/litert_runner.py` carries its own small copy of
`median_ci` and `stop_reason` because it must run on a board with only the
standard library; tests/test_stats.py checks the two copies agree.
"""

from __future__ import annotations

import math
from typing import Sequence

CONFIDENCE = 0.95

LATENCY_KEYS = ("median", "mean", "p5", "p90", "p95", "p99", "std", "min", "max", "count", "ci95_low", "ci95_high")


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default, Hyndman-Fan type 7)."""
    if not sorted_values:
        raise ValueError("quantile of an empty sample")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    position = q * (len(sorted_values) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    fraction = position - lower
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * fraction


def _binomial_half_cdf_rank(n: int, tail: float) -> int:
    """The largest l >= 1 with P(B <= l - 1) <= tail for B ~ Binomial(n, 1/2); 0 if none."""
    log_half_n = n * math.log(0.5)
    log_n_factorial = math.lgamma(n + 1)
    # Mass below 12 standard deviations under the mean (< 1e-32) cannot move the sum: start there,
    # so a 100k-sample run costs ~2k terms instead of 50k.
    start = max(0, int(n / 2 - 6 * math.sqrt(n)))
    cumulative = 0.0
    rank = start
    for k in range(start, n // 2 + 1):
        cumulative += math.exp(log_n_factorial - math.lgamma(k + 1) - math.lgamma(n - k + 1) + log_half_n)
        if cumulative > tail:
            break
        rank = k + 1  # P(B <= k) <= tail, so x_(k+1) is a valid lower end
    return rank


def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """1-based ranks (l, u) of the distribution-free interval of the median, or None if n is too small."""
    rank = _binomial_half_cdf_rank(n, (1.0 - confidence) / 2.0)
    if rank < 1:
        return None
    return rank, n + 1 - rank


def median_ci(samples: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    ordered = sorted(samples)
    ranks = median_ci_ranks(len(ordered), confidence)
    if ranks is None:
        return None
    return ordered[ranks[0] - 1], ordered[ranks[1] - 1]


def summarize(samples: Sequence[float]) -> dict:
    """The record's `latency_ms` block from raw per-invoke timings (milliseconds)."""
    if not samples:
        raise ValueError("no samples to summarise")
    ordered = sorted(float(s) for s in samples)
    n = len(ordered)
    mean = math.fsum(ordered) / n
    # Sample standard deviation (n - 1); zero for a single sample.
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in ordered) / (n - 1)) if n > 1 else 0.0
    interval = median_ci(ordered)
    return {
        "median": quantile(ordered, 0.5),
        "mean": mean,
        "p5": quantile(ordered, 0.05),
        "p90": quantile(ordered, 0.90),
        "p95": quantile(ordered, 0.95),
        "p99": quantile(ordered, 0.99),
        "std": std,
        "min": ordered[0],
        "max": ordered[-1],
        "count": n,
        "ci95_low": interval[0] if interval else None,
        "ci95_high": interval[1] if interval else None,
    }


def ci_half_width_fraction(samples: Sequence[float]) -> float | None:
    """Half the width of the median's 95% interval, as a fraction of the median."""
    ordered = sorted(samples)
    interval = median_ci(ordered)
    if interval is None:
        return None
    median = quantile(ordered, 0.5)
    if median <= 0:
        return None
    return (interval[1] - interval[0]) / 2.0 / median


def stop_reason(
    samples: Sequence[float],
    elapsed_s: float,
    *,
    min_secs: float,
    max_secs: float,
    runs: int | None,
    target_ci: float,
) -> str | None:
    """Why to stop now ("runs", "max_secs", "target_ci"), or None to keep going.

    A fixed run count wins; otherwise keep going until the median's interval is
    narrow enough (but never before min_secs) or the time budget is spent.
    """
    if runs is not None:
        return "runs" if len(samples) >= runs else None
    if elapsed_s >= max_secs:
        return "max_secs"
    if elapsed_s >= min_secs:
        width = ci_half_width_fraction(samples)
        if width is not None and width <= target_ci:
            return "target_ci"
    return None


# Two-sided 95% quantiles of Student's t for 1..5 degrees of freedom (any statistics table; e.g.
# NIST/SEMATECH e-Handbook 1.3.6.7.2): the interval of session medians when K is too small for
# an order-statistic one (K < MIN_SAMPLES_FOR_CI).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}
BETWEEN_ORDER_STATISTIC = "order statistics of the session medians (distribution-free)"
BETWEEN_T = "Student t on the session medians (assumes they are normal; K too small for a distribution-free 95%)"


def between_session_ci(medians: Sequence[float]) -> tuple[float, float, str] | None:
    """The 95% interval of the median latency over sessions, from each session's median, and its method.

    With K >= 6 sessions the order-statistic interval of the median (no assumption); with
    2 <= K <= 5 none reaches 95% (K=5 gives 93.75%), so a t interval around the mean of the
    session medians, saying so. None for a single session: one session says nothing of drift.
    """
    values = sorted(float(m) for m in medians)
    k = len(values)
    if k < 2:
        return None
    interval = median_ci(values)
    if interval is not None:
        return interval[0], interval[1], BETWEEN_ORDER_STATISTIC
    mean = math.fsum(values) / k
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (k - 1))
    half = T_975[k - 1] * std / math.sqrt(k)
    return max(0.0, mean - half), mean + half, BETWEEN_T


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """The Wilson score 95% interval of a proportion (as fractions), or None for n = 0.

    Unlike the normal (Wald) interval it stays inside [0, 1] and is honest at 0 or n
    successes: 5 of 5 gives [0.566, 1.0], not [1.0, 1.0].
    """
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def paired_difference_ci(only_first: int, only_second: int, n: int) -> tuple[float, float] | None:
    """A 95% interval (fractions) of p1 - p2 for two classifiers scored on the same n items, where
    `only_first` items were right only for the first and `only_second` only for the second.

    p1 - p2 = P(only first) - P(only second); each of those gets a 97.5% Wilson interval and the
    difference of the intervals covers p1 - p2 with at least 95% (Bonferroni). Conservative, and
    unlike the paired Wald interval never zero-width when no item disagrees (0 of 5 is not 0 +- 0).
    """
    if n <= 0:
        return None
    z = 2.241403  # two-sided 97.5%
    first, second = wilson_interval(only_first, n, z), wilson_interval(only_second, n, z)
    return first[0] - second[1], first[1] - second[0]
