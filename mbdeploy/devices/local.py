"""The `local` device: this host, with a work folder under the user's cache.

Commands run through subprocess with an argv list and no shell, so a model
file name can never be interpreted as a command.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from mbdeploy import lifeline
from mbdeploy.devices import peak, sensors
from mbdeploy.atomic import sha256_file
from mbdeploy.cache import cache_root
from mbdeploy.devices.base import Device, DeviceInfo, SensorReading, ShellResult
from mbdeploy.errors import DeviceError


def default_workdir() -> Path:
    return cache_root() / "local-device"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor's fields, plus board-level ones (`Hardware`, `Model`) on ARM."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key and key not in fields:
            fields[key] = value.strip()
    return fields


def parse_os_release(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip('"')
    return fields


class LocalDevice(Device):
    kind = "local"

    def __init__(self, workdir: Path | None = None, root: Path | str = "/", python: str | None = None) -> None:
        self._workdir = Path(workdir) if workdir else default_workdir()
        self._root = Path(root)  # sysfs/procfs root; tests point it at a fake tree
        # The interpreter that runs device-side scripts: the one running mbdeploy.
        self.python = python or sys.executable

    @property
    def id(self) -> str:
        return "local"

    @property
    def workdir(self) -> str:
        try:
            self._workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeviceError(f"cannot create the local work folder {self._workdir}: {exc.strerror or exc}; "
                              "point XDG_CACHE_HOME at a writable folder") from None
        return str(self._workdir)

    def properties(self) -> dict[str, str]:
        cpuinfo = parse_cpuinfo(_read(self._root / "proc/cpuinfo") or "")
        os_release = parse_os_release(_read(self._root / "etc/os-release") or "")
        props = {
            "hostname": platform.node(),
            "machine": platform.machine(),
            "kernel": platform.release(),
            "os": os_release.get("PRETTY_NAME") or platform.system(),
            "cpu": cpuinfo.get("model name") or cpuinfo.get("Hardware") or cpuinfo.get("Processor") or platform.processor(),
            "cores": str(os.cpu_count() or ""),
            "python": platform.python_version(),
        }
        board = (_read(self._root / "proc/device-tree/model") or "").rstrip("\x00") or cpuinfo.get("Model")
        product = _read(self._root / "sys/devices/virtual/dmi/id/product_name")
        if board or product:
            props["board"] = board or product
        return {key: value for key, value in props.items() if value}

    def info(self) -> DeviceInfo:
        props = self.properties()
        files = sensors.read_snapshot(sensors.SENSOR_GLOBS, self._root)
        info = linux_device_info(self.kind, self.id, props, files, python=props.get("python"))
        # The fp32 vector peak, so a report can say how much of this machine a model uses.
        found = peak.peak_under(self._root)
        if found is not None:
            info.extra["cpu_peak"] = found.to_dict()
        return info

    def sensors(self) -> SensorReading:
        return sensors.read_sensors(self._root)

    def power_meter(self, allow_charging: bool = False) -> sensors.RaplPowerMeter:
        # allow_charging matters for battery-powered phones only; boards and hosts have mains power.
        return sensors.RaplPowerMeter(root=self._root, where="local")

    def push(self, local: Path, remote: str) -> None:
        source = Path(local)
        target = Path(remote)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.resolve() != target.resolve():
                shutil.copyfile(source, target)
        except OSError as exc:
            raise DeviceError(f"push of {source} to {target} failed: {exc}") from None
        self.check_arrived(source, remote)

    def check_arrived(self, local: Path, remote: str) -> None:
        """Raise if the copy on the device differs from the local file in size or sha256."""
        target = Path(remote)
        if not target.is_file() or target.stat().st_size != Path(local).stat().st_size:
            raise DeviceError(f"push of {local} to {remote} arrived incomplete (size differs)")
        if sha256_file(target) != sha256_file(Path(local)):
            raise DeviceError(f"push of {local} to {remote} arrived corrupted (sha256 differs)")

    def pull(self, remote: str, local: Path) -> None:
        try:
            Path(local).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(remote, local)
        except OSError as exc:
            raise DeviceError(f"pull of {remote} failed: {exc}") from None

    def shell(self, argv: list[str], timeout: float | None = None) -> ShellResult:
        words = [str(word) for word in argv]
        # Its own process group, killed with us (lifeline); it inherits the device lock, so the lock
        # stays taken for as long as anything we started here still runs.
        held = (self.lock.fileno(),) if self.lock is not None and self.lock.held else ()
        try:
            code, out, err = lifeline.run(words, timeout=timeout, pass_fds=held)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{words[0]} did not finish within {timeout:.0f} s on local") from None
        stderr = err.decode(errors="replace")
        if code == 127 and stderr.startswith(f"{words[0]}: "):
            stderr = f"{words[0]}: command not found"
        return ShellResult(exit_code=code, stdout=out.decode(errors="replace"), stderr=stderr)


def linux_device_info(kind: str, device_id: str, props: dict, files: dict, python: str | None) -> DeviceInfo:
    """DeviceInfo for a Linux machine from its properties and a sysfs snapshot (local and ssh alike)."""
    temperatures = sensors.parse_thermal(files)
    cores = str(props.get("cores") or "")
    return DeviceInfo(
        kind=kind,
        id=device_id,
        model=props.get("board") or props.get("hostname"),
        soc=props.get("cpu"),
        abi=props.get("machine"),
        os=f"{props.get('os') or '?'} (kernel {props.get('kernel', '?')})",
        cores=int(cores) if cores.isdigit() else None,
        governor=sensors.parse_governor(files),
        temperature_c=max(temperatures.values()) if temperatures else None,
        state="online",
        extra={"hostname": props.get("hostname"), "python": python},
    )
