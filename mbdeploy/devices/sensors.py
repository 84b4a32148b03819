"""Linux sensors from sysfs: thermal zones, CPU frequencies, RAPL and hwmon power.

Everything works on a *snapshot*: a dict from absolute sysfs path to the
file's text. A local snapshot reads files under a root folder (tests point it
at a fake tree); an ssh device builds the same dict from one remote shell
script (`SNAPSHOT_SCRIPT`). The parsers never care where the text came from.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable

from mbdeploy.devices.base import SensorReading
from mbdeploy.devices.power import PowerMeter, PowerResult

THERMAL_GLOBS = ("/sys/class/thermal/thermal_zone*/type", "/sys/class/thermal/thermal_zone*/temp")
CPUFREQ_GLOBS = (
    "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq",
    "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor",
)
RAPL_GLOBS = ("/sys/class/powercap/intel-rapl*/name", "/sys/class/powercap/intel-rapl*/energy_uj",
              "/sys/class/powercap/intel-rapl*/max_energy_range_uj")
HWMON_GLOBS = ("/sys/class/hwmon/hwmon*/name", "/sys/class/hwmon/hwmon*/power*_input")
SENSOR_GLOBS = THERMAL_GLOBS + CPUFREQ_GLOBS
POWER_GLOBS = RAPL_GLOBS + HWMON_GLOBS

Snapshot = dict[str, str]


def read_snapshot(globs: tuple[str, ...], root: Path | str = "/") -> Snapshot:
    """Read every readable file matching the globs under `root`; keys are paths as seen on the device."""
    root = str(root)
    files: Snapshot = {}
    for pattern in globs:
        for found in sorted(glob.glob(os.path.join(root, pattern.lstrip("/")))):
            try:
                with open(found) as handle:
                    text = handle.read().strip()
            except OSError:
                continue  # e.g. RAPL energy_uj is root-only since Linux 5.10
            files["/" + os.path.relpath(found, root)] = text
    return files


def snapshot_script(globs: tuple[str, ...]) -> str:
    """A fixed POSIX sh script printing `path<TAB>value` per readable file (for remote devices).

    The script contains no user input; it is passed as one quoted word to `sh -c`.
    """
    patterns = " ".join(globs)
    return (
        f"for f in {patterns}; do "
        '[ -r "$f" ] && v=$(cat "$f" 2>/dev/null) && printf "%s\\t%s\\n" "$f" "$v"; '
        "done; true"
    )


def parse_snapshot_output(text: str) -> Snapshot:
    files: Snapshot = {}
    for line in text.splitlines():
        path, sep, value = line.partition("\t")
        if sep and path.startswith("/sys/"):
            files[path] = value.strip()
    return files


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def parse_thermal(files: Snapshot) -> dict[str, float]:
    """Zone type (or folder name) -> degrees Celsius; sysfs reports millidegrees."""
    temperatures: dict[str, float] = {}
    for path, text in sorted(files.items()):
        match = re.fullmatch(r"/sys/class/thermal/(thermal_zone\d+)/temp", path)
        value = _number(text)
        if not match or value is None:
            continue
        zone = match.group(1)
        name = files.get(f"/sys/class/thermal/{zone}/type") or zone
        if name in temperatures:
            name = f"{name}:{zone}"
        temperatures[name] = value / 1000.0
    return temperatures


def parse_cpufreq(files: Snapshot) -> dict[str, int]:
    frequencies: dict[str, int] = {}
    for path, text in files.items():
        match = re.fullmatch(r"/sys/devices/system/cpu/(cpu\d+)/cpufreq/scaling_cur_freq", path)
        value = _number(text)
        if match and value is not None:
            frequencies[match.group(1)] = int(value)
    return dict(sorted(frequencies.items(), key=lambda item: int(item[0][3:])))


def parse_governor(files: Snapshot) -> str | None:
    governors = sorted({text for path, text in files.items() if path.endswith("/cpufreq/scaling_governor") and text})
    return ",".join(governors) if governors else None


def reading_from_snapshot(files: Snapshot) -> SensorReading:
    return SensorReading(temperatures_c=parse_thermal(files), cpu_freq_khz=parse_cpufreq(files))


def read_sensors(root: Path | str = "/") -> SensorReading:
    return reading_from_snapshot(read_snapshot(SENSOR_GLOBS, root))


def parse_rapl(files: Snapshot) -> dict[str, tuple[int, int | None]]:
    """Top-level RAPL zones -> (energy_uj, max_energy_range_uj).

    Sub-zones (intel-rapl:0:0, core/uncore/dram) are inside their package, so
    only top-level zones count; when package zones exist, `psys` (the whole
    platform, which contains the packages) is left out to avoid counting twice.
    """
    zones: dict[str, tuple[str, int, int | None]] = {}
    for path, text in files.items():
        match = re.fullmatch(r"/sys/class/powercap/(intel-rapl:\d+)/energy_uj", path)
        value = _number(text)
        if not match or value is None:
            continue
        zone = match.group(1)
        name = files.get(f"/sys/class/powercap/{zone}/name", zone)
        wrap = _number(files.get(f"/sys/class/powercap/{zone}/max_energy_range_uj"))
        zones[zone] = (name, int(value), int(wrap) if wrap else None)
    if any(name.startswith("package") for name, _, _ in zones.values()):
        zones = {zone: entry for zone, entry in zones.items() if not entry[0].startswith("psys")}
    return {f"{zone}/{name}": (energy, wrap) for zone, (name, energy, wrap) in sorted(zones.items())}


def parse_hwmon_power(files: Snapshot) -> dict[str, float]:
    """hwmon power inputs -> microwatts (the sysfs unit)."""
    powers: dict[str, float] = {}
    for path, text in files.items():
        match = re.fullmatch(r"/sys/class/hwmon/(hwmon\d+)/(power\d+)_input", path)
        value = _number(text)
        if match and value is not None:
            name = files.get(f"/sys/class/hwmon/{match.group(1)}/name", match.group(1))
            powers[f"{match.group(1)}/{name}/{match.group(2)}"] = value
    return dict(sorted(powers.items()))


def rapl_energy_delta_uj(before: dict[str, tuple[int, int | None]], after: dict[str, tuple[int, int | None]]) -> float:
    """Energy spent between two RAPL readings, across counter wrap-around."""
    total = 0.0
    for zone, (start, wrap) in before.items():
        if zone not in after:
            continue
        end = after[zone][0]
        delta = end - start
        if delta < 0 and wrap:
            delta += wrap
        total += max(delta, 0)
    return total


class RaplPowerMeter(PowerMeter):
    """Average power from RAPL energy counters, or hwmon power inputs when there is no RAPL.

    RAPL counts energy, so two readings bracket the window exactly. hwmon
    reports instantaneous power, so a thread samples it during the window.
    With neither readable, every result is `unavailable` with the reason.
    """

    def __init__(self, snapshot: Callable[[], Snapshot] | None = None, root: Path | str = "/",
                 sample_interval_s: float = 0.1, where: str | None = None) -> None:
        self._snapshot = snapshot or (lambda: read_snapshot(POWER_GLOBS, root))
        self._interval = sample_interval_s
        self._where = where or str(root)
        files = self._snapshot()
        if parse_rapl(files):
            self.source: str | None = "rapl"
        elif parse_hwmon_power(files):
            self.source = "hwmon"
        else:
            self.source = None
        self._idle_mw: float | None = None
        self._start: tuple[float, Snapshot] | None = None
        self._samples: list[float] = []
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()

    @property
    def idle_power_mw(self) -> float | None:
        return self._idle_mw

    @property
    def reason(self) -> str:
        return (f"no readable RAPL energy counter (/sys/class/powercap/intel-rapl*/energy_uj) "
                f"or hwmon power*_input sensor on {self._where}")

    def measure_idle(self, seconds: float) -> None:
        if self.source is None or seconds <= 0:
            return
        self.start()
        time.sleep(seconds)
        result = self._finish()
        self._idle_mw = result[0] if result else None

    def start(self, limit_s: float | None = None) -> None:
        if self.source is None:
            return
        self._samples = []
        self._start = (time.monotonic(), self._snapshot())
        if self.source == "hwmon":
            self._stop_event.clear()
            self._thread = threading.Thread(target=self._sample_hwmon, daemon=True)
            self._thread.start()

    def _sample_hwmon(self) -> None:
        while not self._stop_event.wait(self._interval):
            powers = parse_hwmon_power(self._snapshot())
            if powers:
                self._samples.append(sum(powers.values()))

    def _finish(self) -> tuple[float, int] | None:
        """(average mW, sample count) over the window since start(), or None."""
        if self._start is None:
            return None
        started, first = self._start
        self._start = None
        if self.source == "rapl":
            last = self._snapshot()
            seconds = time.monotonic() - started
            if seconds <= 0:
                return None
            energy_uj = rapl_energy_delta_uj(parse_rapl(first), parse_rapl(last))
            return energy_uj / seconds / 1000.0, 2  # uJ/s = uW; /1000 -> mW
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
        if not self._samples:
            return None
        return sum(self._samples) / len(self._samples) / 1000.0, len(self._samples)

    def stop(self, inferences: int, latency_ms: float | None) -> PowerResult:
        if self.source is None:
            return PowerResult.unavailable(self.reason)
        result = self._finish()
        if result is None:
            return PowerResult.unavailable(f"{self.source} window too short to read on {self._where}")
        avg_mw, samples = result
        energy, how = energy_per_inference(avg_mw, self._idle_mw, latency_ms)
        quality = f"process window (includes model load); {how}"
        return PowerResult(status="ok", source=self.source, avg_power_mw=avg_mw, idle_power_mw=self._idle_mw,
                           energy_mj=energy, samples=samples, quality=quality)


def energy_per_inference(avg_mw: float, idle_mw: float | None, latency_ms: float | None) -> tuple[float | None, str]:
    """(energy in mJ or None, how it was obtained): (load - idle) power x latency, never a guess."""
    if not latency_ms or latency_ms <= 0:
        return None, "no latency to divide by; no energy figure"
    if idle_mw is None:
        return avg_mw * latency_ms / 1000.0, "gross power, no idle baseline"  # mW x ms = uJ; /1000 -> mJ
    if avg_mw > idle_mw:
        return (avg_mw - idle_mw) * latency_ms / 1000.0, "load minus idle"
    return None, "load power not above idle baseline; no energy figure"


def loop_power(loop_energy: dict, idle_mw: float | None, latency_ms: float | None) -> PowerResult | None:
    """A PowerResult from RAPL energy the device read around exactly its timed loop; None if malformed."""
    energy_uj, seconds = loop_energy.get("energy_uj"), loop_energy.get("seconds")
    if not isinstance(energy_uj, (int, float)) or energy_uj < 0 or not isinstance(seconds, (int, float)) or seconds <= 0:
        return None
    avg_mw = energy_uj / seconds / 1000.0
    energy, how = energy_per_inference(avg_mw, idle_mw, latency_ms)
    zones = ",".join(str(zone) for zone in loop_energy.get("zones", []))
    return PowerResult(status="ok", source=f"rapl ({zones}) read on the device around the timed loop",
                       avg_power_mw=avg_mw, idle_power_mw=idle_mw, energy_mj=energy, samples=2,
                       quality=f"timed loop only; {how}")

