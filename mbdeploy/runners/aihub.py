"""The AI Hub runner: one profiling job per model and hosted device, through the pinned `qai-hub` client.

The hub runs the model on a real phone and returns raw per-inference times,
load times, memory ranges and per-layer times with the compute unit of each
layer. The raw times go through our own statistics like every runner's.

Jobs cost money and queue time, so a job is never submitted twice for the
same work: its id is appended to `aihub-jobs.jsonl` in the run folder before
the runner waits, and `bench --resume RUN` re-attaches to it. Rate limits and
transient faults are retried with backoff; a failed job becomes a failed
record carrying the hub's message.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from mbdeploy.atomic import append_line
from mbdeploy.devices.aihub import AihubDevice, hub_error
from mbdeploy.devices.base import Device
from mbdeploy.errors import DeviceError, InvalidInput, RunnerError
from mbdeploy.runners.base import RunOutcome, Runner, TimingOptions

JOURNAL = "aihub-jobs.jsonl"
COMPUTE_UNITS = ("all", "npu", "gpu", "cpu")  # the hub's --compute_unit profile option
SUBMIT_TRIES = 6
JOB_TIMEOUT_S = 3 * 3600.0


def _seconds(name: str, default: float) -> float:
    """A wait the tests shorten through the environment; the defaults suit the real service."""
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def journal_entries(run_dir: Path) -> list[dict]:
    try:
        lines = (run_dir / JOURNAL).read_text().splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash: that job was not waited on, and is resubmitted
        if isinstance(entry, dict) and isinstance(entry.get("job_id"), str):
            entries.append(entry)
    return entries


def outcome_from_profile(profile: dict, job_id: str, job_url: str, hub_device: dict) -> RunOutcome:
    """The client's profile dict (qai_hub's `download_profile()`) as a RunOutcome; times there are in us."""
    summary = profile.get("execution_summary") or {}
    raw = summary.get("all_inference_times") or []
    if not raw or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and t >= 0 for t in raw):
        raise RunnerError(f"AI Hub job {job_id} returned no per-inference times")
    layers = []
    nodes = []  # the layers as op-profile rows, which `mbdeploy profile` maps to the plan's layers
    units: dict[str, int] = {}
    for order, layer in enumerate(profile.get("execution_detail") or []):
        unit = str(layer.get("compute_unit") or "UNSPECIFIED")
        units[unit] = units.get(unit, 0) + 1
        time_us = layer.get("execution_time")
        layers.append({"name": layer.get("name"), "type": layer.get("type"), "compute_unit": unit,
                       "time_ms": time_us / 1e3 if isinstance(time_us, (int, float)) else None})
        if isinstance(time_us, (int, float)) and layer.get("name"):
            nodes.append({"name": f"[{layer['name']}]:{order}", "node_type": layer.get("type") or "UNKNOWN",
                          "run_order": order, "avg_us": float(time_us), "count": 1, "compute_unit": unit})

    def ms(key: str) -> float | None:
        value = summary.get(key)
        return value / 1e3 if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def ranges_mb(key: str) -> list[float] | None:
        value = summary.get(key)
        return [value[0] / 1e6, value[1] / 1e6] if isinstance(value, (list, tuple)) and len(value) == 2 else None

    peak = ranges_mb("inference_memory_peak_range")
    return RunOutcome(
        samples_ms=[t / 1e3 for t in raw],
        init_ms=ms("first_load_time"),
        peak_memory_mb=peak[1] if peak else None,
        stop_reason="runs",
        extra={
            "source": "hosted", "provider": "Qualcomm AI Hub", "hub_device": hub_device,
            "job_id": job_id, "job_url": job_url,
            "warm_load_ms": ms("warm_load_time"), "compile_ms": ms("compile_time"),
            "hub_estimated_inference_ms": ms("estimated_inference_time"),
            "memory_mb": {stage: {"increase": ranges_mb(f"{stage}_memory_increase_range"),
                                  "peak": ranges_mb(f"{stage}_memory_peak_range")}
                          for stage in ("compile", "first_load", "warm_load", "inference")},
            "compute_units": units, "layers": layers, "op_profile": nodes,
            "thermal": "unavailable: a hosted phone's temperatures and clocks are not reported",
        },
    )


class AihubRunner(Runner):
    name = "aihub"
    formats = ("tflite", "onnx")

    def __init__(self, options: TimingOptions, compute_unit: str = "all", op_profiling: bool = True,
                 **runner_options: object) -> None:
        # op_profiling: every hub job profiles per layer (profile=True); `mbdeploy profile` asks for it by name.
        if runner_options:
            raise InvalidInput(f"the aihub runner takes no {', '.join(sorted(runner_options))} option; "
                               "it takes --compute-unit")
        if compute_unit not in COMPUTE_UNITS:
            raise InvalidInput(f"unknown compute unit {compute_unit!r}; allowed: {', '.join(COMPUTE_UNITS)}")
        super().__init__(options)
        self.compute_unit = compute_unit
        self._run_dir: Path | None = None

    def config(self) -> dict:
        # The hub decides its own iteration count and threads; the compute unit is what changes the timing.
        return {"name": self.name, "compute_unit": self.compute_unit, "delegate": self.compute_unit,
                "threads": None, "warmup_runs": None, "runs": None}

    def job_options(self) -> str:
        return "" if self.compute_unit == "all" else f"--compute_unit {self.compute_unit}"

    def bind_run(self, run_dir: Path) -> None:
        self._run_dir = Path(run_dir)

    def prepare(self, device: Device) -> None:
        if not isinstance(device, AihubDevice):
            raise RunnerError(f"the aihub runner times hosted AI Hub devices; {device.id} is a {device.kind} device")
        device.hosted()  # a wrong name or a missing token fails here, before any upload

    def run(self, device: Device, remote_model: str) -> RunOutcome:
        self.prepare(device)
        assert isinstance(device, AihubDevice)
        model = device.uploaded_model(remote_model)
        key = {"device": device.id, "model_id": model.model_id, "config_key": self.config_key()}
        job = self._reattach(device, key) or self._submit(device, model, key)
        status = self._wait(job)
        if not status.success:
            raise RunnerError(f"AI Hub job {job.job_id} on {device.hosted().name} failed: "
                              f"{status.message or status.code} ({job.url})")
        try:
            profile = job.download_profile()
        except Exception as exc:  # noqa: BLE001
            raise hub_error(exc, f"downloading the profile of job {job.job_id}") from None
        return outcome_from_profile(profile, job.job_id, job.url, device.hosted().to_dict())

    def _reattach(self, device: AihubDevice, key: dict):
        """The job an interrupted run already submitted for this work, if any: never pay twice."""
        if self._run_dir is None:
            return None
        for entry in reversed(journal_entries(self._run_dir)):
            if all(entry.get(k) == v for k, v in key.items()):
                try:
                    return device.client().get_job(entry["job_id"])
                except Exception as exc:  # noqa: BLE001
                    raise hub_error(exc, f"re-attaching to job {entry['job_id']}") from None
        return None

    def _submit(self, device: AihubDevice, model, key: dict):  # noqa: ANN001 - the client's Model
        from qai_hub.client import InternalError, RateLimitedError

        delay = _seconds("MBDEPLOY_AIHUB_BACKOFF_S", 20.0)
        for attempt in range(1, SUBMIT_TRIES + 1):
            try:
                job = device.client().submit_inference_job(
                    model, device=device.hub_device(), profile=True, options=self.job_options(),
                    name=f"mbdeploy {model.name}", retry=False)
                break
            except (RateLimitedError, InternalError) as exc:
                if attempt == SUBMIT_TRIES:
                    raise hub_error(exc, "submitting a profiling job") from None
                time.sleep(delay)
                delay *= 2
            except Exception as exc:  # noqa: BLE001
                raise hub_error(exc, "submitting a profiling job") from None
        if self._run_dir is not None:
            # Saved before waiting: an interrupted bench re-attaches instead of submitting again.
            append_line(self._run_dir / JOURNAL, json.dumps({**key, "job_id": job.job_id}))
        return job

    def _wait(self, job):  # noqa: ANN001 - the client's InferenceJob
        poll = _seconds("MBDEPLOY_AIHUB_POLL_S", 5.0)
        deadline = time.monotonic() + _seconds("MBDEPLOY_AIHUB_TIMEOUT_S", JOB_TIMEOUT_S)
        while True:
            try:
                status = job.get_status()
            except Exception as exc:  # noqa: BLE001
                raise hub_error(exc, f"asking for the state of job {job.job_id}") from None
            if status.finished:
                return status
            if time.monotonic() > deadline:
                raise DeviceError(f"AI Hub job {job.job_id} did not finish in time; resume the run later to "
                                  f"re-attach to it ({job.url})")
            time.sleep(poll)
