"""iPhones and iPads: find them, copy files into the benchmark app, install and launch it.

Transport only: what the app is asked to do and what it answers belong to
the `coreml_app` runner (mbdeploy/runners/coreml_app.py).

Two tools drive a phone: `xcrun devicectl` (Xcode 15+, macOS) and
`pymobiledevice3` (Linux or macOS, pinned in the `ios` extra). Every
command is built by a pure function returning an argv list (the tests parse
each one with the real pymobiledevice3's own command objects); nothing
passes through a shell.

How pymobiledevice3 reaches the app's developer services depends on the
phone's iOS version (pymobiledevice3 11.x, see the README):

- iOS 16: lockdown over usbmux, with the developer disk image mounted
  (`pymobiledevice3 mounter auto-mount`);
- iOS 17.0-17.3: only through the root tunnel daemon
  (`sudo pymobiledevice3 remote tunneld`), named with `--tunnel UDID`;
- iOS 17.4 and later: an in-process userspace tunnel (`--userspace`), no root.

File copies (`apps push/pull/rm`) go over lockdown's house_arrest service on
every version.
"""

from __future__ import annotations

import importlib.util
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from mbdeploy.devices.base import Device, DeviceInfo, SensorReading, ShellResult, device_name_key, quote_argv
from mbdeploy.errors import DeviceError, InvalidInput

BUNDLE_ID = "org.mbdeploy.bench"  # ios_harness/project.yml
DOCUMENTS = "Documents"

DEVICECTL = "devicectl"
PYMOBILEDEVICE3 = "pymobiledevice3"

# How pymobiledevice3 reaches developer services (launching the app), by iOS version.
LOCKDOWN, TUNNELD, USERSPACE = "lockdown", "tunneld", "userspace"

Run = Callable[..., subprocess.CompletedProcess]


# --- which tool ----------------------------------------------------------------
def available_tool() -> str | None:
    """`devicectl` on a Mac with Xcode 15+, else `pymobiledevice3` when installed, else None."""
    if sys.platform == "darwin" and shutil.which("xcrun"):
        found = subprocess.run(["xcrun", "--find", "devicectl"], capture_output=True, text=True)
        if found.returncode == 0:
            return DEVICECTL
    if shutil.which(PYMOBILEDEVICE3) or importlib.util.find_spec("pymobiledevice3") is not None:
        return PYMOBILEDEVICE3
    return None


def _pymobiledevice3() -> list[str]:
    # The console script when it is on PATH, else the module of this interpreter.
    return [PYMOBILEDEVICE3] if shutil.which(PYMOBILEDEVICE3) else [sys.executable, "-m", "pymobiledevice3"]


def launch_path(ios_version: str | None) -> str:
    """How pymobiledevice3 launches an app on this iOS version: lockdown, tunneld or userspace."""
    match = re.match(r"(?:iOS\s+)?(\d+)(?:\.(\d+))?", ios_version or "")
    if not match:
        return USERSPACE  # unknown: the path of every current iOS
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    if major < 17:
        return LOCKDOWN
    if (major, minor) < (17, 4):
        return TUNNELD  # no CoreDeviceProxy before 17.4: the userspace tunnel cannot serve it
    return USERSPACE


# --- commands: devicectl (macOS) -------------------------------------------------
def devicectl_list(json_output: Path) -> list[str]:
    return ["xcrun", "devicectl", "list", "devices", "--json-output", str(json_output)]


def devicectl_install(udid: str, app: Path) -> list[str]:
    return ["xcrun", "devicectl", "device", "install", "app", "--device", udid, str(app)]


def devicectl_launch(udid: str, bundle_id: str = BUNDLE_ID, arguments: Sequence[str] = ()) -> list[str]:
    argv = ["xcrun", "devicectl", "device", "process", "launch", "--device", udid, "--terminate-existing", bundle_id]
    return argv + ["--", *arguments] if arguments else argv


def _container(udid: str, bundle_id: str) -> list[str]:
    return ["--device", udid, "--domain-type", "appDataContainer", "--domain-identifier", bundle_id]


