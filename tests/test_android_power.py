"""Power on the phone: the sampler's format, the host's figures, and the whole path on the adb test device."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from mbdeploy.devices.android_power import SamplerTrace, compute, parse_rails, parse_sampler, sampler_source
from mbdeploy.devices import android
from mbdeploy.testing.adb_device import AdbTestDevice
from support.paths import ROOT


def _trace(currents, voltage=3_900_000, rate_hz=20.0):
    return SamplerTrace(battery=[(i / rate_hz, c, voltage) for i, c in enumerate(currents)], complete=True)


def test_parse_sampler_lines():
    text = (
        "# mbdeploy-sampler 1\nzone 0 battery\nzone 1 cpu-big\nstatus START 0\n"
        "b 10.00 -250000 3900000\nt 10.00 0 28500\nt 10.00 1 NA\nb 10.05 NA 3900000\nb 10.10 -260000 3899000\n"
        "status END 2\nend 10.12 3\n"
    )
    trace = parse_sampler(text)
    assert trace.battery == [(10.0, -250000, 3900000), (10.1, -260000, 3899000)]
    assert trace.temperatures == {"battery": [(10.0, 28.5)]}
    assert trace.thermal_status == {"START": 0, "END": 2} and trace.complete


@pytest.mark.parametrize("sign", [-1, 1])
def test_discharge_sign_is_found_from_idle_vs_load(sign):
    idle = _trace([sign * c for c in (200_000, 210_000, 190_000, 205_000)] * 5)
    load = _trace([sign * c for c in (600_000, 620_000, 590_000, 610_000)] * 5)
    result = compute(idle, load, latency_ms=4.0)
    idle_mw = statistics.fmean((200_000, 210_000, 190_000, 205_000)) * 3.9 / 1000
    load_mw = statistics.fmean((600_000, 620_000, 590_000, 610_000)) * 3.9 / 1000
    assert result.idle_power_mw == pytest.approx(idle_mw) and result.avg_power_mw == pytest.approx(load_mw)
    assert result.energy_mj == pytest.approx((load_mw - idle_mw) * 4.0 / 1000)
    assert ("negative" if sign < 0 else "positive") + " current = discharge, from idle vs load" in result.source
    assert result.quality == "good" and result.samples == 20


def test_milliamp_gauges_are_scaled():
    result = compute(_trace([-200, -210] * 10, voltage=3900), _trace([-600, -610] * 10, voltage=3900), latency_ms=1.0)
    assert result.avg_power_mw == pytest.approx(605 * 3.9)


def test_quality_flags_a_slow_gauge_and_few_samples():
    result = compute(_trace([-200_000] * 8, rate_hz=2), _trace([-500_000] * 5, rate_hz=2), latency_ms=1.0)
    assert result.status == "ok"
    assert "only 5 samples" in result.quality and "Hz" in result.quality and "barely changed" in result.quality


def test_no_battery_readings_is_unavailable_not_invented():
    assert compute(SamplerTrace(), SamplerTrace(), latency_ms=1.0).status == "unavailable"


def test_sampler_is_posix_sh(tmp_path):
    battery = tmp_path / "sys/class/power_supply/battery"
    battery.mkdir(parents=True)
    (battery / "current_now").write_text("-300000\n")
    (battery / "voltage_now").write_text("3900000\n")
    out = tmp_path / "trace.txt"
    env = {"PATH": "/usr/bin:/bin", "MBDEPLOY_SYSFS": str(tmp_path / "sys")}
    for shell in [s for s in ("sh", "dash", "bash", "busybox") if shutil.which(s)]:
        argv = [shell, "sh"] if shell == "busybox" else [shell]
        subprocess.run([*argv, str(sampler_source()), str(out), "for_cs", "50"], check=True, env=env, timeout=30)
        trace = parse_sampler(out.read_text())
        assert trace.complete and (tmp_path / "trace.txt.done").exists()
        assert len(trace.battery) >= 2 and all(row[1:] == (-300000, 3900000) for row in trace.battery), shell


def test_android_harness_ships_the_same_script():
    from pathlib import Path

    harness = ROOT / "android_harness" / "sampler.sh"
    assert harness.read_bytes() == sampler_source().read_bytes()


# ---------------------------------------------------------------- through the real adb server
@pytest.fixture
def phone(server, tmp_path):
    with AdbTestDevice(tmp_path / "phone") as dev:
        server.connect(dev)
        yield dev
        server.client().disconnect(dev.serial)


# Narrow traces (each value within 1% of the mean), so any subset the sampler catches averages within 1%.
IDLE = [(-200_000, 3_950_000), (-202_000, 3_948_000), (-198_000, 3_951_000), (-201_000, 3_949_000)]
LOAD = [(-800_000, 3_902_000), (-804_000, 3_899_000), (-797_000, 3_900_000), (-801_000, 3_901_000)]


def _mean_mw(rows):
    return statistics.fmean(-c * v / 1e9 for c, v in rows)


def test_power_path_produces_figures_from_a_played_trace(server, phone):
    device = android.resolve(phone.serial, server.address)
    meter = device.power_meter(allow_charging=False)
    phone.play_battery_trace(IDLE, interval_s=0.01)
    meter.measure_idle(1.0)
    phone.play_battery_trace(LOAD, interval_s=0.01)
    meter.start()
    time.sleep(1.0)
    result = meter.stop(inferences=200, latency_ms=5.0)
    assert result.status == "ok", result
    assert result.idle_power_mw == pytest.approx(_mean_mw(IDLE), rel=0.01)
    assert result.avg_power_mw == pytest.approx(_mean_mw(LOAD), rel=0.01)
    assert result.energy_mj == pytest.approx((result.avg_power_mw - result.idle_power_mw) * 5.0 / 1000, rel=1e-6)
    assert result.samples >= 2 and "negative current = discharge, from idle vs load" in result.source
    assert meter.thermal()["max_temperature_c"] == 35.2
    device.close()


def test_power_is_refused_while_usb_charging_unless_allowed(server, phone):
    phone.set_battery(level=90, usb_powered=True, current_ua=400_000, voltage_uv=4_300_000)
    device = android.resolve(phone.serial, server.address)
    refused = device.power_meter(allow_charging=False)
    refused.measure_idle(0.2)
    refused.start()
    result = refused.stop(inferences=10, latency_ms=1.0)
    assert result.status == "refused" and "charging (USB powered)" in result.reason and "--allow-charging" in result.reason
    allowed = device.power_meter(allow_charging=True)
    phone.play_battery_trace(IDLE, interval_s=0.01)
    allowed.measure_idle(0.6)
    phone.play_battery_trace(LOAD, interval_s=0.01)
    allowed.start()
    time.sleep(0.6)
    result = allowed.stop(inferences=10, latency_ms=1.0)
    assert result.status == "ok" and "while charging" in result.quality
    device.close()


def test_no_latency_gives_no_energy_figure():
    result = compute(_trace([-200_000, -210_000] * 10), _trace([-600_000, -610_000] * 10), latency_ms=0.0)
    assert result.energy_mj is None and "no latency" in result.quality and result.avg_power_mw > 0


def test_meter_source_says_whether_the_phone_has_a_battery_gauge(server, phone):
    device = android.resolve(phone.serial, server.address)
    assert device.power_meter().source == "battery current_now x voltage_now"
    (phone.root / "sys/class/power_supply/battery/current_now").unlink()
    assert device.power_meter().source is not None  # probed once per device and run
    assert android.resolve(phone.serial, server.address).power_meter().source is None


TRANSCRIPTS = Path(__file__).parent / "transcripts"


def test_pixel_rails_parse_to_average_power_per_channel():
    rails = parse_rails((TRANSCRIPTS / "powerstats_delta.txt").read_text())
    # delta mWs over the 2 s window
    assert rails == {"[S4M_VDD_CPUCL0]:CPU(LITTLE)": 200.0, "[S3M_VDD_CPUCL1]:CPU(MID)": 450.25,
                     "[S2M_VDD_CPUCL2]:CPU(BIG)": 1200.0, "[S10M_VDD_TPU]:TPU": 0.0}
    assert parse_rails("Can't find service: android.hardware.power.stats.IPowerStats/default") is None


def test_rails_reach_the_power_result_when_the_phone_has_the_hal(server, phone):
    phone.set_dumpsys("android.hardware.power.stats.IPowerStats/default",
                      (TRANSCRIPTS / "powerstats_delta.txt").read_text())
    try:
        device = android.resolve(phone.serial, server.address)
        meter = device.power_meter(allow_charging=False)
        phone.play_battery_trace(IDLE, interval_s=0.01)
        meter.measure_idle(0.5)
        phone.play_battery_trace(LOAD, interval_s=0.01)
        meter.start()
        time.sleep(0.5)
        result = meter.stop(inferences=100, latency_ms=5.0)
        assert result.rails_mw["[S2M_VDD_CPUCL2]:CPU(BIG)"] == 1200.0
        device.close()
    finally:
        phone.set_dumpsys("android.hardware.power.stats.IPowerStats/default",
                          "Can't find service: android.hardware.power.stats.IPowerStats/default")
