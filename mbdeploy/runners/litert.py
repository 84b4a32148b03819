"""The LiteRT runner for Linux devices: a Python script pushed to the device.

The device side (`mbdeploy/device_side/litert_runner.py`) loads the model
with `ai_edge_litert`, times every invoke and prints one JSON line. This side
pushes the script, runs it with the device's Python through `Device.shell`
(an argv list, quoted by the device) and checks what came back, because
output from a device is untrusted.
"""

from __future__ import annotations

import json
import math
import posixpath
from pathlib import Path
from typing import Iterable, Iterator

from mbdeploy.devices.base import Device
from mbdeploy.errors import InvalidInput, MbdeployError, RunnerError
from mbdeploy.runners.base import Probes, RunOutcome, Runner

DEVICE_SCRIPT = Path(__file__).resolve().parents[1] / "device_side" / "litert_runner.py"
DEVICE_SCHEMA = "mbdeploy.litert_runner/1"
# Beyond the timed loop the script imports LiteRT and loads the model; give it this much on top of max_secs.
STARTUP_ALLOWANCE_S = 120.0
FIXED_RUNS_TIMEOUT_S = 3600.0


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _script_lines(lines: Iterable[str]) -> Iterator[dict]:
    """The device script's JSON objects among `lines`, in the order given; other lines (log noise) are passed over."""
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("schema") == DEVICE_SCHEMA:
            yield data


def parse_outputs(stdout: str) -> list[dict]:
    """Every result line of a several-model run, in the order of the --model arguments.

    By order, not by the path a line names: a device may see our path under
    another name (a sandbox, a symlinked folder).
    """
    return list(_script_lines(stdout.splitlines()))


def parse_output(stdout: str, stderr: str = "") -> dict:
    """The script's JSON line (the last line that parses as an object); RunnerError otherwise."""
    for data in _script_lines(reversed(stdout.strip().splitlines())):
        return data
    tail = (stderr.strip().splitlines() or stdout.strip().splitlines() or ["no output"])[-1]
    raise RunnerError(f"litert runner printed no result: {tail}")


def outcome_from_output(data: dict) -> RunOutcome:
    if "error" in data:
        hint = ""
        if "No module named" in str(data["error"]):
            hint = "; install it for the device's Python: pip install ai-edge-litert numpy (or set ?python=PATH)"
        raise RunnerError(f"litert runner failed on the device: {data['error']}{hint}")
    samples = data.get("samples_ms")
    if not isinstance(samples, list) or not samples or not all(_finite_number(s) and s >= 0 for s in samples):
        raise RunnerError("litert runner returned no valid samples_ms (a non-empty list of non-negative numbers)")
    for key in ("init_ms", "first_inference_ms", "peak_memory_mb"):
        if data.get(key) is not None and not (_finite_number(data[key]) and data[key] >= 0):
            raise RunnerError(f"litert runner returned an invalid {key}: {data[key]!r}")
    reason = data.get("stop_reason")
    if reason not in ("target_ci", "max_secs", "runs"):
        raise RunnerError(f"litert runner returned an unknown stop_reason {reason!r}")
    extra = {key: data[key] for key in ("import_ms", "loop_s", "inputs", "python", "numpy", "schedule") if key in data}
    if isinstance(data.get("loop_energy"), dict):
        extra["loop_energy"] = data["loop_energy"]  # checked where it becomes a power figure (sensors.loop_power)
    return RunOutcome(
        samples_ms=[float(s) for s in samples],
        init_ms=data.get("init_ms"),
        first_inference_ms=data.get("first_inference_ms"),
        peak_memory_mb=data.get("peak_memory_mb"),
        stop_reason=reason,
        extra=extra,
    )


PID_NAME = "litert_runner"  # the pid file a phone keeps for this runner (devices/leftovers.py)


