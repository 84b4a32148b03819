"""Thermal control: the throttle verdict of one run, and the cooldown between runs."""

from __future__ import annotations

import time

from mbdeploy.devices.base import Device, SensorReading


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
