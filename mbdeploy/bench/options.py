"""How a sweep runs: timing, runner choice, cooldown, throttle thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field

from mbdeploy.runners.base import TimingOptions


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
    repeat: int = 1  # sessions per artifact (--repeat K): K session records and one aggregate each
    check_outputs: bool = False  # --check-outputs: run the probe inputs on the device first (bench.numerics)
    rule: str | None = None  # --rule NAME: grade each record valid/invalid (records.rules)
    runner_options: dict = field(default_factory=dict)  # passed to the runner, e.g. {"binary": "..."}
