"""Repeated sessions (`bench --repeat K`): K session records of one artifact -> one aggregate record.

A confidence interval from one session's thousands of samples says how well that
session's median is known, not how much the next session will differ: a fresh
process lands on other cores, caches and clock states. The aggregate keeps every
session's median and within-session interval and adds the interval over the
session medians (`records.stats.between_session_ci`), which is what a comparison
of two runs should rest on.
"""

from __future__ import annotations

import copy

from mbdeploy.records import stats
from mbdeploy.records.store import utc_now


def is_session(record: dict) -> bool:
    """A single session of a repeated bench (its aggregate record stands for it in tables and figures)."""
    return isinstance(record.get("session"), dict)


def aggregate(sessions: list[dict]) -> dict:
    """The aggregate record of one artifact's session records (same device, artifact, runner config)."""
    if not sessions:
        raise ValueError("no sessions to aggregate")
    ok = [r for r in sessions if r["status"] == "ok" and (r.get("latency_ms") or {}).get("median") is not None]
    first = sessions[0]
    record = copy.deepcopy({key: value for key, value in first.items()
                            if key not in ("session", "samples_ms", "phases_ms", "runner_extra", "numerics")})
    record.pop("grade", None)
    medians = [r["latency_ms"]["median"] for r in ok]
    within = [[r["latency_ms"].get("ci95_low"), r["latency_ms"].get("ci95_high")] for r in ok]
    between = stats.between_session_ci(medians)
    pooled = [s for r in ok for s in r.get("samples_ms") or []]
    record.update({
        "started_at": min(r["started_at"] for r in sessions), "finished_at": utc_now(),
        "throttled": any(r.get("throttled") for r in sessions),
        "sessions": {
            "count": len(sessions), "ok": len(ok), "medians_ms": medians, "within_ci95_ms": within,
            "median_of_medians_ms": stats.quantile(sorted(medians), 0.5) if medians else None,
            "between_ci95_low_ms": between[0] if between else None,
            "between_ci95_high_ms": between[1] if between else None,
            "between_method": between[2] if between else "none: fewer than 2 sessions succeeded",
        },
    })
    checks = [r["numerics"] for r in sessions if isinstance(r.get("numerics"), dict)]
    if checks:  # bench --check-outputs: a session that computed wrong outputs marks the aggregate
        record["numerics"] = next((c for c in checks if c.get("passed") is False), checks[0])
    if len(ok) < 2:
        errors = sorted({r.get("error") or "" for r in sessions if r["status"] != "ok"})
        record.update({"status": "failed", "latency_ms": None, "samples_ms": [],
                       "error": f"{len(ok)} of {len(sessions)} sessions succeeded; an aggregate needs 2"
                                + (f" ({'; '.join(e for e in errors if e)})" if any(errors) else "")})
        return record
    # Percentiles over every session's samples pooled (when the runner gave samples), else the sessions' own.
    if pooled:
        latency = stats.summarize(pooled)
    else:  # a runner that prints only a summary: the median of the medians, nothing it cannot support
        latency = {key: None for key in stats.LATENCY_KEYS}
        latency.update(median=record["sessions"]["median_of_medians_ms"],
                       mean=sum(r["latency_ms"]["mean"] for r in ok) / len(ok),
                       count=sum(r["latency_ms"]["count"] for r in ok))
    record.update({"status": "ok", "error": None, "latency_ms": latency, "samples_ms": [],
                   "stop_reason": "sessions"})
    return record
