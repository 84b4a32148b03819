"""Per-layer records read back: tidy rows, and each profile as `mbdeploy profile --json` prints it.

A layer record (layers.jsonl, `mbdeploy.layer_record/1`) names its whole-model
record by (device id, artifact name, sha256, config key); the two are read
together here. A layer's time is its median, or for an op profile (which
reports averages only) its mean; `time_basis` says which.

Shares: a layer's share of time is its time over the sum of the layers' times
(what the layers add up to, not the whole model's time, which is shown
beside it); its share of MACs is its MACs over the model's.
"""

from __future__ import annotations

from typing import Iterable

from mbdeploy.layer_accounting import TYPE_ORDER


def whole_key(record: dict) -> tuple[str, str, str, str]:
    """The key a layer record's `whole` block and its whole-model record share."""
    if "whole" in record:
        whole = record["whole"]
        return whole["device_id"], whole["name"], whole["sha256"], whole["config_key"]
    return record["device"]["id"], record["artifact"]["name"], record["artifact"]["sha256"], record["config_key"]


def layer_time(record: dict, statistic: str = "median") -> tuple[float | None, str | None]:
    """(time ms, which statistic): the median, else the mean (an op profile); or the statistic asked for."""
    latency = record.get("latency_ms") or {}
    if record.get("status") != "ok":
        return None, None
    if statistic != "median":
        value = latency.get(statistic)
        return (float(value), statistic) if value is not None else (None, None)
    if latency.get("median") is not None:
        return float(latency["median"]), "median"
    if latency.get("mean") is not None:
        return float(latency["mean"]), "mean"
    return None, None


def latest_layers(layer_records: Iterable[dict]) -> dict[tuple, list[dict]]:
    """The latest ok record per layer, grouped by whole-model key, in layer order."""
    latest: dict[tuple, dict[str, dict]] = {}
    for record in sorted(layer_records, key=lambda r: r.get("started_at") or ""):
        if record.get("status") == "ok":
            latest.setdefault(whole_key(record), {})[record["layer"]["name"]] = record
    return {key: sorted(by_name.values(), key=lambda r: r["layer"]["index"]) for key, by_name in latest.items()}


def _gmacs(macs: int, ms: float | None) -> float | None:
    return macs / ms / 1e6 if macs and ms else None


def profile_summary(whole: dict | None, layers: list[dict]) -> dict:
    """One artifact on one device: whole time, the sum of its layers, every layer and every type."""
    first = layers[0]
    times = [layer_time(r)[0] for r in layers]
    known = [t for t in times if t is not None]
    total_time = sum(known) if known else None
    total_macs = sum(r["layer"]["macs"] for r in layers) or None
    rows = []
    for record, ms in zip(layers, times):
        latency = record.get("latency_ms") or {}
        layer = record["layer"]
        rows.append({
            "name": layer["name"], "type": layer["type"], "kind": layer["kind"], "macs": layer["macs"],
            "params": layer["params"], "bytes_moved": layer["bytes_moved"], "median_ms": latency.get("median"),
            "mean_ms": latency.get("mean"), "ci95_low_ms": latency.get("ci95_low"),
            "ci95_high_ms": latency.get("ci95_high"), "count": latency.get("count"),
            "time_basis": layer_time(record)[1], "gmacs_per_s": _gmacs(layer["macs"], ms),
            "share_of_time": ms / total_time if ms is not None and total_time else None,
            "share_of_macs": layer["macs"] / total_macs if total_macs else None,
            "method": record["method"], "delegated": record.get("delegated"),
        })
    by_type = []
    for label in TYPE_ORDER:
        members = [(row, ms) for row, ms in zip(rows, times) if row["type"] == label]
        if not members:
            continue
        time_sum = sum(ms for _, ms in members if ms is not None)
        complete = all(ms is not None for _, ms in members)
        macs = sum(row["macs"] for row, _ in members)
        by_type.append({
            "type": label, "layers": len(members), "macs": macs,
            "time_ms": time_sum if complete else None,
            "share_of_time": time_sum / total_time if complete and total_time else None,
            "share_of_macs": macs / total_macs if total_macs else None,
            "gmacs_per_s": _gmacs(macs, time_sum) if complete else None,
        })
    latency = (whole or {}).get("latency_ms") or {}
    artifact = first["artifact"]
    return {
        "device": first["device"]["id"], "device_kind": first["device"]["kind"], "model": artifact["name"],
        "format": artifact["format"], "precision": artifact["precision"], "sha256": artifact["sha256"],
        "runner": first["runner"]["name"], "config_key": first["config_key"], "run_id": first["run_id"],
        "whole_ms": {"median": latency.get("median"), "ci95_low": latency.get("ci95_low"),
                     "ci95_high": latency.get("ci95_high")},
        "sum_of_layers_ms": total_time if len(known) == len(times) else None,
        "method": ",".join(sorted({r["method"] for r in layers})),
        "layers": rows, "by_type": by_type,
    }


