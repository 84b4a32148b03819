"""Phone power from the battery fuel gauge, sampled on the device, computed on the host.

The device runs `device_side/android_sampler.sh` (current_now in uA and
voltage_now in uV at ~20 Hz, thermal zones, thermal status, Pixel rails); the
host pulls its file and decides everything:

- the sign of current_now differs between vendors, so it is found per device
  from idle vs load (discharge grows under load) and recorded;
- idle power is measured before each model, average power under load during
  the timed loop; energy per inference = (load - idle) power x latency;
- a figure is refused while the phone is charging over USB (the gauge then
  measures the charger, not the model) unless allow_charging.
"""

from __future__ import annotations

import math
import re
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mbdeploy.errors import DeviceError, MbdeployError
from mbdeploy.devices.leftovers import bounded, pid_file
from mbdeploy.devices.power import PowerMeter, PowerResult

SAMPLER_NAME = "android_sampler.sh"
# Same lookup as the sampler: $MBDEPLOY_SYSFS (the adb test device's stand-in) or /sys.
_PROBE = 'b="${MBDEPLOY_SYSFS:-/sys}/class/power_supply/battery"; [ -r "$b/current_now" ] && [ -r "$b/voltage_now" ]'
MIN_SAMPLES = 10
MIN_RATE_HZ = 10.0
# Without a run limit (a caller that gives none), the sampler still ends by itself after this long.
DEFAULT_LIMIT_S = 600.0
# Slack beyond the run limit for the sampler's own start and end (thermal zones, dumpsys).
SAMPLER_SLACK_S = 30.0


@dataclass
class SamplerTrace:
    """One sampler file, parsed."""

    battery: list[tuple[float, int, int]] = field(default_factory=list)  # (uptime s, current_now, voltage_now)
    zones: dict[str, str] = field(default_factory=dict)  # index -> type
    temperatures: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # type -> [(s, deg C)]
    thermal_status: dict[str, int | None] = field(default_factory=dict)  # START/END -> status
    complete: bool = False

    @property
    def duration_s(self) -> float:
        return self.battery[-1][0] - self.battery[0][0] if len(self.battery) > 1 else 0.0

    @property
    def rate_hz(self) -> float:
        return (len(self.battery) - 1) / self.duration_s if self.duration_s > 0 else 0.0

    def max_temperature_c(self) -> float | None:
        values = [t for series in self.temperatures.values() for _, t in series]
        return max(values) if values else None


def parse_sampler(text: str) -> SamplerTrace:
    """The sampler's line format (see the script's header); lines with NA or junk are skipped."""
    trace = SamplerTrace()
    for line in text.splitlines():
        parts = line.split()
        try:
            if parts[:1] == ["b"] and len(parts) == 4:
                trace.battery.append((float(parts[1]), int(parts[2]), int(parts[3])))
            elif parts[:1] == ["zone"] and len(parts) >= 3:
                trace.zones[parts[1]] = parts[2]
            elif parts[:1] == ["t"] and len(parts) == 4:
                name = trace.zones.get(parts[2], f"zone{parts[2]}")
                millideg = int(parts[3])
                celsius = millideg / 1000 if abs(millideg) >= 200 else float(millideg)
                if -40 < celsius < 150:
                    trace.temperatures.setdefault(name, []).append((float(parts[1]), celsius))
            elif parts[:1] == ["status"] and len(parts) == 3:
                trace.thermal_status[parts[1]] = int(parts[2]) if parts[2].isdigit() else None
            elif parts[:1] == ["end"]:
                trace.complete = True
        except ValueError:
            continue
    return trace


def _to_si_scale(trace: SamplerTrace) -> float:
    """Factor turning current x voltage into mW: uA x uV normally; a few gauges report mA and mV."""
    voltages = [v for _, _, v in trace.battery]
    if voltages and statistics.median(voltages) < 100_000:  # < 100 000 uV cannot be a Li-ion cell: mV
        return 1e-3  # mA x mV = uW, x 1e-3 -> mW
    return 1e-9  # uA x uV = pW x 1e-9 -> mW


def discharge_sign(idle: SamplerTrace, load: SamplerTrace) -> tuple[int, str]:
    """+1 if positive current_now means discharge on this device, -1 if negative does; and how it was decided."""
    idle_mean = statistics.fmean(c for _, c, _ in idle.battery)
    load_mean = statistics.fmean(c for _, c, _ in load.battery)
    spread = statistics.pstdev([c for _, c, _ in idle.battery]) if len(idle.battery) > 1 else 0.0
    if abs(load_mean - idle_mean) > max(spread, 1.0):
        return (1 if load_mean > idle_mean else -1), "idle vs load"
    # No clear change under load: a discharging gauge still reads non-zero with the discharge sign.
    return (1 if idle_mean > 0 else -1), "sign of the idle reading"