def devicectl_copy_to(udid: str, local: Path, remote: str, bundle_id: str = BUNDLE_ID) -> list[str]:
    return ["xcrun", "devicectl", "device", "copy", "to", *_container(udid, bundle_id),
            "--source", str(local), "--destination", remote]


def devicectl_copy_from(udid: str, remote: str, local: Path, bundle_id: str = BUNDLE_ID) -> list[str]:
    return ["xcrun", "devicectl", "device", "copy", "from", *_container(udid, bundle_id),
            "--source", remote, "--destination", str(local)]


# --- commands: pymobiledevice3 (Linux or macOS) --------------------------------------
def pmd_list(base: Sequence[str] = (PYMOBILEDEVICE3,)) -> list[str]:
    # Piped output is plain JSON already (there is no --no-color on `usbmux list`).
    return [*base, "usbmux", "list"]


def pmd_install(udid: str, app: Path, base: Sequence[str] = (PYMOBILEDEVICE3,)) -> list[str]:
    return [*base, "apps", "install", "--udid", udid, str(app)]


def pmd_launch(udid: str, bundle_id: str = BUNDLE_ID, arguments: Sequence[str] = (), path: str = USERSPACE,
               base: Sequence[str] = (PYMOBILEDEVICE3,)) -> list[str]:
    """`developer dvt launch` over the path this iOS version needs (see `launch_path`).

    `dvt launch` takes one string and splits it with shlex; each word is
    quoted so an argument can never become two.
    """
    device = {LOCKDOWN: ["--udid", udid], TUNNELD: ["--tunnel", udid], USERSPACE: ["--userspace", "--udid", udid]}
    if path not in device:
        raise InvalidInput(f"unknown launch path {path!r}; allowed: {', '.join(device)}")
    return [*base, "developer", "dvt", "launch", *device[path], "--kill-existing", quote_argv([bundle_id, *arguments])]


def pmd_mount_ddi(udid: str, base: Sequence[str] = (PYMOBILEDEVICE3,)) -> list[str]:
    """What a user runs once per boot so lockdown can reach developer services (named in errors and the README)."""
    return [*base, "mounter", "auto-mount", "--udid", udid]


def pmd_tunneld(base: Sequence[str] = (PYMOBILEDEVICE3,)) -> list[str]:
    return ["sudo", *base, "remote", "tunneld"]


def pmd_push(udid: str, local: Path, remote: str, bundle_id: str = BUNDLE_ID,
             base: Sequence[str] = (PYMOBILEDEVICE3,)) -> list[str]:
    """Copy a file or a folder into the app's container (paths from its root: `Documents/...`).

    pymobiledevice3 copies a folder *into* the destination, under the
    folder's own name, so a folder goes to the parent of `remote` (which
    must end in the folder's name); a file goes to `remote` itself.
    """
    destination = "/" + remote.lstrip("/")
    if Path(local).is_dir():
        if posixpath.basename(destination) != Path(local).name:
            raise InvalidInput(f"a folder keeps its name on the phone: {remote} must end in {Path(local).name}")
        destination = posixpath.dirname(destination)
    return [*base, "apps", "push", "--udid", udid, bundle_id, str(local), destination]


def pmd_pull(udid: str, remote: str, local: Path, bundle_id: str = BUNDLE_ID,
             base: Sequence[str] = (PYMOBILEDEVICE3,)) -> list[str]:
    return [*base, "apps", "pull", "--udid", udid, bundle_id, "/" + remote.lstrip("/"), str(local)]


def pmd_remove(udid: str, remote: str, bundle_id: str = BUNDLE_ID,
               base: Sequence[str] = (PYMOBILEDEVICE3,)) -> list[str]:
    # `apps rm` removes folders recursively, so an .mlpackage goes whole.
    return [*base, "apps", "rm", "--udid", udid, bundle_id, "/" + remote.lstrip("/")]


