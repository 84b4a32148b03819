"""`mbdeploy select`: the most accurate model that fits a latency budget on one device.

Candidates are every converted artifact (from manifests) and every artifact
measured on the device. Each gets a latency on that device: measured when a
record exists, else predicted from the device's latency-versus-MACs fit for
the same format and precision (marked as a prediction, with the fit's
leave-one-out error), or, when the device has a profile of that format,
precision and runner config (`mbdeploy profile`), from the layer latency
model (`records/layer_model.py`), with its error on the measured models it
was not fitted on. Each gets an accuracy: measured by `eval`, else the
published top-1 for Google's trained weights, whichever has the tighter 95%
interval (records.reader.accuracy_evidence). The choice is the highest lower end
of the top-1's 95% interval within the budget (and the size limit); ties go to
the faster model.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from mbdeploy.architecture import ModelSpec
from mbdeploy.errors import InvalidInput, ResultsError
from mbdeploy.formats import FORMAT_NAMES
from mbdeploy.records.fit import PowerLawFit, fit_groups
from mbdeploy.records.layer_model import LayerModel, fit_layer_models
from mbdeploy.records.reader import ManifestIndex, accuracy_evidence, config_names, latest_ok, load_runs, tidy_rows

METRICS = {"median": "latency_ms_median", "p90": "latency_ms_p90"}


@dataclass
class Candidate:
    model: str
    format: str
    precision: str
    macs_m: float | None
    size_bytes: int | None
    top1_percent: float | None
    accuracy_source: str | None
    latency_ms: float | None = None
    latency_source: str | None = None  # "measured" or "predicted"
    fit_error: float | None = None  # median |relative error| of the predictor used, out of sample
    fit_points: int | None = None  # models the predictor was fitted on
    status: str = ""  # why it is (or is not) eligible
    config: str | None = None  # the runner configuration, as `config_names` shows it
    config_key: str | None = None
    predictor: str | None = None  # "layer model" or "power law", for a predicted latency
    alpha: float | None = None
    resolution: int | None = None
    classes: int | None = None
    top1_ci95: tuple[float, float] | None = None  # the top-1's 95% interval (percent)
    accuracy_images: int | None = None
    accuracy_warning: str | None = None  # e.g. measured on too few images

    @property
    def rank_top1(self) -> float | None:
        """What candidates are ranked by: the lower end of the top-1's 95% interval, so a figure
        from 5 images (100%, interval 57-100%) never outranks one from 50,000 as if it were as sure."""
        if self.top1_percent is None:
            return None
        return self.top1_ci95[0] if self.top1_ci95 else self.top1_percent

    @property
    def eligible(self) -> bool:
        return self.status == "within budget"


@dataclass
class Selection:
    device: str
    budget_ms: float
    metric: str
    chosen: Candidate | None
    candidates: list[Candidate] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"device": self.device, "budget_ms": self.budget_ms, "metric": self.metric,
                "chosen": asdict(self.chosen) if self.chosen else None,
                "candidates": [asdict(c) for c in self.candidates]}


def _validate(budget_ms: float, metric: str, formats: Iterable[str] | None, max_size_mb: float | None) -> None:
    if not budget_ms or budget_ms <= 0:
        raise InvalidInput(f"budget must be a positive number of milliseconds, got {budget_ms}")
    if metric not in METRICS:
        raise InvalidInput(f"metric {metric!r} is not one of: {', '.join(METRICS)}")
    unknown = set(formats or ()) - set(FORMAT_NAMES)
    if unknown:
        raise InvalidInput(f"format(s) {', '.join(sorted(unknown))} unknown; allowed: {', '.join(FORMAT_NAMES)}")
    if max_size_mb is not None and max_size_mb <= 0:
        raise InvalidInput(f"max size must be a positive number of MB, got {max_size_mb}")


def select_model(device: str, budget_ms: float, results: Iterable[Path], model_dirs: Iterable[Path] = (),
                 metric: str = "median", formats: Iterable[str] | None = None,
                 max_size_mb: float | None = None,
                 resolve_device: Callable[[str, list[str]], str] | None = None) -> Selection:
    """`resolve_device(name, ids in the records)` turns a name into a device id (the CLI
    passes the device registry's, so `select` takes the names `bench` takes)."""
    _validate(budget_ms, metric, formats, max_size_mb)
    column = METRICS[metric]
    runs = load_runs(list(results))
    index = ManifestIndex(model_dirs)
    all_rows = tidy_rows(runs, index)
    if resolve_device is not None:
        device = resolve_device(device, sorted({r["device_id"] for r in all_rows}))
    rows = [r for r in latest_ok(all_rows) if r["device_id"] == device and r.get(column)]
    if not rows:
        seen = sorted({r["device_id"] for r in all_rows})
        raise ResultsError(
            f"no successful record for device {device!r}; devices in these runs: {', '.join(seen) or 'none'}"
        )
    # Each runner configuration (threads, delegate, ...) is a candidate of its own, timed by
    # its latest record: an older run with other settings never stands in for the latest.
    names = config_names(rows)
    configs: dict[tuple, list[str]] = {}
    for row in rows:
        configs.setdefault((row["format"], row["precision"]), [])
        if row["config_key"] not in configs[(row["format"], row["precision"])]:
            configs[(row["format"], row["precision"])].append(row["config_key"])
    fits = fit_groups(rows, column)
    measured = {(r["model"], r["format"], r["precision"], r["config_key"]): r for r in rows}

    candidates: dict[tuple, Candidate] = {}
    for entry in index.entries():
        artifact, manifest = entry.artifact, entry.manifest
        kind = (artifact["format"], artifact["precision"])
        evidence = accuracy_evidence(manifest, artifact, manifest["name"], None)
        top1, source = evidence["top1"], evidence["source"]
        macs = artifact.get("macs") or manifest.get("macs")
        spec = manifest.get("spec") or {}
        for config in configs.get(kind) or [None]:
            candidates[(manifest["name"], *kind, config)] = Candidate(
                manifest["name"], *kind, macs / 1e6 if macs else None, artifact.get("bytes"), top1, source,
                config=names.get(config), config_key=config, alpha=spec.get("alpha"),
                resolution=spec.get("resolution"), classes=spec.get("classes"), top1_ci95=evidence["ci95"],
                accuracy_images=evidence["images"], accuracy_warning=evidence["warning"])
    for key, row in measured.items():
        existing = candidates.get(key)
        if existing is None or existing.top1_percent is None and row["top1_percent"] is not None:
            candidates[key] = Candidate(*key[:3], row["macs_m"], row["size_bytes"], row["top1_percent"],
                                        row["accuracy_source"], config=names[key[3]], config_key=key[3],
                                        alpha=row.get("alpha"), resolution=row.get("resolution"),
                                        top1_ci95=(row["top1_ci95_low"], row["top1_ci95_high"])
                                        if row.get("top1_ci95_low") is not None else None,
                                        accuracy_images=row.get("accuracy_images"),
                                        accuracy_warning=row.get("accuracy_warning"))

    layer_models = fit_layer_models([r for run in runs for r in run.records if r["device"]["id"] == device],
                                    [r for run in runs for r in run.layer_records if r["whole"]["device_id"] == device])
    wanted_formats = set(formats or FORMAT_NAMES)
    for key, candidate in candidates.items():
        row = measured.get(key)
        if row is not None:
            candidate.latency_ms, candidate.latency_source = row[column], "measured"
        else:
            group = (device, candidate.format, candidate.precision, candidate.config_key)
            fit, layer_model, spec = fits.get(group), layer_models.get(group), _spec(candidate)
            layer_error = _layer_model_error(layer_model, rows, group, spec) if layer_model and spec else None
            if layer_model is not None and spec is not None and metric == "median" \
                    and not _power_law_expects_less(layer_model, layer_error, fit, spec, candidate):
                candidate.latency_ms = layer_model.predict(spec)
                candidate.latency_source, candidate.predictor = "predicted", "layer model"
                candidate.fit_error = layer_error
                candidate.fit_points = len(layer_model.models)
            elif fit is not None and candidate.macs_m:
                candidate.latency_ms = fit.predict(candidate.macs_m * 1e6)
                candidate.latency_source, candidate.predictor = "predicted", "power law"
                candidate.fit_error, candidate.fit_points = fit.loo_median_abs_error, fit.points
        candidate.status = _status(candidate, budget_ms, wanted_formats, max_size_mb, device)

    ordered = sorted(candidates.values(), key=lambda c: (
        not c.eligible, -(c.rank_top1 if c.rank_top1 is not None else -1),
        c.latency_ms if c.latency_ms is not None else float("inf"), c.model, c.format, c.precision, c.config or ""))
    chosen = ordered[0] if ordered and ordered[0].eligible else None
    return Selection(device, budget_ms, metric, chosen, ordered)


def _spec(candidate: Candidate) -> ModelSpec | None:
    if candidate.alpha is None or candidate.resolution is None:
        return None
    try:
        return ModelSpec(float(candidate.alpha), int(candidate.resolution), int(candidate.classes or 1001))
    except InvalidInput:
        return None


def _power_law_expects_less(model: LayerModel, layer_error: float | None, fit: PowerLawFit | None, spec: ModelSpec,
                            candidate: Candidate) -> bool:
    """At a width nobody profiled, the power law when its own error is the smaller: there the layer model
    has no residuals, and extrapolating beyond the profiled widths can cost it more than the power law."""
    if model.residuals_for(spec) is not None or fit is None or not candidate.macs_m:
        return False
    power_error = fit.loo_median_abs_error
    return power_error is not None and (layer_error is None or power_error < layer_error)


def _layer_model_error(model: LayerModel, rows: list[dict], group: tuple, candidate: ModelSpec) -> float | None:
    """Median |relative error| on the measured models of that group the layer model was not fitted on, of
    the candidate's kind: at a profiled width (its residuals apply) or not. Without any: the model's own
    leave-one-out error, or at an unprofiled width its error with each profiled width left out."""
    profiled = model.residuals_for(candidate) is not None
    errors = []
    for row in rows:
        if (row["device_id"], row["format"], row["precision"], row["config_key"]) != group or row["model"] in model.models:
            continue
        spec = _spec(Candidate(row["model"], row["format"], row["precision"], None, None, None, None,
                               alpha=row.get("alpha"), resolution=row.get("resolution")))
        if spec is not None and row.get("latency_ms_median") and (model.residuals_for(spec) is not None) == profiled:
            errors.append(abs(model.predict(spec) - row["latency_ms_median"]) / row["latency_ms_median"])
    if errors:
        return statistics.median(errors)
    return model.loo_median_abs_error if profiled else model.width_out_median_abs_error


def _status(c: Candidate, budget_ms: float, formats: set[str], max_size_mb: float | None, device: str) -> str:
    if c.format not in formats:
        return f"format {c.format} not requested"
    if max_size_mb is not None and c.size_bytes is not None and c.size_bytes > max_size_mb * 1e6:
        return f"larger than {max_size_mb:g} MB"
    if c.latency_ms is None:
        return f"not measured on {device} and no {c.format} {c.precision} fit there"
    if c.latency_ms > budget_ms:
        return "over budget"
    if c.top1_percent is None:
        if c.accuracy_source:  # a top-1 exists but means nothing (untrained weights, failed verification)
            return f"accuracy {c.accuracy_source.removeprefix('none: ')}"
        return "accuracy unknown (run mbdeploy eval)"
    return "within budget"
