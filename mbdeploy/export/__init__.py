"""Export formats behind one small interface.

Each format module has `export(job, precision, out_path)` (writes the
artifact at `out_path`, atomically), `verify(job, precision, path)`
(returns the verification figures) and `predictor(path)`: the format's host
runtime, which `verify` and `eval` both use. Which precisions a format supports is
data here; impossible combinations are rejected before any work starts.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from mbdeploy.architecture import ModelSpec
from mbdeploy.errors import InvalidInput, MissingDependency
from mbdeploy.formats import FORMATS, FormatInfo  # noqa: F401 - the registry, re-exported for exporters
from mbdeploy.weights import ModelWeights


def format_installed(name: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in FORMATS[name].requires)


def installed_formats() -> list[str]:
    return [name for name in FORMATS if format_installed(name)]


def require_format(name: str) -> None:
    if name not in FORMATS:
        raise InvalidInput(f"unknown format {name!r}; allowed: {', '.join(FORMATS)}")
    info = FORMATS[name]
    for module in info.requires:
        if importlib.util.find_spec(module) is None:
            raise MissingDependency(module, info.extra or "all")


def plan_exports(formats: list[str] | None, precisions: list[str] | None) -> list[tuple[str, str]]:
    """(format, precision) pairs to build, validated before any work starts.

    Precisions apply to every chosen format and must be valid for each; a
    `format:precision` entry (e.g. `tflite:dynamic`) targets one format. When
    the user named no formats, a precision applies to the installed formats that
    support it, and a warning names the ones skipped.
    """
    named = bool(formats)
    chosen = formats if formats else installed_formats()
    for name in chosen:
        require_format(name)
    if not precisions:
        return [(f, p) for f in chosen for p in FORMATS[f].default_precisions]
    pairs: list[tuple[str, str]] = []
    for entry in precisions:
        if ":" in entry:
            fmt, precision = entry.split(":", 1)
            targets = [fmt]
            if fmt not in chosen:
                raise InvalidInput(f"{entry!r} names format {fmt!r}, which is not among --formats {','.join(chosen)}")
        else:
            precision, targets = entry, chosen
            supporting = [fmt for fmt in chosen if precision in FORMATS[fmt].precisions]
            if not named and supporting:
                skipped = [fmt for fmt in chosen if fmt not in supporting]
                if skipped:
                    warnings.warn(f"precision {precision} is built for {', '.join(supporting)} only; skipped for "
                                  + ", ".join(f"{fmt} (takes {', '.join(FORMATS[fmt].precisions)})" for fmt in skipped)
                                  + "; name --formats to require it", stacklevel=2)
                targets = supporting
        for fmt in targets:
            if precision not in FORMATS[fmt].precisions:
                raise InvalidInput(
                    f"precision {precision!r} is not supported for {fmt}; allowed: {', '.join(FORMATS[fmt].precisions)}"
                )
            if (fmt, precision) not in pairs:
                pairs.append((fmt, precision))
    return pairs


@dataclass
class ExportJob:
    """Everything an exporter needs for one model."""

    spec: ModelSpec
    weights: ModelWeights
    keras_model: object
    calibration: np.ndarray  # float inputs in [-1, 1], NHWC
    probes: np.ndarray  # fixed inputs for verification
    reference: np.ndarray  # the Keras model's probabilities on `probes`
    options: dict = field(default_factory=dict)


def exporter(name: str):
    return importlib.import_module(FORMATS[name].exporter)


# One float32 HWC image in [-1, 1] (the manifest's preprocessing) -> the model's 1-D class scores.
Predictor = Callable[[np.ndarray], np.ndarray]


def predictor(name: str, path: Path) -> Predictor:
    """The format's host runtime on one artifact: what `verify` checks and `eval` measures."""
    return importlib.import_module(FORMATS[name].runtime).predictor(path)


def predict_all(predict: Predictor, images: np.ndarray) -> np.ndarray:
    return np.stack([predict(image) for image in images])
