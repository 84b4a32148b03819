"""`--resume RUN`: finish the run as it was started, never a mix of configurations.

A run folder's `run.json` keeps what was benched (`selection`: model folders,
precisions, formats) and how (`options`). Resuming takes both from there; an
option the user gives again must equal the run's, else the resume is refused
with every difference named.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from mbdeploy.bench.options import BenchOptions
from mbdeploy.errors import InvalidInput, ResultsError
from mbdeploy.records.store import RunFolder
from mbdeploy.runners.base import TimingOptions


def run_settings(options: BenchOptions, models: list[Path], precisions: list[str], formats: list[str]) -> dict:
    """What defines a run, flat and JSON-ready: the timing and runner knobs plus the artifact selection."""
    flat = {**asdict(options.timing), "runner": options.runner, "cooldown_s": options.cooldown_s,
            "cooldown_temp_c": options.cooldown_temp_c, "allow_charging": options.allow_charging, "repeat": options.repeat,
            "rule": options.rule, "check_outputs": options.check_outputs}
    for key, value in options.runner_options.items():
        flat[key] = list(value) if isinstance(value, (list, tuple)) else str(value) if isinstance(value, Path) else value
    flat["models"] = [str(Path(m).resolve()) for m in models]
    flat["precisions"] = list(precisions)
    flat["formats"] = list(formats)
    return flat


def _stored_settings(meta: dict, run: str) -> dict:
    settings = meta.get("settings")
    if isinstance(settings, dict):
        return settings
    # A run started before `settings` was kept: its options and model folders are all there is.
    options = meta.get("options")
    if not isinstance(options, dict) or not isinstance(options.get("timing"), dict):
        raise ResultsError(f"run {run} keeps no options in its run.json; start a new run instead")
    flat = {**options["timing"], "runner": options.get("runner"), "cooldown_s": options.get("cooldown_s", 0.0),
            "cooldown_temp_c": options.get("cooldown_temp_c"), "allow_charging": options.get("allow_charging", False)}
    flat.update(options.get("runner_options") or {})
    flat["models"] = list(meta.get("models") or [])
    return flat


def _same(given: object, stored: object) -> bool:
    if isinstance(given, (list, tuple)) or isinstance(stored, (list, tuple)):
        return [str(v) for v in (given or [])] == [str(v) for v in (stored or [])]
    if isinstance(given, (int, float)) and isinstance(stored, (int, float)) and not isinstance(given, bool):
        return float(given) == float(stored)
    return given == stored or (given is not None and stored is not None and str(given) == str(stored))


def resumed_settings(out: Path, run: str, given: dict, labels: dict[str, str]) -> tuple[RunFolder, dict]:
    """The run's folder and its settings; InvalidInput naming each option in `given` that differs.

    `given` holds only what the user typed again (by settings key); `labels` maps a key to its flag.
    """
    folder = RunFolder.open(out, run)
    stored = _stored_settings(folder.meta(), run)
    differences = []
    for key, value in given.items():
        if key not in stored:
            continue  # a run started before this knob was kept: nothing to hold it to
        if not _same(value, stored[key]):
            shown = (",".join(map(str, stored[key])) or "none") if isinstance(stored[key], list) else stored[key]
            mine = (",".join(map(str, value)) or "none") if isinstance(value, (list, tuple)) else value
            differences.append(f"{labels.get(key, key)} {mine} (the run has {shown})")
    if differences:
        raise InvalidInput(f"--resume {run} continues the run with its own options; these differ: "
                           + "; ".join(differences) + ". Drop them, or start a new run without --resume")
    return folder, stored


def options_from_settings(settings: dict, runner_keys: tuple[str, ...]) -> BenchOptions:
    """BenchOptions as the run had them (the inverse of `run_settings`)."""
    timing_keys = set(TimingOptions.__dataclass_fields__)
    timing = TimingOptions(**{key: settings[key] for key in timing_keys if key in settings})
    runner_options = {}
    for key in runner_keys:
        value = settings.get(key)
        if value in (None, False, []):
            continue
        runner_options[key] = tuple(value) if isinstance(value, list) else value
    return BenchOptions(timing=timing, runner=settings.get("runner"), cooldown_s=settings.get("cooldown_s", 0.0),
                        cooldown_temp_c=settings.get("cooldown_temp_c"),
                        allow_charging=bool(settings.get("allow_charging")), runner_options=runner_options,
                        repeat=int(settings.get("repeat", 1)), rule=settings.get("rule"),
                        check_outputs=bool(settings.get("check_outputs")))
