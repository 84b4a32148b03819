"""Result runs and manifests flattened into tidy rows: one row per record.

Every figure, table, fit, `select` and `results.csv` read these rows, so a
number appears once, computed once, with its unit in its column name.

A record's accuracy comes from the manifest it points to: top-1 measured by
`mbdeploy eval` when there is one (source "measured"), else the release's
published top-1 when the weights are Google's trained ones (source
"published"; float artifacts only, as the release measured them), else none.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from contextlib import contextmanager
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from mbdeploy.errors import ManifestError, ResultsError
from mbdeploy.manifest import MANIFEST_NAME, artifact_key, find_manifests, load_manifest
from mbdeploy.records import stats
from mbdeploy.records.schema import validate_layer_record, validate_record
from mbdeploy.records.sessions import is_session
from mbdeploy.records.store import RECORDS_FILE, RUN_FILE, RunFolder, read_numbered_records

if TYPE_CHECKING:
    from mbdeploy.records.index import RunIndex

OFFICIAL_SOURCES = frozenset({"slim-checkpoint", "tflite", "keras"})
FLOAT_PRECISIONS = frozenset({"fp32", "fp16"})

COLUMNS = (
    "run_id", "status", "error", "started_at",
    "device_id", "device_kind", "device_model", "device_soc", "device_os", "device_cores",
    "model", "alpha", "resolution", "format", "precision",
    "runner", "threads", "delegate", "config_key",
    "latency_ms_median", "latency_ms_mean", "latency_ms_p90", "latency_ms_p95", "latency_ms_p99",
    "latency_ms_std", "latency_ms_min", "latency_ms_max", "latency_ms_ci95_low", "latency_ms_ci95_high",
    "latency_count", "sessions", "between_ci95_low_ms", "between_ci95_high_ms",
    "stop_reason", "numerics_passed", "numerics_failures", "init_ms", "first_inference_ms", "peak_memory_mb",
    "macs_m", "params_m", "size_bytes", "gmacs_per_s", "peak_gmacs_per_s", "fraction_of_peak", "peak_basis",
    "power_status", "avg_power_mw", "energy_mj", "throttled", "throttle_reasons",
    "weights_source", "top1_percent", "top5_percent", "accuracy_source", "top1_ci95_low", "top1_ci95_high",
    "accuracy_images", "accuracy_warning", "device_top1_percent", "device_top1_ci95_low", "device_top1_ci95_high",
    "device_top1_images", "sha256",
    # Per-layer rows of `mbdeploy profile` (records/layers.py); empty on whole-model rows.
    "layer_index", "layer", "layer_type", "layer_method", "layer_time_basis", "bytes_moved", "share_of_time",
    "share_of_macs", "whole_ms_median",
)


@dataclass
class Run:
    run_id: str
    path: Path
    meta: dict
    records: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line per line or file left out, with the reason
    layer_records: list[dict] = field(default_factory=list)  # `mbdeploy profile`'s layers.jsonl
    # Size, mtime and inode of the run's files when they were read (records/index.py's signature).
    signature: str = ""


# --- reading result runs ------------------------------------------------------


def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Run folders at or directly below the given paths (a results root or runs)."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_file() and path.name in (RECORDS_FILE, RUN_FILE):
            path = path.parent
        if not path.exists():
            raise ResultsError(f"no result run or results folder at {path}")
        if not path.is_dir():
            raise ResultsError(f"{path} is a file: name a run folder, a results folder or a run's {RECORDS_FILE}")
        if _is_run(path):
            found.append(path)
        else:
            found.extend(sorted(child for child in path.iterdir() if child.is_dir() and _is_run(child)))
    return list(dict.fromkeys(found))


def _is_run(path: Path) -> bool:
    return (path / RECORDS_FILE).is_file()


def load_run(path: Path, index: "RunIndex | None" = None) -> Run:
    """One run folder: run.json (metadata) and every whole record of results.jsonl, each checked by the schema.

    A line that does not parse or a record the schema rejects is skipped with a
    warning naming the file and line (and listed in `Run.skipped`); every other
    record is read, so one damaged line never hides a results folder. With an
    index (records/index.py), a run whose files are unchanged since it was
    stored there is taken from it, neither parsed nor validated again.
    """
    folder = RunFolder(Path(path))
    from mbdeploy.records.index import signature

    sig = signature(folder.path)  # taken before reading: a write after it makes the next read re-read
    stored = index.get(folder.path, sig) if index is not None else None
    if stored is None:
        stored = _read_run(folder)
        if index is not None:
            index.put(folder.path, sig, **stored)
    for problem in stored["skipped"]:
        warnings.warn(problem, stacklevel=2)
    return Run(stored["run_id"], folder.path, stored["meta"], stored["records"], stored["skipped"], stored["layers"],
               sig)


def _read_run(folder: RunFolder) -> dict:
    skipped: list[str] = []
    meta: dict = {}
    if folder.run_file.is_file():
        try:
            meta = folder.meta()
        except ResultsError as exc:
            skipped.append(f"{exc.message}; its metadata is left out")

    def unparsable(number: int, reason: str) -> None:
        if not reason.startswith("partial last line"):  # a write in progress, by contract not a record yet
            skipped.append(f"{folder.records_file}:{number}: {reason}")

    records = []
    for number, record in read_numbered_records(folder.records_file, unparsable):
        try:
            validate_record(record)
        except ResultsError as exc:
            skipped.append(f"{folder.records_file}:{number}: {exc.message}; record skipped")
            continue
        records.append(record)
    layers = []
    def unparsable_layer(number: int, reason: str) -> None:
        if not reason.startswith("partial last line"):
            skipped.append(f"{folder.layers_file}:{number}: {reason}")

    for number, record in read_numbered_records(folder.layers_file, unparsable_layer):
        try:
            validate_layer_record(record)
        except ResultsError as exc:
            skipped.append(f"{folder.layers_file}:{number}: {exc.message}; record skipped")
            continue
        layers.append(record)
    run_id = str(meta.get("run_id") or (records[0]["run_id"] if records else folder.path.name))
    return {"run_id": run_id, "meta": meta, "skipped": skipped, "records": records, "layers": layers}


@contextmanager
def _run_indexes() -> Iterator[Callable[[Path], RunIndex]]:
    """`index_of(run folder)`: the run index of the folder's results root, opened once, closed (committed) at the end."""
    from mbdeploy.records.index import RunIndex

    indexes: dict[Path, RunIndex] = {}

    def index_of(path: Path) -> RunIndex:
        root = Path(path).resolve().parent
        if root not in indexes:
            indexes[root] = RunIndex(root)
        return indexes[root]

    try:
        yield index_of
    finally:
        for index in indexes.values():
            index.close()


