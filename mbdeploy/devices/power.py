"""The power-meter interface: start before the timed loop, stop after it.

A meter that has no sensor says so (`status: unavailable` with a reason); a
figure is never invented.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass


@dataclass
class PowerResult:
    status: str  # "ok", "unavailable" or "refused"
    reason: str | None = None
    source: str | None = None
    avg_power_mw: float | None = None
    idle_power_mw: float | None = None
    energy_mj: float | None = None  # per inference: (load - idle) power x latency
    samples: int | None = None
    quality: str | None = None
    # Pixel on-device power monitor rails over the timed run: channel -> average mW.
    rails_mw: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def unavailable(cls, reason: str) -> "PowerResult":
        return cls(status="unavailable", reason=reason)


class PowerMeter(abc.ABC):
    """A device's power reader. `source` is None when the device has no sensor it can read."""

    source: str | None = None

    @property
    def idle_power_mw(self) -> float | None:
        """The idle baseline from the last `measure_idle`, when one was taken."""
        return None

    def thermal(self) -> dict:
        """Thermal facts the meter's own sampler saw during the last timed run; empty when it samples none."""
        return {}

    @abc.abstractmethod
    def measure_idle(self, seconds: float) -> None:
        """Sample the idle baseline before a model runs."""

    @abc.abstractmethod
    def start(self, limit_s: float | None = None) -> None:
        """Begin the timed window; `limit_s`: the longest the run may take (a device-side sampler ends by then)."""

    @abc.abstractmethod
    def stop(self, inferences: int, latency_ms: float) -> PowerResult: ...