def power_mw(trace: SamplerTrace, sign: int) -> float:
    scale = _to_si_scale(trace)
    return statistics.fmean(sign * c * v * scale for _, c, v in trace.battery)


# The PowerStats HAL's `dumpsys ... delta` energy-meter section (Pixel ODPM rails),
# as Google's hardware/google/pixel powerstats prints it: an "Elapsed time: N ms"
# line, then one "<channel>  <cumulative> mWs (<delta>)" line per rail.
_RAIL_SECTION = re.compile(r"=+ PowerStats HAL 2\.0 energy meter =+(.*?)=+ End of PowerStats HAL 2\.0 energy meter", re.S)
_RAIL_LINE = re.compile(r"^\s*(?P<channel>\S.*?)\s+(?P<total>-?[\d.]+) mWs \(\s*(?P<delta>-?[\d.]+)\)\s*$", re.M)


def parse_rails(text: str) -> dict[str, float] | None:
    """Average power per rail (mW) over the delta window, or None without an energy-meter section."""
    section = _RAIL_SECTION.search(text)
    if not section:
        return None
    elapsed = re.search(r"Elapsed time:\s*(\d+)\s*ms", section.group(1))
    if not elapsed or int(elapsed.group(1)) <= 0:
        return None
    seconds = int(elapsed.group(1)) / 1000.0
    # delta is in mWs (= mJ); over the elapsed seconds that is mW.
    return {m["channel"].strip(): round(float(m["delta"]) / seconds, 3) for m in _RAIL_LINE.finditer(section.group(1))}


def compute(idle: SamplerTrace, load: SamplerTrace, latency_ms: float, charging: bool = False) -> PowerResult:
    """The record's power figures from an idle and a load trace."""
    if len(idle.battery) < 2 or len(load.battery) < 2:
        few = "idle" if len(idle.battery) < 2 else "the timed run"
        return PowerResult.unavailable(
            f"fewer than 2 battery samples during {few}: too short for the sampling interval, "
            "or the phone has no readable current_now/voltage_now"
        )
    sign, how = discharge_sign(idle, load)
    idle_mw = power_mw(idle, sign)
    load_mw = power_mw(load, sign)
    problems = []
    if len(load.battery) < MIN_SAMPLES:
        problems.append(f"only {len(load.battery)} samples under load")
    if load.rate_hz < MIN_RATE_HZ:
        problems.append(f"sampled at {load.rate_hz:.1f} Hz (< {MIN_RATE_HZ:.0f})")
    if len({c for _, c, _ in load.battery}) < 3:
        problems.append("current_now barely changed (the fuel gauge refreshes slower than the run)")
    if load_mw <= idle_mw:
        problems.append("load power not above idle")
    if charging:
        problems.append("measured while charging (--allow-charging)")
    if not latency_ms or latency_ms <= 0:
        problems.append("no latency to turn power into energy per inference")
    convention = "positive" if sign > 0 else "negative"
    return PowerResult(
        status="ok",
        source=f"battery current_now x voltage_now ({convention} current = discharge, from {how})",
        avg_power_mw=round(load_mw, 3),
        idle_power_mw=round(idle_mw, 3),
        # Energy only for a load measurably above idle: a zero or negative figure would mean nothing.
        energy_mj=round((load_mw - idle_mw) * latency_ms / 1000.0, 6) if latency_ms and latency_ms > 0 and load_mw > idle_mw else None,
        samples=len(load.battery),
        quality="good" if not problems else "low: " + "; ".join(problems),
    )


def sampler_source() -> Path:
    return Path(__file__).resolve().parents[1] / "device_side" / SAMPLER_NAME


