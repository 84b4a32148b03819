"""The `android` device kind: a phone behind an adb server, through adbutils.

The adb server is found like adb finds it: `--adb-host HOST[:PORT]`, else
`ADB_SERVER_SOCKET=tcp:HOST:PORT`, else `ANDROID_ADB_SERVER_PORT` on this
host (default 5037). A local server that is not running is started with
`adb -P PORT start-server`; a remote one must already run (a device rack).

Every command is an argv list quoted with shlex and run with the shell v2
protocol, so exit status and stderr come back apart and a stream that ends
without an exit status means the phone went away (DeviceDisconnected).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mbdeploy.atomic import sha256_file, write_json
from mbdeploy.devices.base import Device, DeviceInfo, SensorReading, ShellResult, device_name_key, quote_argv
from mbdeploy.devices.leftovers import bounded, end_leftovers, pid_file
from mbdeploy.errors import DeviceDisconnected, DeviceError, DeviceNotFound, InvalidInput

DEFAULT_PORT = 5037
WORKDIR = "/data/local/tmp/mbdeploy"

# What to try for each adb state other than `device` (adb's own state names).
STATE_FIXES = {
    "unauthorized": "unlock the phone and accept the 'Allow USB debugging?' prompt (tick 'Always allow'); "
    "if no prompt shows, use 'Revoke USB debugging authorizations' in Developer options and reconnect",
    "offline": "reconnect the cable (or `adb reconnect`); if it stays offline, run `adb kill-server` and retry",
    "no permissions": "add a udev rule for the phone's USB vendor id (or run adb as a user in the plugdev group), then reconnect",
    "authorizing": "wait a few seconds: the phone is still checking the adb key",
    "connecting": "wait a few seconds, then check the cable or the network address",
    "recovery": "reboot the phone into Android (`adb reboot`)",
    "bootloader": "reboot the phone into Android (fastboot reboot)",
    "sideload": "finish or cancel the sideload, then reboot into Android",
}

# ThermalManager.THERMAL_STATUS_* values, as `dumpsys thermalservice` prints them.
THERMAL_STATUS = {0: "none", 1: "light", 2: "moderate", 3: "severe", 4: "critical", 5: "emergency", 6: "shutdown"}


@dataclass(frozen=True)
class ServerAddress:
    host: str
    port: int

    @property
    def is_local(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def server_address(adb_host: str | None = None, environ: dict | None = None) -> ServerAddress:
    """Where the adb server is: --adb-host, then ADB_SERVER_SOCKET, then ANDROID_ADB_SERVER_PORT."""
    env = os.environ if environ is None else environ
    if adb_host:
        host, sep, port = adb_host.rpartition(":") if adb_host.count(":") == 1 else (adb_host, "", "")
        return ServerAddress(host or "127.0.0.1", _port(port, f"--adb-host {adb_host!r}") if sep else DEFAULT_PORT)
    socket_spec = env.get("ADB_SERVER_SOCKET")
    if socket_spec:
        match = re.fullmatch(r"tcp:(?:(?P<host>[^:]+):)?(?P<port>\d+)", socket_spec)
        if not match:
            raise InvalidInput(f"ADB_SERVER_SOCKET={socket_spec!r} must look like tcp:HOST:PORT or tcp:PORT")
        return ServerAddress(match["host"] or "127.0.0.1", _port(match["port"], "ADB_SERVER_SOCKET"))
    port = env.get("ANDROID_ADB_SERVER_PORT")
    return ServerAddress("127.0.0.1", _port(port, "ANDROID_ADB_SERVER_PORT") if port else DEFAULT_PORT)


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidInput(f"{where}: port must be a number from 1 to 65535, got {text!r}")
    return int(text)


def _reachable(address: ServerAddress) -> bool:
    try:
        with socket.create_connection((address.host, address.port), timeout=1.0):
            return True
    except OSError:
        return False


def ensure_server(address: ServerAddress) -> None:
    """Start a local adb server if none answers; a remote one must already run."""
    if _reachable(address):
        return
    if not address.is_local:
        raise DeviceError(
            f"no adb server answers at {address}; start one there with `adb -a -P {address.port} start-server`",
            address=str(address),
        )
    adb = shutil.which("adb")
    if adb is None:
        raise DeviceError(
            "adb is not installed: install Android platform-tools (Debian/Ubuntu: apt-get install adb; "
            "macOS: brew install android-platform-tools) or point --adb-host at a running adb server",
            missing="adb",
        )
    try:
        subprocess.run([adb, "-P", str(address.port), "start-server"], capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        pass
    if not _reachable(address):
        raise DeviceError(f"could not start an adb server on port {address.port} (`adb -P {address.port} start-server`)")


def client(adb_host: str | None = None):
    """An adbutils client for the server, started if it is local and not running."""
    import adbutils

    address = server_address(adb_host)
    ensure_server(address)
    return adbutils.AdbClient(host=address.host, port=address.port, socket_timeout=30)


def discover(adb_host: str | None = None) -> list["AndroidDevice"]:
    """Every phone the adb server knows, whatever its state (listed with the fix to try)."""
    import adbutils

    adb = client(adb_host)
    try:
        entries = adb.list()
    except adbutils.AdbError as exc:
        raise DeviceError(f"the adb server at {server_address(adb_host)} did not answer: {exc}") from None
    return [AndroidDevice(entry.serial, adb_host=adb_host, state=entry.state, adb=adb) for entry in entries]


def resolve(name: str | None = None, adb_host: str | None = None) -> "AndroidDevice":
    """A phone by name (serial, model, device, product name or alias), else $ANDROID_SERIAL, else the only one online."""
    devices = discover(adb_host)
    seen = ", ".join(f"{d.id} ({d.state})" for d in devices) or "none"
    name = name or os.environ.get("ANDROID_SERIAL")
    if name:
        found = [d for d in devices if d.id == name] or [d for d in devices if d.matches(name)]
        if len(found) != 1:
            what = "no phone" if not found else f"{len(found)} phones"
            raise DeviceNotFound(f"{what} match {name!r}; adb sees: {seen}", name=name)
        return found[0]
    online = [d for d in devices if d.state == "device"]
    if len(online) != 1:
        raise DeviceNotFound(
            f"{'no phone is' if not online else 'more than one phone is'} online; name one with --device "
            f"or ANDROID_SERIAL; adb sees: {seen}"
        )
    return online[0]


def saved_settings_file(serial: str) -> Path:
    """Where a phone's original settings wait on the host until they are restored (XDG state, not cache)."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "mbdeploy" / "android-settings" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", serial) + ".json")


