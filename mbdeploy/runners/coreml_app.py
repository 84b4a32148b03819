"""The Core ML runner for iPhones: the benchmark app (`ios_harness/`) does the timing.

An iPhone has no shell, so this runner does not run a command: it asks the
iOS device to time the model the harness just copied into the app's
container, with a one-model plan, and turns the app's record into a
RunOutcome. The raw samples come back, so the harness computes the latency
statistics exactly as for every other runner.

One runner config is one compute-unit setting: `--compute-units all,cpuOnly`
makes the harness build one runner per setting, and each gives one record
per artifact (the one-record-per-runner-config rule), each with its own
`config_key`.
"""

from __future__ import annotations

import math
import uuid

from mbdeploy.devices.base import Device
from mbdeploy.devices.ios import COMPUTE_UNITS, IosDevice
from mbdeploy.errors import InvalidInput, RunnerError
from mbdeploy.runners.base import RunOutcome, Runner, TimingOptions

DEFAULT_COMPUTE_UNITS = "all"
DEFAULT_RUNS = 50  # the app times a fixed count; it has no adaptive stop
APP_TIMEOUT_S = 1800.0


def _non_negative(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def outcome_from_record(record: dict) -> RunOutcome:
    """The app's (already schema-validated) record as a RunOutcome; a failed record is a RunnerError."""
    units = (record.get("runner") or {}).get("compute_units")
    if record.get("status") != "ok":
        raise RunnerError(f"the benchmark app failed with {units}: {record.get('error') or 'no reason given'}")
    samples = record.get("samples_ms") or []
    if not samples or not all(_non_negative(sample) for sample in samples):
        raise RunnerError("the benchmark app returned no valid samples_ms")
    extra = {"compute_units": units, "compile_ms": record.get("compile_ms"),
             "app_device": record.get("device"), "app_thermal": record.get("thermal")}
    return RunOutcome(
        samples_ms=[float(sample) for sample in samples],
        init_ms=record.get("init_ms"),  # loading the compiled model; compiling the package is compile_ms
        first_inference_ms=record.get("first_inference_ms"),
        peak_memory_mb=record.get("peak_memory_mb"),
        stop_reason=record.get("stop_reason") or "runs",
        extra={key: value for key, value in extra.items() if value is not None},
    )


class CoreMLAppRunner(Runner):
    name = "coreml_app"
    formats = ("coreml",)

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

    def prepare(self, device: Device) -> None:
        if not isinstance(device, IosDevice):
            raise RunnerError(f"the coreml_app runner needs an iPhone or iPad; {device.id} is a {device.kind} device")

    def run(self, device: Device, remote_model: str) -> RunOutcome:
        self.prepare(device)
        assert isinstance(device, IosDevice)
        # A fresh id per launch: a done marker left by an earlier launch is never taken for this one's.
        run_id = f"{self.name}-{uuid.uuid4().hex[:12]}"
        records = device.bench_pushed(remote_model, run_id, runs=self.runs, warmup=self.options.warmup_runs,
                                      compute_units=[self.compute_units], timeout=self.timeout_s, poll_s=self.poll_s)
        mine = [r for r in records if (r.get("runner") or {}).get("compute_units") == self.compute_units]
        if not mine:
            raise RunnerError(f"the benchmark app wrote no record for {remote_model} with {self.compute_units}")
        if len(mine) > 1:
            raise RunnerError(f"the benchmark app timed {len(mine)} copies of {remote_model.rsplit('/', 1)[-1]} "
                              "(files left in its Documents folder by an earlier run); delete the app's data "
                              "(or reinstall it) and bench again")
        return outcome_from_record(mine[0])