def runs_to_read(paths: Iterable[Path]) -> list[Path]:
    """The runs at or below the paths that the run index cannot serve (new or changed since indexed)."""
    from mbdeploy.records.index import signature

    with _run_indexes() as index_of:
        return [Path(path) for path in find_runs(list(paths)) if not index_of(path).current(path, signature(path))]


def load_runs(paths: Iterable[Path]) -> list[Run]:
    """Every run at or below the paths, through the run index of each results root (records/index.py)."""
    paths = list(paths)
    with _run_indexes() as index_of:
        runs = [load_run(path, index_of(path)) for path in find_runs(paths)]
    if not runs:
        raise ResultsError(
            "no result runs found in " + ", ".join(str(p) for p in paths) + " (each run is a folder with results.jsonl)"
        )
    return runs


# --- manifests ------------------------------------------------------------------


@dataclass
class ManifestEntry:
    file: Path
    manifest: dict
    artifact: dict


class ManifestIndex:
    """Manifests found under model folders or named by records, by artifact sha256."""

    def __init__(self, model_dirs: Iterable[Path] = ()) -> None:
        self._by_file: dict[Path, dict] = {}
        self._by_sha: dict[str, ManifestEntry] = {}
        for file in find_manifests([Path(d) for d in model_dirs if Path(d).exists()]):
            self._add(file)

    def _add(self, file: Path) -> dict | None:
        file = file.resolve()
        if file in self._by_file:
            return self._by_file[file]
        try:
            manifest = load_manifest(file)
        except ManifestError:
            return None
        self._by_file[file] = manifest
        for artifact in manifest.get("artifacts", []):
            if artifact.get("sha256"):
                self._by_sha.setdefault(artifact["sha256"], ManifestEntry(file, manifest, artifact))
        return manifest

    def entries(self) -> list[ManifestEntry]:
        return list(self._by_sha.values())

    def digest(self) -> str:
        """A digest of every manifest read so far (path and contents): what rows took from manifests."""
        import hashlib
        import json

        text = json.dumps(sorted((str(path), manifest) for path, manifest in self._by_file.items()),
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def for_record(self, record: dict, run_path: Path | None = None) -> ManifestEntry | None:
        artifact = record.get("artifact", {})
        named = artifact.get("manifest")
        if named:
            for base in _bases(run_path):
                candidate = Path(named) if Path(named).is_absolute() else base / named
                if candidate.is_dir():
                    candidate = candidate / MANIFEST_NAME
                # A record comes from a device: it may name a manifest, never any other host file.
                if candidate.name == MANIFEST_NAME and candidate.is_file() and self._add(candidate) is not None:
                    break
        entry = self._by_sha.get(artifact.get("sha256", ""))
        if entry is not None:
            return entry
        return None


def _bases(run_path: Path | None) -> list[Path]:
    # A relative manifest path is relative to where bench ran: the project
    # root (results/<run>/ two levels up), the current folder, or the run.
    bases = [Path.cwd()]
    if run_path is not None:
        bases += [Path(run_path).parent.parent, Path(run_path)]
    return bases


# Accuracy sources that carry no figure, and why (shown where the figure would be).
UNTRAINED = "none: weights untrained (top-1 meaningless)"
FAILED_VERIFICATION = "none: failed verification"


# The release's top-1 was measured on ImageNet's 50,000 validation images.
PUBLISHED_IMAGES = 50_000
# Below this many images a measured top-1 is shown with a warning: its interval is wider than +-5 points.
FEW_IMAGES = 300


def _interval(top1: float, images: int, stored: object = None) -> tuple[float, float] | None:
    """A top-1's 95% interval in percent: as stored by eval, else Wilson's from the count."""
    if isinstance(stored, (list, tuple)) and len(stored) == 2 and None not in stored:
        return float(stored[0]), float(stored[1])
    interval = stats.wilson_interval(round(top1 * images / 100.0), images) if images else None
    return (100.0 * interval[0], 100.0 * interval[1]) if interval else None


def _mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _figure(value: object) -> float | int | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def measured_accuracy(manifest: dict | None, key: str) -> dict:
    """The manifest's accuracy entry under `key` ({} if none), its figures checked.

    A manifest is a file users edit and tools damage: a figure of the wrong type (text, a bool,
    NaN, an interval that is not two numbers) counts as absent rather than breaking every reader.
    """
    entry = _mapping(_mapping((manifest or {}).get("accuracy")).get(key))
    if not entry:
        return {}
    checked = dict(entry)
    for name in ("top1_percent", "top5_percent", "top1_drop_vs_fp32_points", "images"):
        checked[name] = _figure(entry.get(name))
    for name in ("top1_ci95_percent", "top1_drop_ci95_points"):
        pair = entry.get(name)
        ok = isinstance(pair, list) and len(pair) == 2 and all(_figure(v) is not None for v in pair)
        checked[name] = list(pair) if ok else None
    return checked


def accuracy_evidence(manifest: dict | None, artifact: dict, name: str, weights_source: str | None) -> dict:
    """An artifact's top-1 with its evidence: `top1`, `top5`, `source`, `images`, `ci95` (percent) and a
    `warning`. Of a measured figure, the release's figure and an estimate (for a quantized artifact of
    Google's weights: the release's fp32 top-1 minus the drop eval measured), the one with the tighter
    95% interval is used; a top-1 from fewer than FEW_IMAGES images carries a warning.

    A top-1 measured on seeded random weights (chance level) or on an artifact that
    failed verification is kept in the manifest but used nowhere.
    """
    none = {"top1": None, "top5": None, "source": None, "images": None, "ci95": None, "warning": None}
    if manifest is not None:
        weights = _mapping(manifest.get("weights"))
        if weights.get("trained") is False:
            return none | {"source": UNTRAINED}
        if _mapping(artifact.get("verification")).get("passed") is False:
            return none | {"source": FAILED_VERIFICATION}
        measured = measured_accuracy(manifest, artifact_key(artifact))
        official = weights.get("trained") is True and weights.get("source") in OFFICIAL_SOURCES
    else:
        measured, official = {}, weights_source in OFFICIAL_SOURCES
    options = []
    if measured.get("top1_percent") is not None:
        images = int(measured.get("images") or 0)
        options.append({"top1": measured["top1_percent"], "top5": measured.get("top5_percent"), "source": "measured",
                        "images": images or None,
                        "ci95": _interval(measured["top1_percent"], images, measured.get("top1_ci95_percent"))})
    from mbdeploy.published import PUBLISHED

    row = PUBLISHED.get(name) if official else None
    if row is not None and artifact.get("precision") in FLOAT_PRECISIONS:
        # The release table measured the float models; a quantized artifact's top-1 differs.
        options.append({"top1": row.top1, "top5": row.top5, "source": "published", "images": PUBLISHED_IMAGES,
                        "ci95": _interval(row.top1, PUBLISHED_IMAGES)})
    drop, drop_ci = measured.get("top1_drop_vs_fp32_points"), measured.get("top1_drop_ci95_points")
    if row is not None and artifact.get("precision") not in FLOAT_PRECISIONS and drop is not None and drop_ci:
        published = _interval(row.top1, PUBLISHED_IMAGES)
        options.append({"top1": row.top1 - drop, "top5": None, "images": measured.get("images"),
                        "source": f"estimate: published fp32 minus the drop measured on {measured.get('images')} images",
                        "ci95": (published[0] - drop_ci[1], published[1] - drop_ci[0])})
    if not options:
        return none
    best = min(options, key=lambda o: (o["ci95"][1] - o["ci95"][0]) if o["ci95"] else float("inf"))
    warning = None
    if best["source"] == "measured" and (best["images"] or 0) < FEW_IMAGES:
        warning = (f"measured on {best['images'] or 'an unknown number of'} images only "
                   "(evaluate a few hundred or more for a figure to rank by)")
    return {**none, **best, "warning": warning}


def accuracy_of(manifest: dict | None, artifact: dict, name: str, weights_source: str | None) -> tuple:
    """(top1 %, top5 %, source) of an artifact (see accuracy_evidence)."""
    evidence = accuracy_evidence(manifest, artifact, name, weights_source)
    return evidence["top1"], evidence["top5"], evidence["source"]


# --- tidy rows ------------------------------------------------------------------


def record_row(record: dict, entry: ManifestEntry | None) -> dict:
    """One record as a flat row of plain values; units in the column names."""
    device = record["device"]
    artifact = record["artifact"]
    runner = record["runner"]
    latency = record.get("latency_ms") or {}
    power = record.get("power") or {}
    sessions = record.get("sessions") or {}
    macs, params = artifact.get("macs"), artifact.get("params")
    median = latency.get("median")
    manifest = entry.manifest if entry else None
    spec = (manifest or {}).get("spec", {})
    evidence = accuracy_evidence(manifest, entry.artifact if entry else artifact, artifact["name"],
                                 artifact.get("weights_source"))
    top1, top5, accuracy_source = evidence["top1"], evidence["top5"], evidence["source"]
    weights_source = artifact.get("weights_source") or (manifest or {}).get("weights", {}).get("source")
    gmacs = macs / median / 1e6 if macs and median else None
    peak_gmacs = None
    # The device's fp32 vector peak, as its info recorded it at bench time: it applies to fp32 models.
    peak = (device.get("extra") or {}).get("cpu_peak")
    peak_basis = None
    if isinstance(peak, dict) and artifact["precision"] == "fp32":
        cores = peak.get("cores") or 1
        threads = runner.get("threads")
        used = cores if threads is None else max(1, min(threads, cores))
        peak_gmacs = peak["macs_per_cycle"] * peak["clock_ghz"] * used
        peak_basis = (f"{peak['vector']}: {peak['macs_per_cycle']} MAC/cycle x {peak['clock_ghz']:.2f} GHz "
                      f"({peak['clock_source']}) x {used} core(s)")
    return {
        "run_id": record["run_id"],
        "status": record["status"],
        "error": record.get("error"),
        "started_at": record.get("started_at"),
        "device_id": device["id"],
        "device_kind": device["kind"],
        "device_model": device.get("model"),
        "device_soc": device.get("soc"),
        "device_os": device.get("os"),
        "device_cores": device.get("cores"),
        "model": artifact["name"],
        "alpha": artifact.get("alpha", spec.get("alpha")),
        "resolution": artifact.get("resolution", spec.get("resolution")),
        "format": artifact["format"],
        "precision": artifact["precision"],
        "runner": runner["name"],
        "threads": runner.get("threads"),
        "delegate": runner.get("delegate"),
        "config_key": record["config_key"],
        **{f"latency_ms_{key}": latency.get(key) for key in
           ("median", "mean", "p90", "p95", "p99", "std", "min", "max", "ci95_low", "ci95_high")},
        "latency_count": latency.get("count"),
        # bench --repeat: the aggregate's session count and the 95% interval over its session medians.
        "sessions": sessions.get("count"),
        "between_ci95_low_ms": sessions.get("between_ci95_low_ms"),
        "between_ci95_high_ms": sessions.get("between_ci95_high_ms"),
        "stop_reason": record.get("stop_reason"),
        # bench --check-outputs: did the device compute what convert verified (None: not checked)?
        "numerics_passed": (record.get("numerics") or {}).get("passed"),
        "numerics_failures": "; ".join((record.get("numerics") or {}).get("failures") or []) or None,
        "init_ms": record.get("init_ms"),
        "first_inference_ms": record.get("first_inference_ms"),
        "peak_memory_mb": record.get("peak_memory_mb"),
        "macs_m": macs / 1e6 if macs is not None else None,
        "params_m": params / 1e6 if params is not None else None,
        "size_bytes": artifact["bytes"],
        "gmacs_per_s": gmacs,
        "peak_gmacs_per_s": peak_gmacs,
        "fraction_of_peak": gmacs / peak_gmacs if gmacs and peak_gmacs else None,
        "peak_basis": peak_basis,
        "power_status": power.get("status"),
        "avg_power_mw": power.get("avg_power_mw"),
        "energy_mj": power.get("energy_mj"),
        "throttled": record["throttled"],
        "throttle_reasons": "; ".join(map(str, (record.get("thermal") or {}).get("throttle_reasons") or [])) or None,
        "weights_source": weights_source,
        "top1_percent": top1,
        "top5_percent": top5,
        "accuracy_source": accuracy_source,
        "top1_ci95_low": evidence["ci95"][0] if evidence["ci95"] else None,
        "top1_ci95_high": evidence["ci95"][1] if evidence["ci95"] else None,
        "accuracy_images": evidence["images"],
        "accuracy_warning": evidence["warning"],
        **device_accuracy(manifest, entry.artifact if entry else artifact, record["device"]["id"]),
        "sha256": artifact["sha256"],
    }


def device_accuracy(manifest: dict | None, artifact: dict, device_id: str) -> dict:
    """The top-1 `eval --device` measured ON this record's device (key `<format>/<precision>@<device id>`).

    Shown beside the model's accuracy, never in its place: it says whether the device computes the model
    as the host does, on the images eval was given; select and the figures rank by accuracy_evidence only.
    """
    measured = measured_accuracy(manifest, f"{artifact_key(artifact)}@{device_id}")
    interval = measured.get("top1_ci95_percent") or [None, None]
    meaningful = measured.get("top1_percent") is not None and not measured.get("meaningless")
    return {"device_top1_percent": measured.get("top1_percent") if meaningful else None,
            "device_top1_ci95_low": interval[0] if meaningful else None,
            "device_top1_ci95_high": interval[1] if meaningful else None,
            "device_top1_images": measured.get("images") if meaningful else None}


def tidy_rows(runs: Iterable[Run], index: ManifestIndex | None = None) -> list[dict]:
    index = index or ManifestIndex()
    rows = []
    for run in runs:
        for record in run.records:
            if is_session(record):
                continue  # its artifact's aggregate record stands for it
            rows.append(record_row(record, index.for_record(record, run.path)))
    return rows


def match_key(row: dict) -> tuple:
    """What makes two records measurements of the same thing."""
    return (row["device_id"], row["model"], row["format"], row["precision"], row["config_key"])


def config_names(rows: Iterable[dict]) -> dict[str, str]:
    """config_key -> a readable name ("litert, 1 thread, xnnpack"); configurations that read
    the same but differ in another knob (warm-up, compute units, ...) get their key appended."""
    described: dict[str, str] = {}
    for row in rows:
        threads = row.get("threads")
        parts = [row.get("runner"), None if threads is None else f"{threads} thread{'s' if threads != 1 else ''}",
                 row.get("delegate")]
        described.setdefault(row["config_key"], ", ".join(str(p) for p in parts if p) or row["config_key"])
    counts = Counter(described.values())
    return {key: name if counts[name] == 1 else f"{name} [{key}]" for key, name in described.items()}


def latest_ok(rows: Iterable[dict]) -> list[dict]:
    """The most recent successful row per (device, model, format, precision, config)."""
    chosen: dict[tuple, dict] = {}
    for row in sorted(rows, key=lambda r: r.get("started_at") or ""):
        if row["status"] == "ok" and row["latency_ms_median"] is not None:
            chosen[match_key(row)] = row
    return list(chosen.values())


# Spreadsheet tools run a cell that starts with one of these as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A value as a CSV cell: None empty; text that a spreadsheet would run as a formula quoted with `'`."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(rows: list[dict]) -> str:
    """results.csv: a header of COLUMNS and one line per row."""
    return csv_header() + csv_lines(rows)


def csv_header() -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(COLUMNS)
    return buffer.getvalue()


def csv_lines(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    # csv writes None as an empty cell and only text can start a formula: the other cells
    # (most of 30,000 rows x 70 columns) skip csv_cell.
    writer.writerows([csv_cell(value) if isinstance(value, str) else value for value in map(row.get, COLUMNS)]
                     for row in rows)
    return buffer.getvalue()