# --- device lists ----------------------------------------------------------------
def devicectl_state(connection: dict, properties: dict) -> str:
    """online, offline or unpaired from devicectl's availability fields.

    `tunnelState` is "disconnected" for an idle paired phone until devicectl
    needs the tunnel (it brings it up itself), so it does not mean offline;
    "unavailable" does, as does a phone that is not booted.
    """
    if connection.get("pairingState", "paired") != "paired":
        return "unpaired"
    if connection.get("tunnelState") == "unavailable" or properties.get("bootState", "booted") != "booted":
        return "offline"
    return "online"


def parse_devicectl_devices(data: dict) -> list[DeviceInfo]:
    """Physical iOS devices from `devicectl list devices --json-output`."""
    try:
        devices = data["result"]["devices"]
    except (KeyError, TypeError):
        raise DeviceError("devicectl printed no result.devices list; is Xcode 15 or later selected?") from None
    infos = []
    for entry in devices:
        hardware = entry.get("hardwareProperties") or {}
        properties = entry.get("deviceProperties") or {}
        connection = entry.get("connectionProperties") or {}
        if hardware.get("platform") != "iOS" or hardware.get("reality", "physical") != "physical":
            continue
        udid = hardware.get("udid") or entry.get("identifier")
        if not udid:
            continue
        infos.append(DeviceInfo(
            kind="ios", id=udid, model=hardware.get("marketingName") or hardware.get("productType"),
            soc=hardware.get("productType"), abi=(hardware.get("cpuType") or {}).get("name"),
            os=f"iOS {properties['osVersionNumber']}" if properties.get("osVersionNumber") else None,
            state=devicectl_state(connection, properties),
            extra={"name": properties.get("name"), "tool": DEVICECTL, "devicectl_id": entry.get("identifier"),
                   "connection": connection.get("transportType"), "developer_mode": properties.get("developerModeStatus"),
                   "ddi_services": properties.get("ddiServicesAvailable")},
        ))
    return infos


def parse_usbmux_devices(data: list) -> list[DeviceInfo]:
    """Devices from `pymobiledevice3 usbmux list`: lockdown short info, one dict per connection.

    A phone on USB and Wi-Fi is listed twice under one UDID; it is kept once,
    over USB when it has it.
    """
    if not isinstance(data, list):
        raise DeviceError("pymobiledevice3 usbmux list did not print a JSON list")
    infos: dict[str, DeviceInfo] = {}
    for entry in data:
        if not isinstance(entry, dict):
            continue
        udid = entry.get("UniqueDeviceID") or entry.get("Identifier")
        if not udid or entry.get("DeviceClass") not in (None, "iPhone", "iPad", "iPod"):
            continue
        info = DeviceInfo(
            kind="ios", id=udid, model=entry.get("ProductType"), soc=entry.get("ProductType"), abi="arm64",
            os=f"iOS {entry['ProductVersion']}" if entry.get("ProductVersion") else None,
            extra={"name": entry.get("DeviceName"), "tool": PYMOBILEDEVICE3,
                   "connection": entry.get("ConnectionType"), "build": entry.get("BuildVersion")},
        )
        if udid not in infos or (info.extra["connection"] == "USB" and infos[udid].extra["connection"] != "USB"):
            infos[udid] = info
    return list(infos.values())


