"""The summary table `bench` prints: one row per record."""

from __future__ import annotations

from typing import Iterable

from mbdeploy.records.sessions import is_session


def summary_rows(records: Iterable[dict]) -> list[dict]:
    """One row per record: model, precision, device, median and its CI, MACs, GMAC/s.

    With --repeat, one row per artifact: its aggregate, with the between-session CI (the sessions are in the run).
    """
    rows = []
    for record in records:
        if is_session(record):
            continue
        sessions = record.get("sessions") or {}
        latency = record.get("latency_ms") or {}
        artifact = record["artifact"]
        median = latency.get("median")
        macs = artifact.get("macs")
        rows.append({
            "device": record["device"]["id"], "model": artifact["name"], "precision": artifact["precision"],
            "config": record["runner"].get("compute_units") or record["runner"].get("delegate"),
            "status": record["status"], "median_ms": median,
            "ci95_ms": [latency.get("ci95_low"), latency.get("ci95_high")] if latency else None,
            "count": latency.get("count"), "stop_reason": record.get("stop_reason"), "macs": macs,
            "gmacs_per_s": (macs / (median / 1e3) / 1e9) if macs and median else None,
            "throttled": record.get("throttled"), "error": record.get("error"),
            "sessions": sessions.get("count"),
            "grade": record.get("grade"),
            "numerics": record.get("numerics"),
            "between_ci95_ms": ([sessions.get("between_ci95_low_ms"), sessions.get("between_ci95_high_ms")]
                                if sessions else None),
        })
    return rows
