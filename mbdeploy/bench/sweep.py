"""The sweep: artifacts x devices -> validated records in a run folder, one worker thread per device."""

from __future__ import annotations

import json
import os
import platform
import threading
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable

from mbdeploy.bench.artifacts import Artifact
from mbdeploy.bench.measure import measure_one, measure_one_failed
from mbdeploy.bench.options import BenchOptions
from mbdeploy.bench.thermal import cool_down
from mbdeploy.devices.base import Device
from mbdeploy.devices.lock import DeviceLock
from mbdeploy.devices.power import PowerMeter
from mbdeploy.errors import MbdeployError, ResultsError
from mbdeploy.manifest import tool_versions
from mbdeploy.records.rules import grade, grade_sessions
from mbdeploy.records.sessions import aggregate as aggregate_sessions
from mbdeploy.records.store import RunFolder, utc_now
from mbdeploy.runners.base import Runner
from mbdeploy.runners.registry import make_runners

Event = Callable[[str, dict], None]  # (kind, data): "start", "record", "skip", "unsupported", "wait"


def host_meta() -> dict:
    return {"hostname": platform.node(), "platform": platform.platform(), "machine": platform.machine(),
            "python": platform.python_version(), "pid": os.getpid()}


def start_run(out: Path, options: BenchOptions, models: Iterable[Path], device_infos: list[dict],
              resume: str | None = None, command: list[str] | None = None, settings: dict | None = None,
              label: str | None = None) -> RunFolder:
    """A new run folder, or the run `resume` names. `settings` (bench.resume.run_settings) is what a
    later --resume restores; `label` (bench --label) names the run in the report's history."""
    if resume:
        folder = RunFolder.open(out, resume)
        dropped, bad = folder.repair()
        if dropped:
            warnings.warn(f"{folder.records_file}: dropped {dropped} unreadable line(s) before resuming; "
                          f"the file as it was is kept as {bad.name}", stacklevel=2)
        resumed = folder.meta().get("resumed_at", [])
        folder.update_meta(resumed_at=[*resumed, utc_now()], **({"label": label} if label is not None else {}))
        return folder
    # Paths (e.g. --benchmark-binary) as text: run.json is JSON.
    options_meta = json.loads(json.dumps(asdict(options), default=str))
    meta = {"host": host_meta(), "tools": tool_versions(), "options": options_meta,
            "models": [str(m) for m in models], "devices": device_infos, "command": command}
    if settings is not None:
        meta["settings"] = settings
    if label is not None:
        meta["label"] = label
    return RunFolder.create(out, meta)


def device_runners(device: Device, options: BenchOptions) -> list[Runner]:
    """The runner configs this device times with: the chosen runner, else its kind's default."""
    return make_runners(options.runner or device.default_runner, options.timing, options.runner_options,
                        strict=options.runner is not None)


def clean_device(device: Device) -> None:
    """Remove what this sweep put on the device, unless --keep (best effort: the record matters more)."""
    try:
        device.end_run()
    except Exception:  # noqa: BLE001
        pass