class AndroidPowerMeter(PowerMeter):
    """Runs the sampler on the phone around the timed loop (the host never samples over adb itself)."""

    def __init__(self, device, allow_charging: bool = False, interval_s: float = 0.05, shared: dict | None = None) -> None:
        self.device = device
        self.allow_charging = allow_charging
        self.interval_s = interval_s
        # What stays true for the device across models (the gauge probe, the pushed sampler); per-model state below.
        self._shared = shared if shared is not None else {}
        self._refusal: str | None = None
        self._charging = False
        self._idle: SamplerTrace | None = None
        self.last_load: SamplerTrace | None = None

    @property
    def source(self) -> str | None:
        """What the meter reads, or None when the phone exposes no battery current (the harness then skips it)."""
        if "source" not in self._shared:
            probe = self.device.shell(["sh", "-c", _PROBE])
            self._shared["source"] = "battery current_now x voltage_now" if probe.ok else None
        return self._shared["source"]

    def _folder(self) -> str:
        return f"{self.device.workdir}/power"

    def _ensure_sampler(self) -> str:
        if "sampler" not in self._shared:
            remote = f"{self._folder()}/{SAMPLER_NAME}"
            self.device.push(sampler_source(), remote)
            self._shared["sampler"] = remote
        return self._shared["sampler"]

    def _check_charging(self) -> None:
        battery = self.device.battery()
        self._charging = bool(battery.get("charging"))
        if self._charging and not self.allow_charging:
            by = "/".join(battery.get("powered_by") or ["USB"])
            self._refusal = (
                f"the phone is charging ({by} powered), so the battery gauge measures the charger; "
                "use adb over Wi-Fi or a switchable USB hub, or pass --allow-charging"
            )
        else:
            self._refusal = None

    def _pull_trace(self, remote: str) -> SamplerTrace:
        with tempfile.TemporaryDirectory(prefix="mbdeploy-power-") as tmp:
            local = Path(tmp) / "trace.txt"
            self.device.pull(remote, local)
            return parse_sampler(local.read_text())

    def _max_samples(self, seconds: float) -> int:
        """The sampler's size cap: every battery sample it can take in `seconds`, with room to spare."""
        return int(math.ceil(seconds / self.interval_s) * 2) + 1000

    def _sampler_argv(self, out: str, mode: str, arg: str, seconds: float, name: str) -> list[str]:
        argv = ["sh", self._ensure_sampler(), out, mode, arg, str(self.interval_s), str(self._max_samples(seconds))]
        return bounded(argv, seconds + SAMPLER_SLACK_S, pid_file(self.device.workdir, name))

    def measure_idle(self, seconds: float) -> None:
        self._check_charging()
        if self._refusal:
            return
        out = f"{self._folder()}/idle.txt"
        argv = self._sampler_argv(out, "for_cs", str(max(1, int(seconds * 100))), seconds, "idle_sampler")
        result = self.device.shell(argv, timeout=seconds + 2 * SAMPLER_SLACK_S)
        if not result.ok:
            raise DeviceError(f"the power sampler failed on {self.device.id}: {result.stderr.strip()}")
        self._idle = self._pull_trace(out)

    def start(self, limit_s: float | None = None) -> None:
        if self._refusal:
            return
        limit = limit_s or DEFAULT_LIMIT_S
        self._out = f"{self._folder()}/load.txt"
        self._marker = f"{self._folder()}/sampling"
        # A previous model's trace must not pass for this one's first samples.
        self.device.shell(["rm", "-f", self._out, f"{self._out}.done", f"{self._out}.rails"])
        self.device.shell(["touch", self._marker])
        # Held in a stream of its own, not detached: when the host dies or the cable goes, adbd hangs up
        # on the sampler; failing that, its guard ends it at the run's limit, and the next bench ends it too.
        argv = self._sampler_argv(self._out, "marker", self._marker, limit, "sampler")
        self._holder_error: list[BaseException] = []
        self._holder = threading.Thread(target=self._hold, args=(argv, limit + 2 * SAMPLER_SLACK_S),
                                        name=f"sampler-{self.device.id}", daemon=True)
        self._holder.start()
        # The sampler reads thermal zones and dumpsys first; the timed loop starts once it samples the battery.
        deadline = time.monotonic() + 10
        while not self.device.shell(["grep", "-q", "^b ", self._out]).ok and time.monotonic() < deadline:
            if not self._holder.is_alive():
                break
            time.sleep(0.02)

    def _hold(self, argv: list[str], timeout: float) -> None:
        try:
            self.device.shell(argv, timeout=timeout)
        except MbdeployError as exc:  # the phone went away: stop() reports what is missing
            self._holder_error.append(exc)

    def stop(self, inferences: int, latency_ms: float) -> PowerResult:
        if self._refusal:
            return PowerResult(status="refused", reason=self._refusal)
        self.device.shell(["rm", "-f", self._marker])
        self._holder.join(timeout=10)
        if self._holder.is_alive() or not self.device.shell(["test", "-f", f"{self._out}.done"]).ok:
            return PowerResult.unavailable("the power sampler did not finish within 10 s after the run")
        self.last_load = self._pull_trace(self._out)
        if self._idle is None:
            return PowerResult.unavailable("no idle baseline was measured before the run")
        result = compute(self._idle, self.last_load, latency_ms, charging=self._charging)
        result.rails_mw = self._pull_rails()
        return result

    def _pull_rails(self) -> dict[str, float] | None:
        """The sampler's PowerStats delta over the run, where the phone has the HAL."""
        remote = f"{self._out}.rails"
        if not self.device.shell(["test", "-s", remote]).ok:
            return None
        with tempfile.TemporaryDirectory(prefix="mbdeploy-rails-") as tmp:
            local = Path(tmp) / "rails.txt"
            self.device.pull(remote, local)
            return parse_rails(local.read_text())

    def thermal(self) -> dict:
        """Thermal status (PowerManager's 0 none .. 6 shutdown) at the loop's start and end, and the hottest zone."""
        trace = self.last_load
        if trace is None:
            return {}
        return {
            "status_start": trace.thermal_status.get("START"),
            "status_end": trace.thermal_status.get("END"),
            "max_temperature_c": trace.max_temperature_c(),
        }