def parse_getprop(text: str) -> dict[str, str]:
    """`getprop` output (`[name]: [value]` per line) -> dict."""
    return dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, flags=re.MULTILINE))


def parse_battery(text: str) -> dict:
    """`dumpsys battery` -> level (%), charging (USB/AC/wireless powered) and status."""
    fields = dict(re.findall(r"^\s*([A-Za-z ]+):\s*(.*?)\s*$", text, flags=re.MULTILINE))
    powered = [kind for kind in ("USB", "AC", "Wireless", "Dock") if fields.get(f"{kind} powered") == "true"]
    level = fields.get("level")
    return {
        "level": int(level) if level and level.isdigit() else None,
        "charging": bool(powered),
        "powered_by": powered,
        "status": {"1": "unknown", "2": "charging", "3": "discharging", "4": "not charging", "5": "full"}.get(
            fields.get("status", ""), None
        ),
    }


def parse_thermal_status(text: str) -> str | None:
    match = re.search(r"^Thermal Status:\s*(\d+)", text, flags=re.MULTILINE)
    return THERMAL_STATUS.get(int(match.group(1)), match.group(1)) if match else None


def parse_sensor_lines(text: str) -> SensorReading:
    """Lines `t NAME MILLIDEG` and `f cpuN KHZ` printed by the sensor script below."""
    reading = SensorReading()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "t" and re.fullmatch(r"-?\d+", parts[2]):
            value = int(parts[2])
            celsius = value / 1000 if abs(value) >= 200 else float(value)  # a few zones report whole degrees
            if -40 < celsius < 150:  # drop the -273 and 0xFFFF placeholders of absent sensors
                reading.temperatures_c[parts[1]] = celsius
        elif len(parts) == 3 and parts[0] == "f" and parts[2].isdigit():
            reading.cpu_freq_khz[parts[1]] = int(parts[2])
    return reading


