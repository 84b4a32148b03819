"""The Core ML runner for iPhones: the benchmark app (`ios_harness/`) does the timing.

An iPhone has no shell, so this runner does not run a command. For the model
the sweep just copied into the app's container it:

1. writes a plan (`mbdeploy-plan.json`) naming exactly that model's path in
   the container, its byte count, the runs, warm-up and compute units;
2. copies the plan over, launches the app, and polls for `mbdeploy-done`
   until it holds this launch's run id;
3. copies back `mbdeploy-results.json`: the app's raw timings and the
   thermal states it saw, nothing computed. The sweep computes the latency
   statistics from the samples as for every runner, and a "serious" or
   "critical" thermal state becomes a throttle reason of the record.

One runner config is one compute-unit setting: `--compute-units all,cpuOnly`
builds one runner per setting, each giving one record per artifact.

A profile's single-layer packages go in one plan with schedule
`round_robin` (`run_many`): the app loads them all, then each timed run is
one prediction of every package in plan order, so a layer runs with the
caches the other layers leave, as inside the whole model (the litert
runner's round robin on .tflite). Same counts, clock and thermal reading as
a whole model; the app writes one raw entry per package, as for any model.
"""

from __future__ import annotations

import json
import math
import posixpath
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from mbdeploy.atomic import write_json
from mbdeploy.devices.base import Device
from mbdeploy.devices.ios import IosDevice
from mbdeploy.errors import DeviceError, InvalidInput, MbdeployError, ResultsError, RunnerError
from mbdeploy.runners.base import Probes, RunOutcome, Runner, TimingOptions, outcome_or_error_each

if TYPE_CHECKING:
    import numpy as np

APP_SCHEMA = "mbdeploy.coreml_app/3"  # the plan and the results; ios_harness/Sources/CoreMLBench
# one_by_one: each model alone (compile, load, time) before the next; round_robin: all loaded, invoked in turn.
SCHEDULES = ("one_by_one", "round_robin")
COMPUTE_UNITS = ("cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine", "all")
THERMAL_STATES = ("nominal", "fair", "serious", "critical", "unknown")  # ProcessInfo.ThermalState
THROTTLING_STATES = ("serious", "critical")  # Apple: "serious" means the system is reducing performance

PLAN_FILE = "mbdeploy-plan.json"
RESULTS_FILE = "mbdeploy-results.json"
DONE_FILE = "mbdeploy-done"  # the run id, written after the results: a half-written file is never read

DEFAULT_COMPUTE_UNITS = "all"
DEFAULT_RUNS = 50  # the app times a fixed count; it has no adaptive stop
APP_TIMEOUT_S = 1800.0


