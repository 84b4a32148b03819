"""Validity rules a record is graded by (`bench --rule NAME`): `valid` or `invalid`, with the reasons.

`mlperf`: MLPerf Mobile's single-stream rule. The reported latency is the 90th
percentile; a run needs at least 1,024 queries and 60 seconds of them; and LoadGen's
early-stopping estimate of the 90th percentile is reported beside it: with n queries,
the largest t such that, if the true 90th percentile were below the t-th highest
latency, seeing t or fewer queries above it among n would have probability <= 1%
(binomial, 99% confidence, no tolerance); the estimate is that t-th highest latency.
A run too short for any t (t = 1 needs 64 queries) has no estimate and is invalid. Sources (read, not copied): mlcommons/inference loadgen/early_stopping.cc
and results.cc (PerformanceSummary::EarlyStopping, SingleStream case);
mlcommons/inference_policies inference_rules.adoc (single-stream: one query at a
time, 90th-percentile latency); mlcommons/mobile_app_open README (single stream is the
mobile default, reported as the 90th-percentile latency).
"""

from __future__ import annotations

import math
from typing import Sequence

from mbdeploy.errors import InvalidInput
from mbdeploy.records import stats

MLPERF = "mlperf"
RULES = (MLPERF,)
MLPERF_MIN_QUERIES = 1024
MLPERF_MIN_SECONDS = 60.0
MLPERF_PERCENTILE = 0.90
MLPERF_CONFIDENCE = 0.99


def check_rule(name: str | None) -> None:
    if name is not None and name not in RULES:
        raise InvalidInput(f"unknown rule {name!r}; allowed: {', '.join(RULES)}")


def early_stopping_overlatency(n: int, percentile: float = MLPERF_PERCENTILE,
                               confidence: float = MLPERF_CONFIDENCE) -> int:
    """The largest t >= 1 with P(Binomial(n, 1 - percentile) <= t) <= 1 - confidence; 0 if none.

    LoadGen searches, per t, the fewest passing queries h(t) and keeps the largest t with
    n >= h(t) + t; since the binomial odds fall as h grows, that is the same condition
    as this tail probability for n queries, which one pass over t computes.
    """
    if n <= 0:
        return 0
    q = 1.0 - percentile
    log_q, log_p = math.log(q), math.log(percentile)
    log_n_factorial = math.lgamma(n + 1)
    cumulative = 0.0
    best = 0
    for t in range(0, n + 1):
        cumulative += math.exp(log_n_factorial - math.lgamma(t + 1) - math.lgamma(n - t + 1)
                               + t * log_q + (n - t) * log_p)
        if cumulative > 1.0 - confidence:
            break
        best = t
    return best


def early_stopping_estimate(samples_ms: Sequence[float]) -> float | None:
    """LoadGen's single-stream early-stopping estimate of the 90th percentile, or None if too few queries."""
    t = early_stopping_overlatency(len(samples_ms))
    if t < 1:
        return None
    return sorted(samples_ms)[len(samples_ms) - t]


def grade(record: dict, rule: str) -> dict:
    """The record's `grade` block: rule, verdict, reasons, and the figures they rest on."""
    check_rule(rule)
    latency = record.get("latency_ms") or {}
    samples = record.get("samples_ms") or []
    count = latency.get("count") or 0
    # The queries' own time: the sum of the timed invokes (the loop's wall time is a little longer).
    seconds = (math.fsum(samples) if samples else (latency.get("mean") or 0.0) * count) / 1e3
    reasons = []
    if record.get("status") != "ok":
        reasons.append("the run failed")
    if count < MLPERF_MIN_QUERIES:
        reasons.append(f"{count} queries, fewer than {MLPERF_MIN_QUERIES}")
    if seconds < MLPERF_MIN_SECONDS:
        reasons.append(f"{seconds:.1f} s of queries, less than {MLPERF_MIN_SECONDS:g} s")
    estimate = early_stopping_estimate(samples) if samples else None
    if samples and estimate is None:
        reasons.append(f"too few queries ({len(samples)}) for an early-stopping estimate of the 90th percentile")
    if not samples and record.get("status") == "ok":
        reasons.append("the runner gave no per-query timings, so no early-stopping estimate")
    p90 = stats.quantile(sorted(samples), MLPERF_PERCENTILE) if samples else latency.get("p90")
    return {"rule": "mlperf-mobile-single-stream", "verdict": "invalid" if reasons else "valid",
            "reasons": reasons, "reported_ms": p90, "early_stopping_p90_ms": estimate,
            "queries": count, "query_seconds": seconds}


def grade_sessions(grades: list[dict]) -> dict:
    """An aggregate's grade: valid only when every session is, with each invalid session's reasons."""
    reasons = [f"session {index}: {reason}" for index, g in enumerate(grades, 1) for reason in g["reasons"]]
    return {"rule": grades[0]["rule"], "verdict": "invalid" if reasons else "valid", "reasons": reasons,
            "reported_ms": None, "early_stopping_p90_ms": None,
            "queries": sum(g["queries"] for g in grades), "query_seconds": sum(g["query_seconds"] for g in grades)}