class LiteRTRunner(Runner):
    name = "litert"
    schedule = "round_robin"
    reads_npy_probes = True  # the device script loads them with numpy

    def __init__(self, options, sysfs_root: str | None = None, **runner_options: object) -> None:  # noqa: ANN001
        if runner_options:
            raise InvalidInput(f"the litert runner takes no {', '.join(sorted(runner_options))} option; "
                               "choose the --runner that does (benchmark_model/benchmark_app: binary, apk, delegate, "
                               "op_profiling, cpu_mask; coreml_app: compute_units)")
        super().__init__(options)
        self.sysfs_root = sysfs_root  # where the device script reads RAPL; tests point it at a fake tree
        self._scripts: dict[str, str] = {}  # device id -> script path on that device

    def config(self) -> dict:
        return {**super().config(), "delegate": "xnnpack" if self.options.xnnpack else "none"}

    def prepare(self, device: Device) -> None:
        remote = posixpath.join(device.workdir, "runners", DEVICE_SCRIPT.name)
        device.push(DEVICE_SCRIPT, remote)
        self._scripts[device.id] = remote

    def command(self, device: Device, remote_model: str | list[str]) -> list[str]:
        options = self.options
        models = [remote_model] if isinstance(remote_model, str) else remote_model
        argv = [device.python, self._scripts[device.id], *[arg for m in models for arg in ("--model", m)],
                "--threads", str(options.threads), "--warmup", str(options.warmup_runs),
                "--min-secs", str(options.min_secs), "--max-secs", str(options.max_secs),
                "--target-ci", str(options.target_ci)]
        if options.runs is not None:
            argv += ["--runs", str(options.runs)]
        if not options.xnnpack:
            argv.append("--no-xnnpack")
        if self.sysfs_root:
            argv += ["--sysfs-root", self.sysfs_root]
        return argv

    def time_limit_s(self) -> float:
        # A fixed run count has no time budget; still bound it so a hung device cannot stall a sweep forever.
        budget = FIXED_RUNS_TIMEOUT_S if self.options.runs is not None else self.options.max_secs
        return budget + STARTUP_ALLOWANCE_S

    def run(self, device: Device, remote_model: str) -> RunOutcome:
        if device.id not in self._scripts:
            self.prepare(device)
        limit = self.time_limit_s()
        result = device.shell(device.bounded(self.command(device, remote_model), limit, PID_NAME), timeout=limit + 30)
        return outcome_from_output(parse_output(result.stdout, result.stderr))

    def cannot_run_inputs(self) -> str | None:
        return None

    def probe_outputs(self, device: Device, remote_model: str, probes: Probes) -> list[list[float]]:
        if device.id not in self._scripts:
            self.prepare(device)
        if probes.remote is None:
            raise RunnerError("the litert runner reads its probe inputs from a .npy pushed to the device; none was")
        argv = self.command(device, remote_model) + ["--probes", probes.remote]
        result = device.shell(device.bounded(argv, STARTUP_ALLOWANCE_S, PID_NAME), timeout=STARTUP_ALLOWANCE_S + 30)
        data = parse_output(result.stdout, result.stderr)
        if "error" in data:
            raise RunnerError(f"litert runner failed on the probe inputs: {data['error']}")
        outputs = data.get("probe_outputs")
        if (not isinstance(outputs, list) or not outputs
                or not all(isinstance(row, list) and row and all(_finite_number(v) for v in row) for row in outputs)):
            raise RunnerError("litert runner returned no valid probe_outputs (lists of finite numbers)")
        return outputs

    def run_many(self, device: Device, remote_models: list[str]) -> list[RunOutcome | MbdeployError]:
        """All the models in one device process, invoked in turn (round robin): one start, the graph's caches.

        The timing options bound the whole loop (--min-secs, --max-secs), not each model.
        """
        if not remote_models:
            return []
        if device.id not in self._scripts:
            self.prepare(device)
        budget = FIXED_RUNS_TIMEOUT_S if self.options.runs is not None else self.options.max_secs
        # One loop for all; loading each model gets a little on top.
        timeout = STARTUP_ALLOWANCE_S + budget + len(remote_models) * 10.0
        try:
            argv = [*self.command(device, remote_models), "--round-robin"]
            result = device.shell(device.bounded(argv, timeout, PID_NAME), timeout=timeout + 30)
        except MbdeployError as exc:
            return [exc for _ in remote_models]
        found = parse_outputs(result.stdout)
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        outcomes: list[RunOutcome | MbdeployError] = []
        for index, remote in enumerate(remote_models):
            if index >= len(found):
                outcomes.append(RunnerError(f"litert runner printed no result for {remote}: {tail}"))
                continue
            try:
                outcomes.append(outcome_from_output(found[index]))
            except MbdeployError as exc:
                outcomes.append(exc)
        return outcomes
