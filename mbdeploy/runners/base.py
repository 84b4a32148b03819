"""The runner interface every timing tool fits behind.

A runner runs on the device and only loads, times and reports; the host
decides, computes statistics and stores records (STYLE.md section 6).
Runners that time every invoke return `samples_ms`; runners that print only a
summary (the official `benchmark_model`) return `summary_ms` instead, with the
keys of the record's `latency_ms` they know and None for the rest.
"""

from __future__ import annotations

import abc
import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, TypeVar

from mbdeploy.devices.base import Device
from mbdeploy.errors import MbdeployError, RunnerError

T = TypeVar("T")

if TYPE_CHECKING:
    import numpy as np


@dataclass
class TimingOptions:
    """How long and how hard to run one model."""

    threads: int = 1
    xnnpack: bool = True
    warmup_runs: int = 5
    min_secs: float = 1.0
    max_secs: float = 10.0
    runs: int | None = None  # a fixed count overrides adaptive stopping
    target_ci: float = 0.02  # stop when the 95% CI half-width of the median <= this fraction


@dataclass
class RunOutcome:
    """What a runner measured for one model on one device."""

    samples_ms: list[float] | None = None
    summary_ms: dict | None = None
    init_ms: float | None = None
    first_inference_ms: float | None = None
    peak_memory_mb: float | None = None
    stop_reason: str | None = None  # "target_ci", "max_secs", "runs", or the runner's own
    extra: dict = field(default_factory=dict)  # e.g. delegate coverage, op profile
    # Throttling the runner itself saw (e.g. the iOS app's thermal state); joins the sensors' verdict.
    throttle_reasons: list[str] = field(default_factory=list)


@dataclass
class Probes:
    """Chosen inputs to run on the device (bench --check-outputs, eval --device).

    `inputs` is float32 N x H x W x C as the manifest's preprocessing gives it, on
    the host; `remote` is the same array already pushed to the device as a .npy
    (for runners with `reads_npy_probes`, else None: they push their own files);
    `model` the artifact's file on the host (its tensor types and quantization).
    """

    inputs: "np.ndarray"
    remote: str | None
    model: Path


def outcome_or_error_each(items: Iterable[T], outcome: Callable[[T], RunOutcome]) -> list[RunOutcome | MbdeployError]:
    """`outcome(item)` for each item, or the error it raised: one model's failure never hides the others'."""
    results: list[RunOutcome | MbdeployError] = []
    for item in items:
        try:
            results.append(outcome(item))
        except MbdeployError as exc:
            results.append(exc)
    return results


class Runner(abc.ABC):
    name: str = "abstract"
    formats: tuple[str, ...] = ("tflite",)  # the artifact formats this runner can time
    # How `run_many` times several models: "one_by_one" (each alone, back to back) or "round_robin"
    # (loaded together, invoked in turn, so each runs with the caches the others leave, as in a graph).
    schedule: str = "one_by_one"
    reads_npy_probes: bool = False  # probe_outputs reads the inputs as a .npy pushed to the device (Probes.remote)

    def __init__(self, options: TimingOptions) -> None:
        self.options = options

    def config(self) -> dict:
        """The runner configuration stored in each record (and matched by `compare`)."""
        return {"name": self.name, **asdict(self.options)}

    def config_key(self) -> str:
        """A short stable hash of the config, excluding knobs that do not change what is timed."""
        relevant = {k: v for k, v in self.config().items() if k not in {"min_secs", "max_secs", "runs", "target_ci"}}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]

    def bind_run(self, run_dir: Path) -> None:
        """The run folder this runner times for; runners that keep state across a resume keep it there."""

    def time_limit_s(self) -> float:
        """The longest one run of a model may take; the device-side processes of the run end by then."""
        return self.options.max_secs * 2 + 120

    @abc.abstractmethod
    def prepare(self, device: Device) -> None:
        """Put what the runner needs on the device (once per device and run)."""

    @abc.abstractmethod
    def run(self, device: Device, remote_model: str) -> RunOutcome:
        """Time the model already pushed to `remote_model` on the device."""

    def with_options(self, options: TimingOptions) -> "Runner":
        """The same runner (same device state) timing with other options, e.g. a profile's layer budget."""
        other = copy.copy(self)
        other.options = options
        return other

    def cannot_run_inputs(self) -> str | None:
        """Why this runner cannot run chosen inputs (probe_outputs), or None when it can."""
        return f"the {self.name} runner cannot run probe inputs yet"

    def probe_outputs(self, device: Device, remote_model: str, probes: Probes) -> list[list[float]]:
        """The model's float outputs on the probe inputs, one list per probe, run with this runner's own
        settings (threads, delegate) as the timed run (bench --check-outputs, eval --device).

        A runner that cannot feed chosen inputs says so: the record then says the outputs were not checked.
        """
        raise RunnerError(f"the {self.name} runner cannot run probe inputs yet")

    def run_many(self, device: Device, remote_models: list[str]) -> list[RunOutcome | MbdeployError]:
        """Time several pushed models in turn (a profile's single-layer models): an outcome or the error, each.

        By default one `run` each; a runner that can time several models in one
        device process overrides this to pay its start-up once.
        """
        return outcome_or_error_each(remote_models, lambda remote: self.run(device, remote))