_SENSOR_SCRIPT = (
    'for z in /sys/class/thermal/thermal_zone*; do [ -r "$z/temp" ] && '
    'echo "t $(cat "$z/type" 2>/dev/null | tr -d " ") $(cat "$z/temp" 2>/dev/null)"; done; '
    "for c in /sys/devices/system/cpu/cpu[0-9]*; do [ -r \"$c/cpufreq/scaling_cur_freq\" ] && "
    'echo "f ${c##*/} $(cat "$c/cpufreq/scaling_cur_freq")"; done; true'
)


class AndroidDevice(Device):
    kind = "android"
    default_runner = "benchmark_model"

    def __init__(
        self,
        serial: str,
        adb_host: str | None = None,
        state: str = "device",
        keep: bool = False,
        workdir: str = WORKDIR,
        adb=None,
        benchmark_settings: bool = True,
    ) -> None:
        if not workdir.startswith("/data/local/tmp/") or workdir.rstrip("/") == "/data/local/tmp":
            raise InvalidInput(f"android work folder must be a subfolder of /data/local/tmp, got {workdir!r}")
        self.serial = serial
        self.adb_host = adb_host
        self.state = state
        self.keep = keep
        self._workdir = workdir.rstrip("/")
        self._client = adb
        self._handle = None
        self._props: dict[str, str] | None = None
        self._workdir_made = False
        self._restore: list[list[str]] = []
        self._settings_applied: list[str] = []
        self._settings_wanted = benchmark_settings
        self._power_shared: dict = {}  # kept by every power meter of this device (gauge probe, pushed sampler)
        self.ended_leftovers: list[int] = []  # pids of an earlier bench's device-side processes ended here

    # ------------------------------------------------------------ plumbing
    @property
    def id(self) -> str:
        return self.serial

    @property
    def _adb(self):
        # One adbutils handle per device: it caches the feature list that shell v2 needs.
        if self._handle is None:
            if self._client is None:
                self._client = client(self.adb_host)
            self._handle = self._client.device(self.serial)
        return self._handle

    @property
    def python(self) -> str:
        """The Python a device-side script runs with: a test device names the host's (`mbdeploy.python`)."""
        return self.properties().get("mbdeploy.python") or "python3"

    def _require_online(self) -> None:
        if self.state != "device":
            fix = STATE_FIXES.get(self.state, "reconnect the phone")
            raise DeviceError(f"{self.serial} is {self.state}: {fix}", serial=self.serial, state=self.state)

    def _current_state(self) -> str | None:
        try:
            for entry in self._client.list() if self._client else []:
                if entry.serial == self.serial:
                    return entry.state
        except Exception:  # noqa: BLE001 - the server itself may be gone too
            return None
        return None

    def _gone(self, doing: str, exc: BaseException) -> DeviceDisconnected:
        state = self._current_state()
        now = f"now {state}" if state else "no longer listed by adb"
        return DeviceDisconnected(
            f"{self.serial} disconnected during {doing} ({now}); reconnect it and rerun with --resume",
            serial=self.serial,
            state=state,
            cause=str(exc),
        )

    def shell(self, argv: list[str], timeout: float | None = None) -> ShellResult:
        import adbutils

        self._require_online()
        command = quote_argv(argv)
        doing = f"`{argv[0]}`"
        try:
            result = self._adb.shell2(command, timeout=timeout, v2=True)
        except adbutils.AdbTimeout:
            raise DeviceError(f"{doing} did not finish within {timeout} s on {self.serial}", serial=self.serial) from None
        except (adbutils.AdbError, EOFError, OSError) as exc:
            raise self._gone(doing, exc) from None
        return ShellResult(exit_code=result.returncode, stdout=result.stdout, stderr=result.stderr)

    def _check(self, argv: list[str], timeout: float | None = 60) -> str:
        result = self.shell(argv, timeout=timeout)
        if not result.ok:
            raise DeviceError(f"`{quote_argv(argv)}` failed on {self.serial} (exit {result.exit_code}): {result.stderr.strip()}")
        return result.stdout

    def bounded(self, argv: list[str], seconds: float, name: str) -> list[str]:
        # A deadline and a recorded pid, so neither a dead host nor the next bench leaves it running.
        return bounded(argv, seconds, pid_file(self.workdir, name))

    # ------------------------------------------------------------ files
    @property
    def workdir(self) -> str:
        if not self._workdir_made:
            self._check(["mkdir", "-p", self._workdir])
            self._workdir_made = True
            # What a crashed, killed or unplugged earlier bench left running here ends now.
            self.ended_leftovers = end_leftovers(self, self._workdir)
            if self._settings_wanted:
                # First real use of the phone for a run: steady clocks and screen until close().
                self._settings_wanted = False
                self.apply_benchmark_settings()
        return self._workdir

    def push(self, local: Path, remote: str) -> None:
        import adbutils

        self._require_online()
        local = Path(local)
        parent = remote.rsplit("/", 1)[0] or "/"
        try:  # adbd creates missing parent folders of a pushed file itself
            self._adb.sync.push(local, remote, mode=0o755 if os.access(local, os.X_OK) else 0o644)
        except (EOFError, OSError) as exc:
            raise self._gone(f"push of {local.name}", exc) from None
        except adbutils.AdbError as exc:
            free = self.shell(["df", "-h", parent]).stdout.strip().splitlines()[-1:]
            raise DeviceError(
                f"push of {local} to {remote} failed ({exc}); if the device disk is full, free space "
                f"(df: {' '.join(free) or 'unknown'})",
                serial=self.serial,
            ) from None
        self.check_arrived(local, remote)

    def check_arrived(self, local: Path, remote: str) -> None:
        """Raise unless the device copy has the local size and sha256 (size alone if it has no sha256sum)."""
        expected_size = Path(local).stat().st_size
        # One round trip: size and hash together (toybox has had sha256sum since Android 6). The file goes
        # in on stdin: given a name holding a backslash or newline, sha256sum prefixes its digest with `\`.
        result = self.shell(["sh", "-c", 'wc -c < "$1"; sha256sum < "$1" 2>/dev/null || true', "check", remote])
        fields = result.stdout.split()
        size = int(fields[0]) if fields and fields[0].isdigit() else self._adb.sync.stat(remote).size
        if size != expected_size:
            raise DeviceError(
                f"push of {Path(local).name} to {remote} arrived incomplete: {size} of {expected_size} bytes",
                serial=self.serial,
            )
        if len(fields) >= 2 and fields[1] != sha256_file(Path(local)):
            raise DeviceError(f"push of {Path(local).name} to {remote} arrived corrupted: sha256 differs", serial=self.serial)

    def pull(self, remote: str, local: Path) -> None:
        import adbutils

        self._require_online()
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{local.name}.", suffix=".tmp", dir=local.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            self._adb.sync.pull_file(remote, tmp)
            os.replace(tmp, local)
        except (EOFError, OSError) as exc:
            raise self._gone(f"pull of {remote}", exc) from None
        except adbutils.AdbError as exc:
            raise DeviceError(f"pull of {remote} from {self.serial} failed: {exc}", serial=self.serial) from None
        finally:
            tmp.unlink(missing_ok=True)

    def cleanup(self) -> None:
        """Remove the work folder unless --keep was given."""
        if self.keep or self.state != "device":
            return
        self._check(["rm", "-rf", self._workdir])
        self._workdir_made = False
        self._power_shared.clear()

    def close(self) -> None:
        if self.state == "device":
            try:
                self.restore_settings()
                if self._workdir_made:
                    self.cleanup()
            except DeviceError:
                pass  # the phone went away; nothing left to undo on it

    # ------------------------------------------------------------ facts
    def properties(self) -> dict[str, str]:
        if self._props is None:
            self._props = parse_getprop(self._check(["getprop"]))
        return self._props

    def match_keys(self) -> list[str]:
        """Names `--device` accepts: serial, model, device, product name, and the model's first word ('pixel')."""
        keys = [self.serial]
        if self.state == "device":
            props = self.properties()
            model = props.get("ro.product.model", "")
            keys += [model, props.get("ro.product.device", ""), props.get("ro.product.name", "")]
            keys += [model.split()[0] if model.split() else ""]
        out: list[str] = []
        for key in keys:
            if key and device_name_key(key) not in out:
                out.append(device_name_key(key))
        return out

    def matches(self, name: str) -> bool:
        return device_name_key(name) in self.match_keys()

    def battery(self) -> dict:
        return parse_battery(self._check(["dumpsys", "battery"]))

    def thermal_status(self) -> str | None:
        result = self.shell(["dumpsys", "thermalservice"])
        return parse_thermal_status(result.stdout) if result.ok else None

    def sensors(self) -> SensorReading:
        return parse_sensor_lines(self._check(["sh", "-c", _SENSOR_SCRIPT]))

    def info(self) -> DeviceInfo:
        if self.state != "device":
            return DeviceInfo(
                kind=self.kind,
                id=self.serial,
                state=self.state,
                extra={"fix": STATE_FIXES.get(self.state, "reconnect the phone"), "match": self.match_keys()},
            )
        props = self.properties()
        reading = self.sensors()
        cores = self.shell(["nproc"]).stdout.strip()
        governor = self.shell(["cat", "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"])
        release, sdk = props.get("ro.build.version.release"), props.get("ro.build.version.sdk")
        return DeviceInfo(
            kind=self.kind,
            id=self.serial,
            model=props.get("ro.product.model"),
            soc=props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware"),
            abi=props.get("ro.product.cpu.abi"),
            os=f"Android {release} (SDK {sdk})" if release else None,
            cores=int(cores) if cores.isdigit() else None,
            governor=governor.stdout.strip() if governor.ok else None,
            temperature_c=max(reading.temperatures_c.values()) if reading.temperatures_c else None,
            state="online",
            extra={
                "adb_state": self.state,
                "device": props.get("ro.product.device"),
                "name": props.get("ro.product.name"),
                "manufacturer": props.get("ro.product.manufacturer"),
                "sdk": int(sdk) if sdk and sdk.isdigit() else None,
                "battery": self.battery(),
                "thermal_status": self.thermal_status(),
                "match": self.match_keys(),
                "python": self.properties().get("mbdeploy.python"),
                "settings_applied": list(self.settings_applied),
            },
        )

    # ------------------------------------------------------------ benchmark conditions
    @property
    def settings_applied(self) -> list[str]:
        return list(self._settings_applied)

    def apply_benchmark_settings(self, fixed_performance: bool = True, keep_screen_on: bool = True) -> list[str]:
        """Stable clocks and a steady screen for the timed runs; returns what was applied (restored on close).

        The originals are written to the host (`saved_settings_file`) before anything changes. A bench
        killed before it restored them leaves that file, and the next run restores from it instead of
        reading the phone, which would then show the forced values.
        """
        saved_file = saved_settings_file(self.serial)
        try:
            saved = json.loads(saved_file.read_text()).get("originals", {})
        except (OSError, ValueError, AttributeError):
            saved = {}
        sdk = self.properties().get("ro.build.version.sdk", "0")
        fixed = fixed_performance and sdk.isdigit() and int(sdk) >= 30  # Android 11+, no root needed
        originals = dict(saved)
        if keep_screen_on and "stay_on_while_plugged_in" not in originals:
            before = self.shell(["settings", "get", "global", "stay_on_while_plugged_in"])
            if before.ok:
                old = before.stdout.strip()
                originals["stay_on_while_plugged_in"] = old if old.isdigit() else "0"
        if fixed:
            originals["fixed_performance_mode"] = "false"  # `cmd power` has no getter; off is Android's default
        if not originals:
            return []
        write_json(saved_file, {"serial": self.serial, "originals": originals})
        if fixed and self.shell(["cmd", "power", "set-fixed-performance-mode-enabled", "true"]).ok:
            self._settings_applied.append("fixed_performance_mode")
        if "fixed_performance_mode" in originals:
            self._restore.append(["cmd", "power", "set-fixed-performance-mode-enabled",
                                  originals["fixed_performance_mode"]])
        # A screen that turns off mid-run changes scheduling and power draw; keep it on while plugged in.
        if keep_screen_on and "stay_on_while_plugged_in" in originals and self.shell(["svc", "power", "stayon", "true"]).ok:
            self._settings_applied.append("stay_awake")
        if "stay_on_while_plugged_in" in originals:
            self._restore.append(["settings", "put", "global", "stay_on_while_plugged_in",
                                  originals["stay_on_while_plugged_in"]])
        return list(self._settings_applied)

    def restore_settings(self) -> None:
        if not self._restore:
            return  # nothing of ours to undo (a host copy left by a killed run waits for the next bench)
        while self._restore:
            self.shell(self._restore.pop())
        saved_settings_file(self.serial).unlink(missing_ok=True)  # restored: the host copy has done its job

    def power_meter(self, allow_charging: bool = False):
        from mbdeploy.devices.android_power import AndroidPowerMeter

        return AndroidPowerMeter(self, allow_charging=allow_charging, shared=self._power_shared)