class _Sweep:
    """What every device worker shares: the run folder, the records so far, the event sink."""

    def __init__(self, folder: RunFolder, options: BenchOptions, emit: Event) -> None:
        self.folder = folder
        self.options = options
        self.emit = emit
        self.done = folder.recorded_keys()
        self.write_lock = threading.Lock()
        self.records: list[dict] = []
        self.stopped = threading.Event()  # a record could not be stored: every worker stops after its model
        # Set when the bench is interrupted: workers start no new model and store nothing more
        # (a model cut short by the interruption is no failure of the model; --resume times it).
        self.interrupted = threading.Event()

    def store(self, record: dict) -> None:
        with self.write_lock:
            if self.interrupted.is_set():
                return
            try:
                self.folder.append(record)
            except ResultsError:
                self.stopped.set()
                raise
            self.records.append(record)
        self.emit("record", record)

    def device(self, device: Device, info: dict, artifacts: list[Artifact]) -> None:
        for runner in device_runners(device, self.options):
            self.runner(device, info, runner, artifacts)

    def runner(self, device: Device, info: dict, runner: Runner, artifacts: list[Artifact]) -> None:
        emit = self.emit
        for artifact in artifacts:
            if artifact.format not in runner.formats:
                emit("unsupported", {"device": device.id, "artifact": artifact.name, "precision": artifact.precision})
        artifacts = [a for a in artifacts if a.format in runner.formats]
        todo = [a for a in artifacts if (device.id, a.name, a.sha256, runner.config_key()) not in self.done]
        for artifact in artifacts:
            if artifact not in todo:
                emit("skip", {"device": device.id, "artifact": artifact.name, "precision": artifact.precision})
        if not todo:
            return
        lock = DeviceLock(device.lock_key, wait=self.options.wait_for_lock,
                          on_wait=lambda msg: emit("wait", {"message": msg}), name=device.id)
        with lock:
            device.lock = lock
            meter: PowerMeter | None = None
            try:
                device.begin_run(self.folder.run_id)  # e.g. an ssh board: end what an earlier session left
                runner.bind_run(self.folder.path)
                runner.prepare(device)
                # Once per device: finding the sensors costs a round trip.
                meter = device.power_meter(allow_charging=self.options.allow_charging)
            except MbdeployError as exc:
                prepare_error: str | None = exc.message
            else:
                prepare_error = None
            try:
                self.models(device, info, runner, todo, prepare_error, meter)
            finally:
                clean_device(device)
                device.lock = None

    def models(self, device: Device, info: dict, runner: Runner, todo: list[Artifact], prepare_error: str | None,
               meter: PowerMeter | None) -> None:
        """Every artifact once, or with --repeat K in K interleaved rounds (A, B, C, A, B, C, ...): each
        session a fresh runner process with its own warm-up, so a drift of the device hits every artifact alike."""
        options = self.options
        rounds = max(1, options.repeat)
        sessions: dict[int, list[dict]] = {index: [] for index in range(len(todo))}
        first = True
        for round_index in range(rounds):
            for index, artifact in enumerate(todo):
                if self.stopped.is_set() or self.interrupted.is_set():
                    return
                self.emit("start", {"device": device.id, "artifact": artifact.name, "precision": artifact.precision})
                cooldown = None
                if not first:
                    cooldown = cool_down(device, options.cooldown_s, options.cooldown_temp_c, options.cooldown_max_s)
                first = False
                if prepare_error is None:
                    record = measure_one(device, info, runner, artifact, self.folder.run_id, options, cooldown, meter)
                else:
                    record = measure_one_failed(device, info, runner, artifact, self.folder.run_id, prepare_error)
                if rounds > 1:
                    record["session"] = {"index": round_index + 1, "of": rounds}
                if options.rule:
                    record["grade"] = grade(record, options.rule)
                self.store(record)
                sessions[index].append(record)
        if rounds > 1:
            for index in range(len(todo)):
                record = aggregate_sessions(sessions[index])
                if options.rule:
                    record["grade"] = grade_sessions([r["grade"] for r in sessions[index]])
                self.store(record)


def each_device(devices: list[Device], device_infos: list[dict], work: Callable[[Device, dict], None],
                name: str, on_interrupt: Callable[[], None] | None = None) -> None:
    """`work(device, info)` for every device, one thread per device (in this thread when there is one).

    The first exception of any worker is raised here once all have ended; an interrupt while waiting
    (Ctrl-C, SIGTERM) calls `on_interrupt` and propagates: the caller closes the devices, which ends their work.
    """
    errors: list[BaseException] = []

    def guarded(device: Device, info: dict) -> None:
        try:
            work(device, info)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            errors.append(exc)

    if len(devices) == 1:
        guarded(devices[0], device_infos[0])
    else:
        threads = [threading.Thread(target=guarded, args=(d, i), name=f"{name}-{d.id}", daemon=True)
                   for d, i in zip(devices, device_infos)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:
            if on_interrupt is not None:
                on_interrupt()
            raise
    if errors:
        raise errors[0]


def run_sweep(devices: list[Device], device_infos: list[dict], artifacts: list[Artifact], folder: RunFolder,
              options: BenchOptions, emit: Event | None = None) -> list[dict]:
    """Bench every artifact on every device (one thread per device); return the new records."""
    sweep = _Sweep(folder, options, emit or (lambda kind, data: None))
    each_device(devices, device_infos, lambda device, info: sweep.device(device, info, artifacts), "bench",
                on_interrupt=sweep.interrupted.set)
    return sweep.records