# --- the plan ----------------------------------------------------------------------
def build_plan(run_id: str, models: dict[str, int | None], runs: int = DEFAULT_RUNS, warmup: int = 5,
               compute_units: Sequence[str] = COMPUTE_UNITS, probes: dict | None = None,
               schedule: str = "one_by_one") -> dict:
    """What the app reads: the exact models to time (path under Documents -> byte count), how long, which units.

    The app times only these paths, so a model left in the container by an
    earlier run (devicectl cannot delete files) is never timed again.
    """
    unknown = [unit for unit in compute_units if unit not in COMPUTE_UNITS]
    if unknown or not compute_units:
        raise InvalidInput(f"unknown compute units {unknown or '(none)'}; allowed: {', '.join(COMPUTE_UNITS)}")
    if schedule not in SCHEDULES:
        raise InvalidInput(f"unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
    if schedule == "round_robin" and probes is not None:
        raise InvalidInput("probe inputs are run one model at a time; a round_robin plan carries none")
    if runs < 1 or warmup < 0:
        raise InvalidInput(f"runs must be >= 1 and warm-up >= 0, got runs={runs}, warmup={warmup}")
    for path in models:
        parts = path.split("/")
        if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise InvalidInput(f"model path {path!r} must be relative to the app's Documents folder")
        if not path.endswith((".mlpackage", ".mlmodelc")):
            raise InvalidInput(f"{path} is not a Core ML model (.mlpackage or .mlmodelc); the app runs only those")
    plan = {"schema": APP_SCHEMA, "run_id": run_id, "runs": runs, "warmup": warmup, "schedule": schedule,
            "compute_units": list(compute_units), "models": [{"path": p, "bytes": b} for p, b in models.items()]}
    if probes is not None:
        plan["probes"] = probes  # {"path", "count", "shape": [H, W, C], "bytes"}: run before timing, scores written
    return plan


def probes_entry(path: str, inputs: "np.ndarray") -> dict:
    """The plan's probes: `inputs` (N x H x W x C) as the raw little-endian float32 file the app reads at `path`."""
    count, *shape = (int(d) for d in inputs.shape)
    return {"path": path, "count": count, "shape": shape, "bytes": int(inputs.size) * 4}


# --- the app's results ----------------------------------------------------------------
@dataclass
class AppRun:
    """One (model, compute units) timing as the app wrote it: raw figures only."""

    model: str
    compute_units: str
    status: str
    error: str | None = None
    compile_ms: float | None = None
    load_ms: float | None = None
    first_inference_ms: float | None = None
    samples_ms: list[float] = field(default_factory=list)
    thermal_states: list[str] = field(default_factory=list)
    probe_outputs: list[list[float]] | None = None  # the model's scores on the plan's probes (before timing)

    def throttle_reasons(self) -> list[str]:
        seen = [state for state in dict.fromkeys(self.thermal_states) if state in THROTTLING_STATES]
        return [f"the app saw thermal state {state}" for state in seen]


@dataclass
class AppResults:
    run_id: str
    device: dict
    runs: list[AppRun]
    schedule: str = "one_by_one"


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def parse_app_results(text: str, source: str = RESULTS_FILE) -> AppResults:
    """The app's document, checked field by field: what comes off a device is untrusted."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{source} is not JSON ({exc.msg} at line {exc.lineno}); the app may have been killed") from None
    if not isinstance(document, dict) or document.get("schema") != APP_SCHEMA:
        raise ResultsError(f"{source} is not the benchmark app's output (schema {APP_SCHEMA} expected)")
    if document.get("error"):
        raise ResultsError(f"the benchmark app could not run: {document['error']}")
    entries = document.get("runs")
    if not isinstance(entries, list):
        raise ResultsError(f"{source} has no runs list")
    if document.get("schedule") not in SCHEDULES:
        raise ResultsError(f"{source}: schedule must be one of {', '.join(SCHEDULES)}, got {document.get('schedule')!r}")
    runs = []
    for index, entry in enumerate(entries):
        where = f"{source} run {index}"
        if not isinstance(entry, dict):
            raise ResultsError(f"{where} is not an object")
        if not isinstance(entry.get("model"), str) or entry.get("compute_units") not in COMPUTE_UNITS:
            raise ResultsError(f"{where}: needs a model path and compute_units, one of {', '.join(COMPUTE_UNITS)}")
        if entry.get("status") not in ("ok", "failed"):
            raise ResultsError(f"{where}: status must be ok or failed, got {entry.get('status')!r}")
        states = entry.get("thermal_states", [])
        if not isinstance(states, list) or any(state not in THERMAL_STATES for state in states):
            raise ResultsError(f"{where}: thermal_states must be a list of {', '.join(THERMAL_STATES)}")
        timings = {key: entry.get(key) for key in ("compile_ms", "load_ms", "first_inference_ms")}
        if any(value is not None and not _number(value) for value in timings.values()):
            raise ResultsError(f"{where}: compile_ms, load_ms and first_inference_ms must be non-negative numbers")
        samples = entry.get("samples_ms", [])
        if not isinstance(samples, list) or not all(_number(sample) for sample in samples):
            raise ResultsError(f"{where}: samples_ms must be a list of non-negative numbers")
        if entry["status"] == "ok" and not samples:
            raise ResultsError(f"{where}: status ok but no samples_ms")
        error = entry.get("error")
        outputs = entry.get("probe_outputs")
        if outputs is not None and (not isinstance(outputs, list) or not all(
                isinstance(row, list) and row and all(_finite(v) for v in row) for row in outputs)):
            raise ResultsError(f"{where}: probe_outputs must be lists of finite numbers")
        runs.append(AppRun(model=entry["model"], compute_units=entry["compute_units"], status=entry["status"],
                           error=str(error) if error is not None else None,
                           samples_ms=[float(sample) for sample in samples], thermal_states=list(states),
                           probe_outputs=[[float(v) for v in row] for row in outputs] if outputs is not None else None,
                           **timings))
    device = document.get("device") if isinstance(document.get("device"), dict) else {}
    return AppResults(run_id=str(document.get("run_id") or ""), device=device, runs=runs,
                      schedule=document["schedule"])


def outcome_from_run(run: AppRun, device: dict | None = None) -> RunOutcome:
    """One app run as a RunOutcome; a failed run is a RunnerError carrying the app's reason."""
    if run.status != "ok":
        raise RunnerError(f"the benchmark app failed with {run.compute_units}: {run.error or 'no reason given'}")
    extra = {"compute_units": run.compute_units, "compile_ms": run.compile_ms, "app_device": device or None,
             "thermal_states": run.thermal_states}
    return RunOutcome(
        samples_ms=list(run.samples_ms),
        init_ms=run.load_ms,  # loading the compiled model; compiling the package is compile_ms
        first_inference_ms=run.first_inference_ms,
        stop_reason="runs",
        extra={key: value for key, value in extra.items() if value is not None},
        throttle_reasons=run.throttle_reasons(),
    )


# --- launch and wait -----------------------------------------------------------------
def run_app(device: IosDevice, plan: dict, timeout: float = APP_TIMEOUT_S, poll_s: float = 5.0) -> AppResults:
    """Copy the plan, launch the app, wait for this run's done marker, return the app's results."""
    documents = device.workdir
    with tempfile.TemporaryDirectory(prefix="mbdeploy-ios-") as scratch:
        scratch_dir = Path(scratch)
        write_json(scratch_dir / PLAN_FILE, plan)
        device.push(scratch_dir / PLAN_FILE, posixpath.join(documents, PLAN_FILE))
        device.launch_app()
        marker = scratch_dir / DONE_FILE
        deadline = time.monotonic() + timeout
        while not _finished(device, plan["run_id"], marker):
            if time.monotonic() > deadline:
                raise DeviceError(f"the benchmark app on {device.id} did not finish in {timeout:.0f} s")
            time.sleep(poll_s)
        results = scratch_dir / RESULTS_FILE
        device.pull(posixpath.join(device.workdir, RESULTS_FILE), results)
        parsed = parse_app_results(results.read_text())
    if parsed.run_id != plan["run_id"]:
        raise ResultsError(f"{RESULTS_FILE} is from run {parsed.run_id!r}, not this launch's {plan['run_id']!r}")
    if parsed.schedule != plan["schedule"]:
        raise ResultsError(f"the benchmark app timed {parsed.schedule}, not the plan's {plan['schedule']}")
    return parsed


def _finished(device: IosDevice, run_id: str, local: Path) -> bool:
    # A copy tool that does not overwrite would leave an earlier poll's marker: start clean each time.
    local.unlink(missing_ok=True)
    try:
        device.pull(posixpath.join(device.workdir, DONE_FILE), local)
    except DeviceError:
        return False
    return local.exists() and local.read_text().strip() == run_id


# --- the runner ----------------------------------------------------------------------
class CoreMLAppRunner(Runner):
    name = "coreml_app"
    formats = ("coreml",)
    schedule = "round_robin"  # run_many: one launch, the packages loaded together and invoked in turn

    def __init__(self, options: TimingOptions, compute_units: str = DEFAULT_COMPUTE_UNITS,
                 timeout_s: float = APP_TIMEOUT_S, poll_s: float = 5.0, **runner_options: object) -> None:
        if runner_options:
            raise InvalidInput(f"the coreml_app runner takes no {', '.join(sorted(runner_options))} option; "
                               "it takes --compute-units")
        if compute_units not in COMPUTE_UNITS:
            raise InvalidInput(f"unknown compute units {compute_units!r}; allowed: {', '.join(COMPUTE_UNITS)}")
        super().__init__(options)
        self.compute_units = compute_units
        self.timeout_s = timeout_s
        self.poll_s = poll_s

    @property
    def runs(self) -> int:
        return self.options.runs or DEFAULT_RUNS

    def config(self) -> dict:
        # Threads and XNNPACK mean nothing to Core ML; the compute units are what changes the timing.
        return {"name": self.name, "compute_units": self.compute_units, "delegate": self.compute_units,
                "threads": None, "warmup_runs": self.options.warmup_runs, "runs": self.runs}

    def _ios(self, device: Device) -> IosDevice:
        if not isinstance(device, IosDevice):
            raise RunnerError(f"the coreml_app runner needs an iPhone or iPad; {device.id} is a {device.kind} device")
        return device

    def prepare(self, device: Device) -> None:
        self._ios(device)

    def _in_documents(self, phone: IosDevice, remote_model: str) -> str:
        prefix = phone.workdir.rstrip("/") + "/"
        if not remote_model.startswith(prefix):
            raise RunnerError(f"{remote_model} is not in the app's {phone.workdir} folder")
        return remote_model[len(prefix):]

    def cannot_run_inputs(self) -> str | None:
        return None

    def probe_outputs(self, device: Device, remote_model: str, probes: Probes) -> list[list[float]]:
        """One launch with the probes in the plan (one timed run): the app's scores with these compute units."""
        import numpy as np

        phone = self._ios(device)
        path = self._in_documents(phone, remote_model)
        run_id = f"{self.name}-probes-{uuid.uuid4().hex[:12]}"
        remote_probes = posixpath.join(posixpath.dirname(remote_model), f"{run_id}.f32")  # beside the model
        with tempfile.TemporaryDirectory(prefix="mbdeploy-ios-probes-") as scratch:
            local = Path(scratch) / "probes.f32"
            local.write_bytes(np.asarray(probes.inputs, dtype="<f4").tobytes())
            phone.push(local, remote_probes)
        plan = build_plan(run_id, {path: phone.pushed_bytes(remote_model)}, runs=1, warmup=0,
                          compute_units=[self.compute_units],
                          probes=probes_entry(remote_probes[len(phone.workdir.rstrip("/")) + 1:], probes.inputs))
        try:
            results = run_app(phone, plan, timeout=self.timeout_s, poll_s=self.poll_s)
        finally:
            try:
                phone.remove(remote_probes)
            except DeviceError:
                pass
        mine = [run for run in results.runs if run.model == path and run.compute_units == self.compute_units]
        if len(mine) != 1:
            raise RunnerError(f"the benchmark app wrote {len(mine)} results for {path}, expected one")
        if mine[0].status != "ok":
            raise RunnerError(f"the benchmark app failed on the probe inputs: {mine[0].error or 'no reason given'}")
        if mine[0].probe_outputs is None:
            raise RunnerError("the benchmark app wrote no probe_outputs: it was built before probe inputs; "
                              "rebuild and reinstall ios_harness")
        return mine[0].probe_outputs

    def _launch(self, phone: IosDevice, remote_models: list[str], schedule: str) -> tuple[list[str], AppResults]:
        """One launch timing the pushed models; they are removed from the phone afterwards, whatever happened."""
        paths = [self._in_documents(phone, remote) for remote in remote_models]  # nothing outside the app is touched
        try:
            # A fresh id per launch: a done marker left by an earlier launch is never taken for this one's.
            run_id = f"{self.name}-{uuid.uuid4().hex[:12]}"
            plan = build_plan(run_id, {path: phone.pushed_bytes(remote) for path, remote in zip(paths, remote_models)},
                              runs=self.runs, warmup=self.options.warmup_runs, compute_units=[self.compute_units],
                              schedule=schedule)
            return paths, run_app(phone, plan, timeout=self.timeout_s, poll_s=self.poll_s)
        finally:
            for remote in remote_models:
                try:
                    phone.remove(remote)  # frees the phone's storage; the plan already keeps it from being re-timed
                except DeviceError:
                    pass

    def _outcome(self, results: AppResults, path: str) -> RunOutcome:
        mine = [run for run in results.runs if run.model == path and run.compute_units == self.compute_units]
        if len(mine) != 1:
            raise RunnerError(f"the benchmark app wrote {len(mine)} results for {path} with {self.compute_units}, "
                              "expected one")
        outcome = outcome_from_run(mine[0], results.device)
        outcome.extra["schedule"] = results.schedule
        return outcome

    def run(self, device: Device, remote_model: str) -> RunOutcome:
        """Time the model the sweep copied to `remote_model` (a path under the app's Documents folder)."""
        [path], results = self._launch(self._ios(device), [remote_model], "one_by_one")
        return self._outcome(results, path)

    def run_many(self, device: Device, remote_models: list[str]) -> list[RunOutcome | MbdeployError]:
        """A profile's single-layer packages in one launch, timed round robin; an outcome or the error, each."""
        phone = self._ios(device)
        try:
            paths, results = self._launch(phone, list(remote_models), "round_robin")
        except MbdeployError as exc:
            return [exc for _ in remote_models]
        return outcome_or_error_each(paths, lambda path: self._outcome(results, path))
