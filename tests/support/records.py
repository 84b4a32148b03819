"""Result runs and manifests as the harness and the converter write them, for report/select/compare tests.

Only the on-disk contracts are faked here (record schema, manifest layout);
every record is checked against the real schema before it is written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mbdeploy.accounting import model_cost
from mbdeploy.architecture import ModelSpec, grid_specs
from mbdeploy.manifest import PREPROCESSING, SCHEMA, save_manifest
from mbdeploy.records.store import RunFolder
from support.paths import ROOT

SCHEMA_FILE = ROOT / "mbdeploy" / "schemas" / "record.schema.json"


def fake_sha(*parts: object) -> str:
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()


def make_record(run_id: str, spec: ModelSpec, *, median: float, device: str = "host", kind: str = "local",
                fmt: str = "tflite", precision: str = "fp32", config_key: str = "cfg1", ci: float = 0.02,
                size: int | None = None, energy_mj: float | None = None, status: str = "ok",
                throttled: bool = False, manifest: str | None = None, weights_source: str = "random",
                threads: int = 1, started_at: str = "2026-01-01T00:00:00Z", between: float | None = None) -> dict:
    cost = model_cost(spec)
    latency = None if status != "ok" else {
        "median": median, "mean": median * 1.01, "p5": median * 0.97, "p90": median * 1.1, "p95": median * 1.12,
        "p99": median * 1.2, "std": median * 0.03, "min": median * 0.95, "max": median * 1.3, "count": 200,
        "ci95_low": median * (1 - ci), "ci95_high": median * (1 + ci),
    }
    power = ({"status": "ok", "source": "fixture-meter", "avg_power_mw": energy_mj / median * 1000, "energy_mj": energy_mj}
             if energy_mj is not None else {"status": "unavailable", "reason": "no power sensor on this host"})
    record = {
        "schema": "mbdeploy.record/1", "run_id": run_id, "status": status,
        "error": None if status == "ok" else "model failed to load",
        "started_at": started_at, "finished_at": started_at,
        "device": {"kind": kind, "id": device, "model": "fixture", "os": "Linux 6.1", "cores": 2},
        "artifact": {"name": spec.name, "format": fmt, "precision": precision,
                     "sha256": fake_sha(spec.name, fmt, precision), "macs": cost.macs, "params": cost.params,
                     "bytes": size if size is not None else cost.params * (1 if precision == "int8" else 4),
                     "alpha": spec.alpha, "resolution": spec.resolution, "manifest": manifest,
                     "weights_source": weights_source},
        "runner": {"name": "litert", "threads": threads, "delegate": "xnnpack"},
        "config_key": config_key, "latency_ms": latency,
        "init_ms": 5.0, "first_inference_ms": median * 2 if latency else None, "peak_memory_mb": 30.0,
        "power": power, "thermal": {}, "throttled": throttled,
    }
    if between is not None and latency:  # an aggregate of bench --repeat 5: the between-session CI +-between
        record["sessions"] = {
            "count": 5, "ok": 5, "medians_ms": [median * f for f in (0.99, 1.0, 1.0, 1.01, 1.0)],
            "within_ci95_ms": [[latency["ci95_low"], latency["ci95_high"]]] * 5, "median_of_medians_ms": median,
            "between_ci95_low_ms": median * (1 - between), "between_ci95_high_ms": median * (1 + between),
            "between_method": "fixture"}
    validate(record)
    return record


def validate(record: dict) -> None:
    import jsonschema

    jsonschema.validate(record, json.loads(SCHEMA_FILE.read_text()))


def write_run(results_root: Path, run_id: str, records: list[dict], meta: dict | None = None) -> Path:
    """A run folder written through the harness's own RunFolder (which validates each record)."""
    folder = RunFolder.create(results_root, meta or {"host": {"hostname": "fixture-host"},
                                                     "tools": {"ai-edge-litert": "2.3.0"}}, run_id)
    for record in records:
        folder.append(record)
    return folder.path


def power_law_latency(spec: ModelSpec, scale: float = 2e-6, exponent: float = 0.9) -> float:
    return scale * model_cost(spec).macs ** exponent


def grid_run(results_root: Path, run_id: str = "run-a", **kwargs) -> tuple[Path, list[dict]]:
    """The 16-model grid with latency an exact power law of MACs."""
    records = [make_record(run_id, spec, median=power_law_latency(spec), **kwargs) for spec in grid_specs()]
    return write_run(results_root, run_id, records), records


def write_manifest(models_root: Path, spec: ModelSpec, artifacts: list[dict], *, source: str = "random",
                   trained: bool = False, accuracy: dict | None = None) -> Path:
    """A manifest in models_root/<name>/ with artifact files of the given sizes (real files, fake contents)."""
    folder = Path(models_root) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    cost = model_cost(spec)
    entries = []
    for artifact in artifacts:
        path = f"{spec.name}_{artifact['precision']}.{artifact['format']}"
        (folder / path).write_bytes(b"\0" * artifact.get("bytes", 16))
        entries.append({"format": artifact["format"], "precision": artifact["precision"], "path": path,
                        "bytes": artifact.get("bytes", 16),
                        "sha256": artifact.get("sha256", fake_sha(spec.name, artifact["format"], artifact["precision"])),
                        "macs": cost.macs, "params": cost.params, "build_key": "fixture", "verification": {}})
    manifest = {"schema": SCHEMA, "name": spec.name,
                "spec": {"alpha": spec.alpha, "resolution": spec.resolution, "classes": spec.classes},
                "macs": cost.macs, "params": cost.params,
                "weights": {"source": source, "sha256": None, "trained": trained},
                "preprocessing": dict(PREPROCESSING), "tools": {}, "artifacts": entries}
    if accuracy:
        manifest["accuracy"] = accuracy
    return save_manifest(folder, manifest)