# --- the device ------------------------------------------------------------------
class IosDevice(Device):
    """An iPhone or iPad reached with devicectl or pymobiledevice3; the benchmark app does the timing."""

    kind = "ios"
    default_runner = "coreml_app"
    default_formats = ("coreml",)

    def __init__(self, info: DeviceInfo, tool: str, run: Run = subprocess.run) -> None:
        if tool not in (DEVICECTL, PYMOBILEDEVICE3):
            raise InvalidInput(f"unknown iOS tool {tool!r}; allowed: {DEVICECTL}, {PYMOBILEDEVICE3}")
        self._info = info
        self.tool = tool
        self._run = run
        self._pushed: dict[str, int] = {}  # remote path -> bytes of what this host copied there

    @property
    def id(self) -> str:
        return self._info.id

    def info(self) -> DeviceInfo:
        return self._info

    @property
    def workdir(self) -> str:
        return DOCUMENTS

    @property
    def launch_path(self) -> str:
        return launch_path(self._info.os)

    # Commands for this device, as argv lists.
    def install_argv(self, app: Path) -> list[str]:
        if self.tool == DEVICECTL:
            return devicectl_install(self.id, app)
        return pmd_install(self.id, app, base=_pymobiledevice3())

    def launch_argv(self, arguments: Sequence[str] = ()) -> list[str]:
        if self.tool == DEVICECTL:
            return devicectl_launch(self.id, BUNDLE_ID, arguments)
        return pmd_launch(self.id, BUNDLE_ID, arguments, path=self.launch_path, base=_pymobiledevice3())

    def push_argv(self, local: Path, remote: str) -> list[str]:
        if self.tool == DEVICECTL:
            return devicectl_copy_to(self.id, local, remote)
        return pmd_push(self.id, local, remote, base=_pymobiledevice3())

    def pull_argv(self, remote: str, local: Path) -> list[str]:
        if self.tool == DEVICECTL:
            return devicectl_copy_from(self.id, remote, local)
        return pmd_pull(self.id, remote, local, base=_pymobiledevice3())

    def remove_argv(self, remote: str) -> list[str] | None:
        # devicectl has no documented way to delete a file in an app container: None.
        return pmd_remove(self.id, remote, base=_pymobiledevice3()) if self.tool == PYMOBILEDEVICE3 else None

    def match_keys(self) -> list[str]:
        """Names `--device` accepts: UDID, model, product type, the phone's name, and its family ('iphone')."""
        info = self._info
        keys = [info.id, info.model or "", info.soc or "", str(info.extra.get("name") or "")]
        # "iPhone 15 Pro" and "iPhone16,1" both belong to the family "iphone".
        keys += [match.group(0) for key in (info.model or "", info.soc or "")
                 if (match := re.match(r"i(Phone|Pad|Pod)", key, flags=re.IGNORECASE))]
        return list(dict.fromkeys(device_name_key(key) for key in keys if key))

    def matches(self, name: str) -> bool:
        return device_name_key(name) in self.match_keys()

    def _call(self, argv: list[str], what: str, timeout: float = 300) -> subprocess.CompletedProcess:
        try:
            done = self._run(argv, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise DeviceError(f"{argv[0]} is not installed; {what} needs it") from None
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{what} on {self.id} did not finish in {timeout:.0f} s") from None
        if done.returncode != 0:
            detail = (done.stderr or done.stdout or "").strip().splitlines()
            raise DeviceError(f"{what} on {self.id} failed: {detail[-1] if detail else f'exit {done.returncode}'}")
        return done

    # The Device interface.
    def push(self, local: Path, remote: str) -> None:
        # Whole arrival is checked on the device: the runner's plan carries
        # the byte count (`pushed_bytes`) and the app fails a short model.
        local = Path(local)
        self._call(self.push_argv(local, remote), f"copying {local.name} to the app")
        files = [p for p in local.rglob("*") if p.is_file()] if local.is_dir() else [local]
        self._pushed[remote] = sum(p.stat().st_size for p in files)

    def pushed_bytes(self, remote: str) -> int:
        """The byte count of what this host copied to `remote` in this session."""
        if remote not in self._pushed:
            raise DeviceError(f"{remote} was not copied to {self.id} in this session; push it first")
        return self._pushed[remote]

    def remove(self, remote: str) -> bool:
        """Delete a file or folder from the app's container; False when the tool cannot."""
        argv = self.remove_argv(remote)
        if argv is None:
            return False
        self._call(argv, f"removing {remote} from the app")
        self._pushed.pop(remote, None)
        return True

    def pull(self, remote: str, local: Path) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        self._call(self.pull_argv(remote, Path(local)), f"copying {remote} from the app")

    def shell(self, argv: list[str], timeout: float | None = None) -> ShellResult:
        raise DeviceError("iOS devices have no shell; mbdeploy drives the benchmark app (ios_harness) instead")

    def properties(self) -> dict[str, str]:
        info = self._info
        return {key: str(value) for key, value in
                {"model": info.model, "product_type": info.soc, "os": info.os, **info.extra}.items()
                if value is not None}

    def sensors(self) -> SensorReading:
        return SensorReading()  # apps get only a coarse thermal state; the runner reads the app's

    # The app.
    def install_app(self, app: Path) -> None:
        if not Path(app).exists():
            raise InvalidInput(f"no app at {app}; build ios_harness (see ios_harness/README.md)")
        self._call(self.install_argv(Path(app)), "installing the benchmark app", timeout=600)

    def launch_app(self, arguments: Sequence[str] = ()) -> None:
        """Start the benchmark app (ending a running instance); the error says what to start when it cannot."""
        try:
            self._call(self.launch_argv(arguments), "launching the benchmark app", timeout=120)
        except DeviceError as exc:
            raise DeviceError(f"{exc.message}. {self.launch_help()}") from None

    def launch_help(self) -> str:
        """What this phone needs on this host before the app can be launched."""
        if self.tool == DEVICECTL:
            return "Unlock the phone, turn Developer Mode on and trust this Mac (Xcode 15+)."
        base = _pymobiledevice3()
        mount = f"mount the developer disk image once per boot: `{quote_argv(pmd_mount_ddi(self.id, base))}`"
        path = self.launch_path
        if path == LOCKDOWN:
            return f"{self._info.os or 'This iOS'} launches over lockdown: turn Developer Mode on and {mount}."
        if path == TUNNELD:
            return (f"{self._info.os} launches only through the tunnel daemon: start "
                    f"`{quote_argv(pmd_tunneld(base))}` in another terminal (it must stay running), and {mount}.")
        return (f"{self._info.os or 'This iOS'} launches through pymobiledevice3's userspace tunnel (no root): "
                f"turn Developer Mode on, unlock the phone and {mount}.")


def _no_usbmuxd() -> bool:
    """No usbmuxd socket at all (Linux starts usbmuxd only while an Apple device is plugged in)."""
    address = os.environ.get("USBMUXD_SOCKET_ADDRESS")
    if sys.platform == "win32" or (address and ":" in address):
        return False  # a TCP usbmuxd, or Windows' service: only asking tells
    return not Path(address or "/var/run/usbmuxd").exists()


def discover(run: Run = subprocess.run, tool: str | None = None) -> list[IosDevice]:
    """Connected iPhones and iPads; [] when neither devicectl nor pymobiledevice3 is available."""
    tool = tool or available_tool()
    if tool is None:
        return []
    if tool == DEVICECTL:
        with tempfile.TemporaryDirectory(prefix="mbdeploy-devicectl-") as scratch:
            output = Path(scratch) / "devices.json"
            done = run(devicectl_list(output), capture_output=True, text=True, timeout=60)
            if done.returncode != 0 or not output.exists():
                raise DeviceError(f"xcrun devicectl list devices failed: {(done.stderr or '').strip()[-200:]}")
            infos = parse_devicectl_devices(json.loads(output.read_text()))
    else:
        if _no_usbmuxd():
            return []
        done = run(pmd_list(_pymobiledevice3()), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            if "Failed to connect to usbmuxd" in (done.stderr or "") + (done.stdout or ""):
                # Linux starts usbmuxd (udev) only while an Apple device is plugged in: no socket, no phone.
                return []
            raise DeviceError(f"pymobiledevice3 usbmux list failed: {(done.stderr or '').strip()[-200:]}")
        try:
            infos = parse_usbmux_devices(json.loads(done.stdout or "[]"))
        except json.JSONDecodeError:
            raise DeviceError("pymobiledevice3 usbmux list printed something that is not JSON") from None
    return [IosDevice(info, tool, run) for info in infos]

