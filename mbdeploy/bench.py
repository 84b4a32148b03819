"""Benchmark sweeps: artifacts x devices -> validated records in a run folder.

The host decides and stores; the runner on the device only times. Per device
and artifact: cool down, read sensors, push the model, run it under the power
meter, read sensors again, build the record, validate it, append it. A model
that fails becomes a `failed` record and the sweep goes on. With several
devices, each gets its own worker thread, runner and lock.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import platform
import posixpath
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from mbdeploy import stats
from mbdeploy.atomic import sha256_file
from mbdeploy.devices.base import Device, SensorReading
from mbdeploy.errors import InvalidInput, ManifestError, MbdeployError, ResultsError
from mbdeploy.manifest import artifact_file, find_manifests, load_manifest, tool_versions
from mbdeploy.power import PowerResult
from mbdeploy.results import RECORD_SCHEMA, DeviceLock, RunFolder, utc_now, validate_record
from mbdeploy.runners.base import RunOutcome, Runner, TimingOptions
from mbdeploy.sensors import loop_power

FORMATS = ("tflite", "coreml", "onnx")
MODEL_SUFFIXES = {".tflite": "tflite"}  # plain files benchable without a manifest

# runner name -> (module, class); a runner is available when its module exists.
RUNNERS = {
    "litert": ("mbdeploy.runners.litert", "LiteRTRunner"),
    "benchmark_model": ("mbdeploy.runners.benchmark_model", "BenchmarkModelRunner"),
    "benchmark_app": ("mbdeploy.runners.benchmark_app", "BenchmarkAppRunner"),
    "coreml_app": ("mbdeploy.runners.coreml_app", "CoreMLAppRunner"),
}
DEFAULT_RUNNER = {"android": "benchmark_model", "ios": "coreml_app"}  # every other kind: litert
DEFAULT_FORMATS = {"ios": ("coreml",)}  # every other kind: tflite


# --- artifacts ---------------------------------------------------------------
@dataclass
class Artifact:
    """One model file to time, with what its manifest (or `inspect`) says about it."""

    name: str
    format: str
    precision: str
    path: Path
    sha256: str
    bytes: int
    macs: int | None = None
    params: int | None = None
    alpha: float | None = None
    resolution: int | None = None
    manifest: str | None = None
    weights_source: str | None = None

    def record_fields(self) -> dict:
        fields = asdict(self)
        fields.pop("path")
        return fields


def _inspect_counts(path: Path) -> dict:
    """MACs/params of a plain model file from `mbdeploy.inspection`, when that module exists."""
    if importlib.util.find_spec("mbdeploy.inspection") is None:
        return {}
    try:
        found = importlib.import_module("mbdeploy.inspection").inspect_tflite(path)
    except Exception:  # an uninspectable file is still benchable; counts stay null
        return {}
    return found if isinstance(found, dict) else {}


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def size_and_digest(path: Path) -> tuple[int, str]:
    """Bytes and sha256 of a model: a file, or a folder (.mlpackage) hashed as `convert` hashed it."""
    if path.is_file():
        return path.stat().st_size, sha256_file(path)
    from mbdeploy.convert import _size_and_digest  # the one definition of a folder's digest

    return _size_and_digest(path)


def _from_manifest(manifest_file: Path, manifest: dict, entry: dict) -> Artifact:
    path = artifact_file(manifest_file, entry)
    if not path.exists():
        raise ManifestError(f"{manifest_file} lists {entry.get('path')!r}, which does not exist")
    size, digest = size_and_digest(path)
    if entry.get("sha256") and entry["sha256"] != digest:
        raise ManifestError(f"{path} changed since {manifest_file} was written (sha256 differs); convert it again")
    spec = manifest.get("spec", {})
    return Artifact(
        name=manifest["name"], format=entry["format"], precision=str(entry["precision"]), path=path,
        sha256=digest, bytes=size,
        macs=_int_or_none(entry.get("macs", manifest.get("macs"))),
        params=_int_or_none(entry.get("params", manifest.get("params"))),
        alpha=spec.get("alpha"), resolution=spec.get("resolution"), manifest=str(manifest_file),
        weights_source=(manifest.get("weights") or {}).get("source"),
    )


def _plain(path: Path) -> Artifact:
    counts = _inspect_counts(path)
    return Artifact(
        name=path.stem, format=MODEL_SUFFIXES[path.suffix], precision=str(counts.get("precision") or "unknown"),
        path=path, sha256=sha256_file(path), bytes=path.stat().st_size,
        macs=_int_or_none(counts.get("macs")), params=_int_or_none(counts.get("params")),
    )


def collect_artifacts(paths: Sequence[Path], precisions: Sequence[str] | None = None,
                      formats: Sequence[str] = ("tflite",)) -> list[Artifact]:
    """Artifacts listed by manifests under `paths`, plus plain model files no manifest lists."""
    bad = sorted(set(formats) - set(FORMATS))
    if bad:
        raise InvalidInput(f"unknown format(s) {bad}; allowed: {', '.join(FORMATS)}")
    found: list[Artifact] = []
    listed: set[Path] = set()
    plain: list[Path] = []
    for root in map(Path, paths):
        if not root.exists():
            raise InvalidInput(f"--models {root} does not exist")
        manifests = list(find_manifests([root]))
        if root.is_file() and root.name != "manifest.json":
            beside = root.parent / "manifest.json"
            manifests = [beside] if beside.is_file() else []
            plain.append(root)
        elif root.is_dir():
            plain += sorted(p for p in root.rglob("*") if p.suffix in MODEL_SUFFIXES and p.is_file())
        for manifest_file in manifests:
            manifest = load_manifest(manifest_file)
            for entry in manifest["artifacts"]:
                path = artifact_file(manifest_file, entry).resolve()
                listed.add(path)
                if root.is_file() and root.name != "manifest.json" and path != root.resolve():
                    continue  # a single file was named: only its own entry
                if entry.get("format") not in formats or (precisions and str(entry.get("precision")) not in precisions):
                    continue  # not asked for: neither hashed nor checked
                found.append(_from_manifest(manifest_file, manifest, entry))
    for path in plain:
        if path.resolve() not in listed and path.suffix in MODEL_SUFFIXES:
            found.append(_plain(path))
    unique = {(a.sha256, a.format, a.precision, a.name): a for a in found}
    chosen = [a for a in unique.values() if a.format in formats and (not precisions or a.precision in precisions)]
    return sorted(chosen, key=lambda a: (a.name, a.format, a.precision))


# --- runners -----------------------------------------------------------------
def available_runners() -> list[str]:
    return [name for name, (module, _) in RUNNERS.items() if importlib.util.find_spec(module) is not None]


def default_runner_name(device: Device) -> str:
    return DEFAULT_RUNNER.get(device.kind, "litert")


def default_formats(devices: Sequence[Device]) -> tuple[str, ...]:
    """What to bench when --formats is not given: coreml when every device is an iPhone, else tflite."""
    kinds = {DEFAULT_FORMATS.get(device.kind, ("tflite",)) for device in devices}
    return kinds.pop() if len(kinds) == 1 else ("tflite",)


def runner_option_sets(runner_options: dict) -> list[dict]:
    """One option set per runner config: a list-valued option (e.g. compute units) gives one config per value."""
    keys = [key for key, value in runner_options.items() if isinstance(value, (list, tuple))]
    fixed = {key: value for key, value in runner_options.items() if key not in keys}
    return [{**fixed, **dict(zip(keys, values))}
            for values in itertools.product(*(runner_options[key] for key in keys))]


def make_runners(name: str, options: TimingOptions, runner_options: dict) -> list[Runner]:
    """Every runner config a sweep times each artifact with (one record per artifact and config)."""
    return [make_runner(name, options, **given) for given in runner_option_sets(runner_options)]


def check_formats(runners: list[Runner], artifacts: list, device_id: str) -> None:
    """Refuse, before any run starts, a device whose runner can time none of the artifacts (e.g. ONNX on LiteRT).

    With several devices (`--device all`), each times the formats its runner takes and passes over the rest.
    """
    for runner in runners:
        if not any(a.format in runner.formats for a in artifacts):
            foreign = sorted({a.format for a in artifacts})
            raise InvalidInput(
                f"the {runner.name} runner on {device_id} times {', '.join(runner.formats)} models, not "
                f"{', '.join(foreign)}; choose --formats {','.join(runner.formats)} (or another --runner)"
            )


def make_runner(name: str, options: TimingOptions, **runner_options: object) -> Runner:
    """The runner called `name`; `runner_options` are its own knobs (e.g. benchmark_model's binary)."""
    if name not in RUNNERS:
        raise InvalidInput(f"unknown runner {name!r}; allowed: {', '.join(RUNNERS)}")
    if name not in available_runners():
        raise InvalidInput(f"runner {name!r} is not installed here; available: {', '.join(available_runners())}")
    module, cls = RUNNERS[name]
    given = {key: value for key, value in runner_options.items() if value not in (None, False)}
    return getattr(importlib.import_module(module), cls)(options, **given)


# --- thermal -----------------------------------------------------------------
@dataclass
class BenchOptions:
    timing: TimingOptions = field(default_factory=TimingOptions)
    runner: str | None = None  # None: the device kind's default
    cooldown_s: float = 0.0
    cooldown_temp_c: float | None = None  # wait until the hottest zone is below this, when a sensor exists
    cooldown_max_s: float = 300.0
    idle_power_s: float = 1.0  # idle power baseline before each model, only when a power sensor exists
    throttle_freq_drop: float = 0.10  # fraction
    throttle_temp_rise_c: float = 5.0
    wait_for_lock: bool = True
    allow_charging: bool = False  # phones: measure power even on USB power (the meter marks it)
    runner_options: dict = field(default_factory=dict)  # passed to the runner, e.g. {"binary": "..."}


def throttle_reasons(before: SensorReading, after: SensorReading, freq_drop: float, temp_rise_c: float) -> list[str]:
    """Why the run looks throttled: a CPU frequency fell, or the hottest zone rose, beyond the thresholds."""
    reasons = []
    for cpu, start in before.cpu_freq_khz.items():
        end = after.cpu_freq_khz.get(cpu)
        if end is not None and start > 0 and end < start * (1.0 - freq_drop):
            reasons.append(f"{cpu} frequency fell {start} -> {end} kHz")
    if before.temperatures_c and after.temperatures_c:
        start, end = max(before.temperatures_c.values()), max(after.temperatures_c.values())
        if end - start > temp_rise_c:
            reasons.append(f"temperature rose {start:.1f} -> {end:.1f} C")
    return reasons


def cool_down(device: Device, seconds: float, below_c: float | None, max_s: float) -> dict:
    """Wait between models: until the device is cooler than `below_c` when it has a sensor, else `seconds`."""
    started = time.monotonic()
    if below_c is not None and device.sensors().temperatures_c:
        while time.monotonic() - started < max_s:
            hottest = max(device.sensors().temperatures_c.values() or [below_c])
            if hottest < below_c:
                return {"waited_s": time.monotonic() - started, "until": f"below {below_c} C", "reached": True}
            time.sleep(1.0)
        return {"waited_s": time.monotonic() - started, "until": f"below {below_c} C", "reached": False}
    if seconds > 0:
        time.sleep(seconds)
    return {"waited_s": time.monotonic() - started, "until": f"{seconds} s", "reached": True}


# --- one measurement ---------------------------------------------------------
def latency_block(outcome: RunOutcome) -> dict | None:
    if outcome.samples_ms:
        return stats.summarize(outcome.samples_ms)
    if outcome.summary_ms:
        return {key: outcome.summary_ms.get(key) for key in stats.LATENCY_KEYS}
    return None


def device_block(device: Device, info: dict | None) -> dict:
    info = dict(info or {"kind": device.kind, "id": device.id})
    info["kind"], info["id"] = device.kind, device.id
    return info


def _with_device_settings(extra: dict, device: Device) -> dict:
    """What the device side changed to steady the clocks (e.g. Android's fixed performance mode)."""
    applied = getattr(device, "settings_applied", None)
    return {**extra, "device_settings": list(applied)} if applied else extra


def _power_meter(device: Device, allow_charging: bool = False):
    make = getattr(device, "power_meter", None)  # kinds without power sensing simply lack it
    if not callable(make):
        return None
    return make(allow_charging=True) if allow_charging else make()


def measure_one(device: Device, device_info: dict, runner: Runner, artifact: Artifact, run_id: str,
                options: BenchOptions, cooldown: dict | None, meter=None) -> dict:  # noqa: ANN001 - PowerMeter
    """Time one artifact on one device; always returns a record (ok or failed), never raises for the model.

    The pushed model stays in the device's work folder until the device's
    sweep ends (`clean_device`): one shell round trip less per model.
    """
    started_at = utc_now()
    phases: dict[str, float] = {}
    clock = time.perf_counter
    begin = clock()
    record = {
        "schema": RECORD_SCHEMA, "run_id": run_id, "status": "failed", "error": None,
        "device": device_block(device, device_info), "artifact": artifact.record_fields(),
        "runner": runner.config(), "config_key": runner.config_key(),
        "latency_ms": None, "stop_reason": None, "init_ms": None, "first_inference_ms": None,
        "peak_memory_mb": None, "power": PowerResult.unavailable("the run did not finish").to_dict(),
        "thermal": {"cooldown": cooldown}, "throttled": False, "started_at": started_at,
    }
    metering = False
    try:
        remote = posixpath.join(device.workdir, "models", artifact.sha256[:16], artifact.path.name)
        before = device.sensors()
        if meter is not None and getattr(meter, "source", None) is not None and options.idle_power_s > 0:
            t = clock()
            meter.measure_idle(options.idle_power_s)
            phases["idle_power"] = (clock() - t) * 1e3
        t = clock()
        device.push(artifact.path, remote)
        phases["push"] = (clock() - t) * 1e3
        t = clock()
        if meter is not None:
            meter.start()
            metering = True
        try:
            outcome = runner.run(device, remote)
        finally:
            phases["run"] = (clock() - t) * 1e3
        latency = latency_block(outcome)
        median = (latency or {}).get("median")
        count = (latency or {}).get("count") or 0
        metering = False
        power = meter.stop(count, median) if meter is not None else PowerResult.unavailable(
            f"{device.kind} devices have no power sensor reader")
        # Energy the device itself read around its timed loop beats the host's wider window.
        loop_energy = (outcome.extra or {}).get("loop_energy")
        if isinstance(loop_energy, dict):
            power = loop_power(loop_energy, getattr(meter, "idle_power_mw", None), median) or power
        after = device.sensors()
        reasons = throttle_reasons(before, after, options.throttle_freq_drop, options.throttle_temp_rise_c)
        record.update({
            "status": "ok", "latency_ms": latency, "stop_reason": outcome.stop_reason,
            "samples_ms": outcome.samples_ms or [], "init_ms": outcome.init_ms,
            "first_inference_ms": outcome.first_inference_ms, "peak_memory_mb": outcome.peak_memory_mb,
            "power": power.to_dict(), "throttled": bool(reasons),
            "runner_extra": _with_device_settings(outcome.extra, device),
            "thermal": {"cooldown": cooldown, "before": before.to_dict(), "after": after.to_dict(),
                        "throttle_reasons": reasons},
        })
    except Exception as exc:  # noqa: BLE001 - one failing model must not stop the sweep
        message = exc.message if isinstance(exc, MbdeployError) else f"{type(exc).__name__}: {exc}"
        record.update({"status": "failed", "error": message})
        if metering:
            try:
                meter.stop(0, None)  # end the sampling window; a failed run has no energy figure
            except Exception:  # noqa: BLE001
                pass
    phases["total"] = (clock() - begin) * 1e3
    record["phases_ms"] = phases
    record["finished_at"] = utc_now()
    try:
        validate_record(record)
    except ResultsError as exc:
        # What the device sent does not fit the contract: keep the failure, drop the untrusted figures.
        record.update({"status": "failed", "error": f"invalid runner output: {exc.message}", "latency_ms": None,
                       "samples_ms": [], "init_ms": None, "first_inference_ms": None, "peak_memory_mb": None,
                       "runner_extra": {}, "power": PowerResult.unavailable("the run's output was invalid").to_dict()})
    return record


# --- sweeps ------------------------------------------------------------------
Event = Callable[[str, dict], None]  # (kind, data): "start", "record", "skip", "wait"


def host_meta() -> dict:
    return {"hostname": platform.node(), "platform": platform.platform(), "machine": platform.machine(),
            "python": platform.python_version(), "pid": os.getpid()}


def start_run(out: Path, options: BenchOptions, models: Iterable[Path], device_infos: list[dict],
              resume: str | None = None, command: list[str] | None = None) -> RunFolder:
    if resume:
        folder = RunFolder.open(out, resume)
        folder.drop_partial_line()
        resumed = folder.meta().get("resumed_at", [])
        folder.update_meta(resumed_at=[*resumed, utc_now()])
        return folder
    meta = {"host": host_meta(), "tools": tool_versions(), "options": asdict(options),
            "models": [str(m) for m in models], "devices": device_infos, "command": command}
    return RunFolder.create(out, meta)


def _device_worker(device: Device, info: dict, artifacts: list[Artifact], folder: RunFolder,
                   options: BenchOptions, done: set, write_lock: threading.Lock, emit: Event,
                   records: list[dict]) -> None:
    runners = make_runners(options.runner or default_runner_name(device), options.timing, options.runner_options)
    for runner in runners:
        _device_worker_for(device, info, runner, artifacts, folder, options, done, write_lock, emit, records)


def _device_worker_for(device: Device, info: dict, runner: Runner, artifacts: list[Artifact], folder: RunFolder,
                       options: BenchOptions, done: set, write_lock: threading.Lock, emit: Event,
                       records: list[dict]) -> None:
    for artifact in artifacts:
        if artifact.format not in runner.formats:
            emit("unsupported", {"device": device.id, "artifact": artifact.name, "precision": artifact.precision})
    artifacts = [a for a in artifacts if a.format in runner.formats]
    todo = [a for a in artifacts if (device.id, a.name, a.sha256, runner.config_key()) not in done]
    for artifact in artifacts:
        if artifact not in todo:
            emit("skip", {"device": device.id, "artifact": artifact.name, "precision": artifact.precision})
    if not todo:
        return
    lock = DeviceLock(device.id, wait=options.wait_for_lock, on_wait=lambda msg: emit("wait", {"message": msg}))
    with lock:
        try:
            runner.prepare(device)
            meter = _power_meter(device, options.allow_charging)  # once per device: finding the sensors costs a round trip
        except MbdeployError as exc:
            prepare_error, meter = exc.message, None
        else:
            prepare_error = None
        try:
            _sweep_device(device, info, runner, todo, folder, options, write_lock, emit, records, prepare_error, meter)
        finally:
            clean_device(device)


def clean_device(device: Device) -> None:
    """Remove the models this sweep pushed, unless --keep (best effort: the record matters more)."""
    if getattr(device, "keep", False):
        return
    try:
        device.shell(["rm", "-rf", "--", posixpath.join(device.workdir, "models")], timeout=60)
    except Exception:  # noqa: BLE001
        pass


def _sweep_device(device: Device, info: dict, runner: Runner, todo: list[Artifact], folder: RunFolder,
                  options: BenchOptions, write_lock: threading.Lock, emit: Event, records: list[dict],
                  prepare_error: str | None, meter) -> None:  # noqa: ANN001 - PowerMeter or None
    for index, artifact in enumerate(todo):
        emit("start", {"device": device.id, "artifact": artifact.name, "precision": artifact.precision})
        cooldown = None
        if index > 0:
            cooldown = cool_down(device, options.cooldown_s, options.cooldown_temp_c, options.cooldown_max_s)
        if prepare_error is None:
            record = measure_one(device, info, runner, artifact, folder.run_id, options, cooldown, meter)
        else:
            record = measure_one_failed(device, info, runner, artifact, folder.run_id, prepare_error)
        with write_lock:
            folder.append(record)
            records.append(record)
        emit("record", record)


def measure_one_failed(device: Device, info: dict, runner: Runner, artifact: Artifact, run_id: str,
                       error: str) -> dict:
    now = utc_now()
    return {
        "schema": RECORD_SCHEMA, "run_id": run_id, "status": "failed", "error": f"runner setup failed: {error}",
        "device": device_block(device, info), "artifact": artifact.record_fields(), "runner": runner.config(),
        "config_key": runner.config_key(), "latency_ms": None, "init_ms": None, "first_inference_ms": None,
        "peak_memory_mb": None, "power": PowerResult.unavailable("the run did not start").to_dict(),
        "thermal": {}, "throttled": False, "started_at": now, "finished_at": now,
    }


def run_sweep(devices: list[Device], device_infos: list[dict], artifacts: list[Artifact], folder: RunFolder,
              options: BenchOptions, emit: Event | None = None) -> list[dict]:
    """Bench every artifact on every device (one thread per device); return the new records."""
    emit = emit or (lambda kind, data: None)
    done = folder.recorded_keys()
    write_lock = threading.Lock()
    records: list[dict] = []
    errors: list[BaseException] = []

    def work(device: Device, info: dict) -> None:
        try:
            _device_worker(device, info, artifacts, folder, options, done, write_lock, emit, records)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            errors.append(exc)

    if len(devices) == 1:
        work(devices[0], device_infos[0])
    else:
        threads = [threading.Thread(target=work, args=(d, i), name=f"bench-{d.id}", daemon=True)
                   for d, i in zip(devices, device_infos)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return records


def summary_rows(records: Iterable[dict]) -> list[dict]:
    """One row per record: model, precision, device, median and its CI, MACs, GMAC/s."""
    rows = []
    for record in records:
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
        })
    return rows