def profile_summaries(whole_records: Iterable[dict], layer_records: Iterable[dict]) -> list[dict]:
    """Every profiled artifact and device of some runs, whole-model record beside its layers."""
    wholes = {}
    for record in sorted(whole_records, key=lambda r: r.get("started_at") or ""):
        if record.get("status") == "ok":
            wholes[whole_key(record)] = record
    return [profile_summary(wholes.get(key), layers) for key, layers in sorted(latest_layers(layer_records).items())]


def layer_rows(runs: Iterable, whole_rows: list[dict]) -> list[dict]:  # runs: list[Run]
    """Tidy per-layer rows in results.csv's columns (reader.COLUMNS' layer_* ones set): the whole model's row,
    overwritten with the layer's figures, so a row with `layer` set is one layer of that profile."""
    by_key = {}
    for row in whole_rows:
        by_key[(row["device_id"], row["model"], row["sha256"], row["config_key"], row["run_id"])] = row
    rows = []
    for run in runs:
        wholes = [r for r in run.records]
        for summary in profile_summaries(wholes, run.layer_records):
            base = by_key.get((summary["device"], summary["model"], summary["sha256"], summary["config_key"],
                               run.run_id), {})
            for index, layer in enumerate(summary["layers"]):
                ms = layer["median_ms"] if layer["median_ms"] is not None else layer["mean_ms"]
                rows.append({
                    **base, "run_id": run.run_id, "status": "ok", "device_id": summary["device"],
                    "model": summary["model"], "format": summary["format"], "precision": summary["precision"],
                    "config_key": summary["config_key"], "runner": summary["runner"],
                    "latency_ms_median": layer["median_ms"], "latency_ms_mean": layer["mean_ms"],
                    "latency_ms_ci95_low": layer["ci95_low_ms"], "latency_ms_ci95_high": layer["ci95_high_ms"],
                    "latency_count": layer["count"], "macs_m": layer["macs"] / 1e6, "params_m": layer["params"] / 1e6,
                    "gmacs_per_s": layer["gmacs_per_s"], "layer_index": index, "layer": layer["name"],
                    "layer_type": layer["type"], "layer_kind": layer["kind"], "layer_method": layer["method"],
                    "layer_time_basis": layer["time_basis"], "layer_ms": ms, "bytes_moved": layer["bytes_moved"],
                    "share_of_time": layer["share_of_time"], "share_of_macs": layer["share_of_macs"],
                    "whole_ms_median": summary["whole_ms"]["median"],
                    **{key: None for key in ("latency_ms_p90", "latency_ms_p95", "latency_ms_p99", "latency_ms_std",
                                             "latency_ms_min", "latency_ms_max", "init_ms", "first_inference_ms",
                                             "peak_memory_mb", "energy_mj", "avg_power_mw", "size_bytes",
                                             "peak_gmacs_per_s", "fraction_of_peak", "stop_reason")},
                })
    return rows
