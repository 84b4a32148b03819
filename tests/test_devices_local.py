"""The local device, sysfs sensors and power against a fake sysfs tree, config and name resolution."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from support.injection import INJECTION_NAME, no_new_pwned
from mbdeploy.devices import sensors
from mbdeploy.devices.config import load_config
from mbdeploy.devices.local import LocalDevice
from mbdeploy.devices.registry import resolve
from mbdeploy.devices.ssh import SshDevice
from mbdeploy.errors import DeviceError, DeviceNotFound, InvalidInput

CPUINFO_PI = "processor\t: 0\nBogoMIPS\t: 108.00\nprocessor\t: 1\nHardware\t: BCM2835\nModel\t: Raspberry Pi 4 Model B Rev 1.4\n"


def _write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def fake_board(tmp_path) -> Path:
    """A sysfs/procfs tree of a two-core ARM board with two thermal zones and a RAPL-less PMIC."""
    root = tmp_path / "root"
    _write(root, "proc/cpuinfo", CPUINFO_PI)
    _write(root, "proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\x00")
    _write(root, "etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n')
    for zone, (kind, milli) in enumerate([("cpu-thermal", "51500"), ("gpu-thermal", "48000")]):
        _write(root, f"sys/class/thermal/thermal_zone{zone}/type", kind + "\n")
        _write(root, f"sys/class/thermal/thermal_zone{zone}/temp", milli + "\n")
    for cpu, freq in enumerate(("1500000", "600000")):
        _write(root, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", freq)
        _write(root, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor", "ondemand")
    return root


def test_local_info_and_sensors_from_a_board_tree(fake_board, tmp_path):
    device = LocalDevice(workdir=tmp_path / "wd", root=fake_board)
    info = device.info()
    assert info.kind == "local" and info.id == "local"
    assert info.model == "Raspberry Pi 4 Model B Rev 1.4"
    assert info.soc == "BCM2835"
    assert info.governor == "ondemand"
    assert info.temperature_c == pytest.approx(51.5)
    assert info.os.startswith("Debian GNU/Linux 12 (bookworm)")
    reading = device.sensors()
    assert reading.temperatures_c == {"cpu-thermal": 51.5, "gpu-thermal": 48.0}
    assert reading.cpu_freq_khz == {"cpu0": 1500000, "cpu1": 600000}


def test_local_info_on_this_host_is_complete():
    info = LocalDevice().info()
    assert info.state == "online" and info.cores and info.abi and info.os


def test_shell_runs_argv_without_a_shell(tmp_path):
    device = LocalDevice(workdir=tmp_path / "wd")
    with no_new_pwned(Path.cwd(), tmp_path):
        result = device.shell(["echo", INJECTION_NAME])
        quoted = device.shell(["sh", "-c", 'printf "%s" "$1"', "sh", INJECTION_NAME])
    assert result.ok and result.stdout.strip() == INJECTION_NAME
    assert quoted.stdout == INJECTION_NAME
    assert device.shell(["false"]).exit_code == 1
    assert device.shell(["definitely-not-a-command-xyz"]).exit_code == 127
    with pytest.raises(DeviceError, match="did not finish"):
        device.shell(["sleep", "5"], timeout=0.2)


def test_push_checks_the_copy_and_pull_round_trips(tmp_path):
    device = LocalDevice(workdir=tmp_path / "wd")
    source = _write(tmp_path, INJECTION_NAME, "weights" * 1000)
    remote = str(Path(device.workdir) / "models" / source.name)
    device.push(source, remote)
    device.pull(remote, tmp_path / "back" / "copy")
    assert (tmp_path / "back" / "copy").read_bytes() == source.read_bytes()
    Path(remote).write_text("weightz" * 1000)  # same size, other bytes
    with pytest.raises(DeviceError, match="sha256 differs"):
        device.check_arrived(source, remote)
    Path(remote).write_text("short")
    with pytest.raises(DeviceError, match="incomplete"):
        device.check_arrived(source, remote)
    blocker = _write(tmp_path, "a-file", "x")
    with pytest.raises(DeviceError, match="push of"):
        device.push(source, str(blocker / "below-a-file.tflite"))


def test_rapl_power_meter_on_a_fake_powercap_tree(tmp_path):
    root = tmp_path / "root"
    _write(root, "sys/class/powercap/intel-rapl:0/name", "package-0")
    energy = _write(root, "sys/class/powercap/intel-rapl:0/energy_uj", "1000000")
    _write(root, "sys/class/powercap/intel-rapl:0/max_energy_range_uj", "262143328850")
    _write(root, "sys/class/powercap/intel-rapl:0:0/name", "core")  # a sub-zone: never added twice
    _write(root, "sys/class/powercap/intel-rapl:0:0/energy_uj", "5")
    _write(root, "sys/class/powercap/intel-rapl:1/name", "psys")  # contains the package: left out
    _write(root, "sys/class/powercap/intel-rapl:1/energy_uj", "99")
    meter = sensors.RaplPowerMeter(root=root)
    assert meter.source == "rapl"

    def spend(watts: float, seconds: float) -> None:
        # Advance the counter like the kernel would: energy = power x time.
        start = time.monotonic()
        base = int(energy.read_text())

        def set_counter(value: int) -> None:  # renamed into place: a reader never sees a half-written number
            (energy.parent / "next").write_text(str(value))
            (energy.parent / "next").replace(energy)

        while (elapsed := time.monotonic() - start) < seconds:
            set_counter(base + int(watts * 1e6 * elapsed))
            time.sleep(0.01)
        set_counter(base + int(watts * 1e6 * seconds))

    meter.measure_idle(0.0)  # zero seconds: no baseline taken
    meter.start()
    spend(2.0, 0.4)
    result = meter.stop(inferences=100, latency_ms=4.0)
    assert result.status == "ok" and result.source == "rapl"
    assert result.avg_power_mw == pytest.approx(2000.0, rel=0.15)
    assert result.energy_mj == pytest.approx(result.avg_power_mw * 4.0 / 1000.0)
    assert "no idle baseline" in result.quality

    idle_thread = threading.Thread(target=spend, args=(0.5, 0.4))
    idle_thread.start()
    meter.measure_idle(0.4)
    idle_thread.join()
    meter.start()
    spend(3.0, 0.4)
    result = meter.stop(inferences=100, latency_ms=4.0)
    assert result.idle_power_mw == pytest.approx(500.0, rel=0.3)
    assert result.energy_mj == pytest.approx((result.avg_power_mw - result.idle_power_mw) * 4.0 / 1000.0)


def test_rapl_counter_wraps_around():
    before = {"intel-rapl:0/package-0": (262143328000, 262143328850)}
    after = {"intel-rapl:0/package-0": (150, 262143328850)}
    assert sensors.rapl_energy_delta_uj(before, after) == 850 + 150


def test_hwmon_power_is_sampled_during_the_window(tmp_path):
    root = tmp_path / "root"
    _write(root, "sys/class/hwmon/hwmon0/name", "ina219")
    _write(root, "sys/class/hwmon/hwmon0/power1_input", "3500000")  # microwatts
    meter = sensors.RaplPowerMeter(root=root, sample_interval_s=0.02)
    assert meter.source == "hwmon"
    meter.start()
    time.sleep(0.2)
    result = meter.stop(inferences=10, latency_ms=2.0)
    assert result.status == "ok" and result.avg_power_mw == pytest.approx(3500.0)
    assert result.samples >= 3


def test_no_sensor_means_unavailable_with_a_reason(tmp_path):
    meter = sensors.RaplPowerMeter(root=tmp_path, where="test-board")
    meter.measure_idle(0.1)
    meter.start()
    result = meter.stop(inferences=10, latency_ms=2.0)
    assert result.status == "unavailable" and result.avg_power_mw is None and result.energy_mj is None
    assert "intel-rapl" in result.reason and "test-board" in result.reason


def test_snapshot_script_output_parses_like_a_local_snapshot():
    device = LocalDevice()
    remote_style = sensors.parse_snapshot_output(
        device.shell(["sh", "-c", sensors.snapshot_script(sensors.SENSOR_GLOBS)]).stdout)
    assert remote_style == sensors.read_snapshot(sensors.SENSOR_GLOBS, "/")
    assert sensors.parse_snapshot_output("/sys/class/thermal/thermal_zone0/temp\t41000\njunk\n") == {
        "/sys/class/thermal/thermal_zone0/temp": "41000"}


def test_config_aliases_and_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MBDEPLOY_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-user-config"))
    (tmp_path / "mbdeploy.toml").write_text(
        '[aliases]\nPi = "ssh://pi@10.0.0.5:2222?python=/opt/venv/bin/python"\nhere = "local"\nloop = "loop"\n'
        '[ssh]\nconfig = "boards.conf"\n')
    (tmp_path / "boards.conf").write_text("Host board\n  Port 2222\n")
    assert load_config(trust_project_ssh=True).ssh_config == tmp_path / "boards.conf"  # a project file's, opted in
    [pi] = resolve("PI")
    assert isinstance(pi, SshDevice) and pi.id == "ssh://pi@10.0.0.5:2222" and pi.python == "/opt/venv/bin/python"
    assert [d.id for d in resolve("HERE")] == ["local"]
    assert [d.id for d in resolve("Local")] == ["local"]
    model = LocalDevice().info().model
    assert [d.id for d in resolve(model.upper())] == ["local"]
    with pytest.raises(DeviceNotFound, match=r"no device matches 'nope'; candidates: local .*alias pi"):
        resolve("nope")
    with pytest.raises(DeviceNotFound):
        resolve("loop")  # an alias naming itself ends, it does not spin


@pytest.mark.parametrize("text, message", [
    ("[aliases\n", "not valid TOML"),
    ('[aliases]\npi = 3\n', "must map names to strings"),
    ('[ssh]\nhost = ["x"]\n', "unknown \\[ssh\\] key"),
    ('[ssh]\nhosts = "ssh://x"\n', "must be a list of strings"),
])
def test_bad_config_is_a_clear_error(tmp_path, monkeypatch, text, message):
    (tmp_path / "cfg.toml").write_text(text)
    monkeypatch.setenv("MBDEPLOY_CONFIG", str(tmp_path / "cfg.toml"))
    with pytest.raises(InvalidInput, match=message):
        load_config()


@pytest.mark.parametrize("target", ["ssh://", "http://host", "ssh://host:notaport", "ssh://host?shell=zsh"])
def test_bad_ssh_targets_are_rejected(target):
    with pytest.raises(InvalidInput):
        SshDevice(target)


def test_no_latency_means_no_energy_figure(tmp_path):
    root = tmp_path / "root"
    _write(root, "sys/class/hwmon/hwmon0/name", "ina219")
    _write(root, "sys/class/hwmon/hwmon0/power1_input", "2000000")
    meter = sensors.RaplPowerMeter(root=root, sample_interval_s=0.02)
    meter.start()
    time.sleep(0.1)
    result = meter.stop(inferences=0, latency_ms=None)
    assert result.status == "ok" and result.avg_power_mw == pytest.approx(2000.0) and result.energy_mj is None
