"""An adb test device: the device side of the adb protocol on loopback TCP.

There is no phone here, so tests (and users without one) run this instead.
The REAL adb server connects to it with `adb connect 127.0.0.1:PORT` and
adbutils talks to it through that server exactly as to a phone:

- transport: CNXN (no AUTH), OPEN, OKAY, WRTE, CLSE, one WRTE in flight per
  stream until the server's OKAY (protocol version 0x01000001 flow control);
- `shell:` / `exec:` (stdout and stderr merged, no exit status) and
  `shell,v2:` (framed stdout/stderr/exit status, as adbd sends it);
- `sync:` with STAT, LIST, SEND, RECV, DATA, DONE, QUIT for push/pull/stat.

Commands run like `adb shell` runs them on a phone (`shell="phone"`, the
default): under mksh, Android's shell, with a PATH of toybox applets built
with Android's own configuration (`scripts/build-toybox.sh`) and the
stand-ins below, so a GNU-only option fails here as on a phone.
`shell="host"` runs them under the host's /bin/sh and PATH instead. When the
host's stream goes away (the host died, or `stop()` pulled the cable), the
command gets what adbd gives it: SIGHUP to the one process it spawned, and
its pipes closed (adbd's shell_service.cpp); `close()` then kills whatever
is left, so no test leaves a process behind.

The device's file system is a sandbox folder: every sync path maps under
`root`, and in shell commands the device prefixes `/data/local/tmp`,
`/data/data`, `/sdcard` and `/sys` are rewritten to their sandbox folders;
everything else (`/proc`, absolute host paths) is the host's, so a runner
that needs a Python runs the host's. Stand-ins on the shell's PATH answer `getprop`
(a Pixel 7 by default: arm64 props, Android 14/SDK 34), `dumpsys`, `cmd`,
`settings`, `input`, `am`, `pm` and `logcat`; the `/sys` stand-in holds a
battery and thermal zones whose values a test can replay from a trace.
The sampler reads `$MBDEPLOY_SYSFS` (set here to the stand-in) instead of
`/sys`, since a host shell script cannot be rewritten on the fly.

Command line: python -m mbdeploy.testing.adb_device --port PORT [--model 'Pixel 7'] [--root DIR] [--shell host]
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from mbdeploy.cache import cache_root

A_CNXN = 0x4E584E43
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_WRTE = 0x45545257
A_CLSE = 0x45534C43
A_AUTH = 0x48545541
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
SYNC_DATA_MAX = 64 * 1024
FEATURES = "shell_v2,cmd"

# AUTH packet types (adb's protocol.txt)
_AUTH_TOKEN, _AUTH_SIGNATURE, _AUTH_RSAPUBLICKEY = 1, 2, 3

# shell protocol v2 packet ids (adb's shell_protocol.h)
_V2_STDIN, _V2_STDOUT, _V2_STDERR, _V2_EXIT, _V2_CLOSE_STDIN = 0, 1, 2, 3, 4

PIXEL_7 = {
    "ro.product.model": "Pixel 7",
    "ro.product.device": "panther",
    "ro.product.name": "panther",
    "ro.product.brand": "google",
    "ro.product.manufacturer": "Google",
    "ro.soc.manufacturer": "Google",
    "ro.soc.model": "GS201",
    "ro.board.platform": "gs201",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.build.fingerprint": "google/panther/panther:14/UQ1A.240105.004/11206848:user/release-keys",
    "ro.serialno": "TESTPANTHER01",
}

THERMAL_ZONES = {"battery": 28500, "cpu-1-0-usr": 35200, "skin-therm": 31000}

_DEVICE_PREFIXES = ("/data/local/tmp", "/data/data", "/storage/emulated/0", "/sdcard", "/sys")

_STAND_INS = {
    "getprop": r"""
if [ $# -eq 0 ]; then cat "$TD_STATE/props.txt"; exit 0; fi
if [ -f "$TD_STATE/props/$1" ]; then cat "$TD_STATE/props/$1"; else echo "${2:-}"; fi
""",
    "dumpsys": r"""
[ $# -eq 0 ] && { ls "$TD_STATE/dumpsys"; exit 0; }
name=$(printf '%s' "$1" | tr '/' '_')
if [ -f "$TD_STATE/dumpsys/$name" ]; then cat "$TD_STATE/dumpsys/$name"; else echo "Can't find service: $1"; fi
""",
    "cmd": r"""
echo "$*" >> "$TD_STATE/cmd.log"
if [ "$1 $2" = "power set-fixed-performance-mode-enabled" ]; then
  echo "$3" > "$TD_STATE/fixed_performance_mode"; exit 0
fi
echo "cmd: Can't find service: $1" >&2; exit 20
""",
    "settings": r"""
echo "$*" >> "$TD_STATE/cmd.log"
mkdir -p "$TD_STATE/settings"
case "$1" in
  get) if [ -f "$TD_STATE/settings/$2.$3" ]; then cat "$TD_STATE/settings/$2.$3"; else echo null; fi ;;
  put) echo "$4" > "$TD_STATE/settings/$2.$3" ;;
  delete) rm -f "$TD_STATE/settings/$2.$3" ;;
  *) echo "invalid command: $1" >&2; exit 1 ;;
esac
""",
    "input": 'echo "input $*" >> "$TD_STATE/cmd.log"\n',
    # `svc power stayon` writes the global setting as PowerCommand.java does (true = AC|USB|WIRELESS = 7).
    "svc": r"""
echo "svc $*" >> "$TD_STATE/cmd.log"
if [ "$1 $2" = "power stayon" ]; then
  case "$3" in true) v=7 ;; false) v=0 ;; usb) v=2 ;; ac) v=1 ;; wireless) v=4 ;; *) exit 1 ;; esac
  mkdir -p "$TD_STATE/settings" && echo "$v" > "$TD_STATE/settings/global.stay_on_while_plugged_in"
fi
""",
    "am": 'echo "am $*" >> "$TD_STATE/cmd.log"\n',
    "pm": 'echo "pm $*" >> "$TD_STATE/cmd.log"\n',
    "logcat": '[ -f "$TD_STATE/logcat.txt" ] && cat "$TD_STATE/logcat.txt"\nexit 0\n',
    # run-as PACKAGE CMD...: the command in the (debuggable) app's data folder.
    "run-as": 'd="$TD_ROOT/data/data/$1"; shift; mkdir -p "$d" && cd "$d" && exec "$@"\n',
}


def _battery_dumpsys(level: int, usb_powered: bool, voltage_mv: int) -> str:
    # Layout of `dumpsys battery` (BatteryService.dumpInternal).
    status = 2 if usb_powered else 3  # BatteryManager.BATTERY_STATUS_CHARGING / _DISCHARGING
    return (
        "Current Battery Service state:\n"
        "  AC powered: false\n"
        f"  USB powered: {'true' if usb_powered else 'false'}\n"
        "  Wireless powered: false\n"
        "  Max charging current: 0\n"
        f"  status: {status}\n"
        "  health: 2\n"
        "  present: true\n"
        f"  level: {level}\n"
        "  scale: 100\n"
        f"  voltage: {voltage_mv}\n"
        "  temperature: 285\n"
        "  technology: Li-ion\n"
    )


def _thermal_dumpsys(status: int) -> str:
    # Layout of `dumpsys thermalservice` (ThermalManagerService.dump).
    lines = ["IsStatusOverride: false", f"Thermal Status: {status}", "Cached temperatures:"]
    lines += [f"\tTemperature{{mValue={t / 1000:.1f}, mType=3, mName={n}, mStatus=0}}" for n, t in THERMAL_ZONES.items()]
    lines += ["HAL Ready: true"]
    return "\n".join(lines) + "\n"


class _Stream:
    """One adb stream: ids on both ends, flow control, and an inbox of WRTE payloads."""

    def __init__(self, conn: "_Connection", local_id: int, remote_id: int) -> None:
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        self._can_send = threading.Event()
        self._can_send.set()
        self.closed = False
        self._buffer = b""

    # --- from the server
    def acked(self) -> None:
        self._can_send.set()

    def received(self, data: bytes) -> None:
        self.inbox.put(data)

    def remote_closed(self) -> None:
        self.closed = True
        self._can_send.set()
        self.inbox.put(None)

    # --- to the server
    def write(self, data: bytes) -> bool:
        step = self.conn.max_payload
        for start in range(0, len(data), step):
            while not self._can_send.wait(0.5):
                if self.closed or self.conn.dead:
                    return False
            if self.closed or self.conn.dead:
                return False
            self._can_send.clear()
            self.conn.send(A_WRTE, self.local_id, self.remote_id, data[start : start + step])
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.send(A_CLSE, self.local_id, self.remote_id)
        self.conn.forget(self.local_id)
        self.inbox.put(None)  # release a reader still waiting on this stream

    def read_exact(self, n: int) -> bytes | None:
        """n bytes of the incoming byte stream, or None once the peer closed."""
        while len(self._buffer) < n:
            chunk = self.inbox.get()
            if chunk is None:
                return None
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data


class _Connection:
    """One TCP connection from the adb server: the packet loop."""

    def __init__(self, sock: socket.socket, device: "AdbTestDevice") -> None:
        self.sock = sock
        self.device = device
        self.max_payload = 4096
        self.dead = False
        self._send_lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        header = struct.pack("<6I", command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF)
        try:
            with self._send_lock:
                self.sock.sendall(header + data)
        except OSError:
            self.dead = True

    def forget(self, local_id: int) -> None:
        self._streams.pop(local_id, None)

    def _recv_exact(self, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def serve(self) -> None:
        try:
            while True:
                header = self._recv_exact(24)
                if header is None:
                    break
                command, arg0, arg1, length, _check, magic = struct.unpack("<6I", header)
                if magic != command ^ 0xFFFFFFFF:
                    break
                data = self._recv_exact(length) if length else b""
                if data is None:
                    break
                self._dispatch(command, arg0, arg1, data)
        except OSError:
            pass
        finally:
            self.dead = True
            for stream in list(self._streams.values()):
                stream.remote_closed()
            try:
                self.sock.close()
            except OSError:
                pass

    def _dispatch(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            self.max_payload = max(4096, min(arg1, MAX_PAYLOAD))
            if self.device.unauthorized:
                self.send(A_AUTH, _AUTH_TOKEN, 0, os.urandom(20))
                return
            self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.device.banner().encode() + b"\0")
        elif command == A_AUTH:
            # A phone whose user never accepts the key: every signature is refused with a new token, and
            # the offered public key just waits for a prompt nobody answers, so the server says `unauthorized`.
            if arg0 == _AUTH_SIGNATURE:
                self.send(A_AUTH, _AUTH_TOKEN, 0, os.urandom(20))
        elif command == A_OPEN:
            service = data.rstrip(b"\0").decode("utf-8", "replace")
            handler = self.device.service_handler(service)
            if handler is None:
                self.send(A_CLSE, 0, arg0)
                return
            local_id, self._next_id = self._next_id, self._next_id + 1
            stream = _Stream(self, local_id, arg0)
            self._streams[local_id] = stream
            self.send(A_OKAY, local_id, arg0)
            threading.Thread(target=handler, args=(stream,), daemon=True).start()
        elif command == A_OKAY:
            stream = self._streams.get(arg1)
            if stream:
                stream.acked()
        elif command == A_WRTE:
            stream = self._streams.get(arg1)
            if stream is None:
                self.send(A_CLSE, arg1, arg0)
                return
            self.send(A_OKAY, arg1, arg0)
            stream.received(data)
        elif command == A_CLSE:
            stream = self._streams.pop(arg1, None)
            if stream:
                stream.remote_closed()


class AdbTestDevice:
    """A phone stand-in: start() listens on 127.0.0.1:port, stop() vanishes like an unplugged cable."""

    def __init__(
        self,
        root: Path | str,
        port: int = 0,
        model: str | None = None,
        properties: dict[str, str] | None = None,
        python: str | None = None,
        tools: dict[str, str] | None = None,
        dumpsys: dict[str, str] | None = None,
        unauthorized: bool = False,
        shell: str | None = None,
    ) -> None:
        self.shell_kind = shell or os.environ.get("MBDEPLOY_TEST_PHONE_SHELL", "phone")
        self._shell_argv, self._phone_path = phone_shell(self.shell_kind)
        self.root = Path(root).resolve()
        self.unauthorized = unauthorized  # answer CNXN with AUTH and never accept the host's key
        if re.search(r"[\s'\"\\$`]", str(self.root)):
            raise ValueError(f"the test device root must be a path without spaces or quotes: {self.root}")
        self.port = port
        self.properties = dict(PIXEL_7)
        if model:
            self.properties["ro.product.model"] = model
        # The test device runs host programs, so a runner needs the host's Python.
        self.properties["mbdeploy.python"] = python or sys.executable
        self.properties.update(properties or {})
        self.state = Path(tempfile.mkdtemp(prefix="mbdeploy-adb-test-device-"))
        self._tools = dict(_STAND_INS, **(tools or {}))
        self._dumpsys = dict(dumpsys or {})
        self.push_fault: str | None = None  # "flip", "truncate" or "full": spoil the next pushes on purpose
        self._listener: socket.socket | None = None
        self._connections: list[_Connection] = []
        self._processes: set[subprocess.Popen] = set()
        self._groups: set[int] = set()  # every command's process group, killed by close()
        self._trace_thread: threading.Thread | None = None
        self._trace_stop = threading.Event()
        self._lock = threading.Lock()
        self._started = threading.Condition()
        self.commands: list[str] = []  # every shell command as it was started, in order (tests wait on these)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> int:
        (self.root / "data/local/tmp").mkdir(parents=True, exist_ok=True)
        (self.root / "sdcard").mkdir(parents=True, exist_ok=True)
        if not (self.root / "sys/class/power_supply/battery").exists():
            self.set_battery(level=80, usb_powered=False, current_ua=-250_000, voltage_uv=3_900_000)
            self.set_thermal(THERMAL_ZONES)
        self._write_state()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(4)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()
        return self.port

    def stop(self) -> None:
        """Close every socket and kill every command, like a phone that is unplugged."""
        self._trace_stop.set()
        if self._listener is not None:
            try:
                # shutdown() wakes the thread blocked in accept() and frees the port at once;
                # close() alone leaves the socket listening until that thread lets go.
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self._listener.close()
            except OSError:
                pass
            self._listener = None
        with self._lock:
            connections, self._connections = self._connections, []
            processes = list(self._processes)
        for conn in connections:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.sock.close()
        for proc in processes:
            _hang_up(proc)

    def close(self) -> None:
        self.stop()
        with self._lock:
            groups, self._groups = list(self._groups), set()
        for group in groups:  # test hygiene: nothing a test started outlives the device
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        shutil.rmtree(self.state, ignore_errors=True)

    def __enter__(self) -> "AdbTestDevice":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock, self)
            with self._lock:
                self._connections.append(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    # ------------------------------------------------------------ configuration
    def banner(self) -> str:
        props = self.properties
        return (
            f"device::ro.product.name={props['ro.product.name']};ro.product.model={props['ro.product.model']};"
            f"ro.product.device={props['ro.product.device']};features={FEATURES}"
        )

    def set_property(self, name: str, value: str) -> None:
        self.properties[name] = value
        self._write_state()

    def set_dumpsys(self, service: str, text: str) -> None:
        self._dumpsys[service] = text
        self._write_state()

    def set_logcat(self, text: str) -> None:
        (self.state / "logcat.txt").write_text(text)

    def wait_for_command(self, text: str, count: int = 1, timeout: float = 60.0) -> bool:
        """Wait until `count` shell commands containing `text` have started; False on timeout."""
        with self._started:
            return self._started.wait_for(lambda: sum(text in c for c in self.commands) >= count, timeout)

    def live_processes(self) -> list[int]:
        """Host pids of this device's processes still running (their command line names the device root)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if str(self.root).encode() in cmdline and stat.rsplit(")", 1)[-1].split()[0] != "Z":
                found.append(int(entry.name))
        return found

    def command_log(self) -> list[str]:
        """What `cmd`, `settings`, `input`, `am`, `pm` were asked, one line each."""
        path = self.state / "cmd.log"
        return path.read_text().splitlines() if path.exists() else []

    def set_battery(self, level: int, usb_powered: bool, current_ua: int, voltage_uv: int) -> None:
        supply = self.root / "sys/class/power_supply"
        for name, value in {
            "battery/capacity": level,
            "battery/status": "Charging" if usb_powered else "Discharging",
            "battery/current_now": current_ua,
            "battery/voltage_now": voltage_uv,
            "usb/online": int(usb_powered),
        }.items():
            _write_atomic(supply / name, f"{value}\n")
        self._battery = (level, usb_powered, voltage_uv)
        self._dumpsys["battery"] = _battery_dumpsys(level, usb_powered, voltage_uv // 1000)
        if self.state.exists():
            self._write_state()

    def set_thermal(self, zones: dict[str, int], status: int = 0) -> None:
        """Thermal zones (millidegrees C) and the thermal service status (0 none .. 6 shutdown)."""
        base = self.root / "sys/class/thermal"
        for index, (name, millideg) in enumerate(zones.items()):
            _write_atomic(base / f"thermal_zone{index}/type", f"{name}\n")
            _write_atomic(base / f"thermal_zone{index}/temp", f"{millideg}\n")
        self._dumpsys["thermalservice"] = _thermal_dumpsys(status)
        if self.state.exists():
            self._write_state()

    def play_battery_trace(self, samples: list[tuple[int, int]], interval_s: float = 0.02) -> None:
        """Replay (current_now uA, voltage_now uV) pairs into the /sys stand-in, looping, until the next call."""
        self._trace_stop.set()
        if self._trace_thread is not None:
            self._trace_thread.join()
        self._trace_stop = threading.Event()
        stop = self._trace_stop
        supply = self.root / "sys/class/power_supply/battery"

        def play() -> None:
            index = 0
            while not stop.is_set():
                current, voltage = samples[index % len(samples)]
                _write_atomic(supply / "current_now", f"{current}\n")
                _write_atomic(supply / "voltage_now", f"{voltage}\n")
                index += 1
                stop.wait(interval_s)

        self._trace_thread = threading.Thread(target=play, daemon=True)
        self._trace_thread.start()

    def _write_state(self) -> None:
        props_dir = self.state / "props"
        props_dir.mkdir(parents=True, exist_ok=True)
        for name, value in self.properties.items():
            (props_dir / name).write_text(f"{value}\n")
        (self.state / "props.txt").write_text("".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.properties.items())))
        dumpsys_dir = self.state / "dumpsys"
        dumpsys_dir.mkdir(exist_ok=True)
        for service, text in self._dumpsys.items():
            (dumpsys_dir / service.replace("/", "_")).write_text(text)
        bin_dir = self.state / "bin"
        bin_dir.mkdir(exist_ok=True)
        if self._phone_path and not (bin_dir / "sh").exists():
            (bin_dir / "sh").symlink_to(self._shell_argv[0])  # Android's sh is mksh
        for name, body in self._tools.items():
            path = bin_dir / name
            path.write_text(f"#!{self._shell_argv[0]}\n" + body)
            path.chmod(0o755)

    # ------------------------------------------------------------ paths
    def host_path(self, device_path: str) -> Path:
        """Where a device path lives in the sandbox (every absolute path maps under root)."""
        parts = [p for p in device_path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"path escapes the device root: {device_path}")
        return self.root.joinpath(*parts)

    def translate_command(self, command: str) -> str:
        """Rewrite device folders in a shell command to their sandbox folders."""
        pattern = r"(?<![\w/.\-])(" + "|".join(re.escape(p) for p in _DEVICE_PREFIXES) + r")(?![\w.\-])"
        return re.sub(pattern, lambda m: str(self.root) + m.group(1), command)

    # ------------------------------------------------------------ services
    def service_handler(self, service: str):
        if service.startswith(("shell", "exec:")):
            name, _, command = service.partition(":")
            options = name.split(",")[1:]
            return lambda stream: self._shell(stream, command, v2="v2" in options)
        if service == "sync:":
            return self._sync
        return None

    def _shell(self, stream: _Stream, command: str, v2: bool) -> None:
        env = dict(os.environ)
        path = self._phone_path or os.environ.get("PATH", "/usr/bin:/bin")
        env.update(
            PATH=f"{self.state / 'bin'}:{path}",
            TD_STATE=str(self.state),
            TD_ROOT=str(self.root),
            MBDEPLOY_SYSFS=str(self.root / "sys"),
            HOME=str(self.root / "data/local/tmp"),
            TMPDIR=str(self.root / "data/local/tmp"),
        )
        proc = subprocess.Popen(
            [*self._shell_argv, "-c", self.translate_command(command or "exit 0")],
            cwd=self.root,
            env=env,
            stdin=subprocess.PIPE if v2 else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if v2 else subprocess.STDOUT,
            start_new_session=True,
        )
        with self._lock:
            self._processes.add(proc)
            self._groups.add(proc.pid)
        with self._started:
            self.commands.append(command)
            self._started.notify_all()
        send_lock = threading.Lock()

        def pump(source, packet_id: int) -> None:
            while chunk := source.read1(32 * 1024):
                with send_lock:
                    payload = struct.pack("<BI", packet_id, len(chunk)) + chunk if v2 else chunk
                    if not stream.write(payload):
                        break

        pumps = [threading.Thread(target=pump, args=(proc.stdout, _V2_STDOUT), daemon=True)]
        if v2:
            pumps.append(threading.Thread(target=pump, args=(proc.stderr, _V2_STDERR), daemon=True))
        for thread in pumps:
            thread.start()
        threading.Thread(target=self._feed_stdin, args=(stream, proc, v2), daemon=True).start()
        for thread in pumps:
            thread.join()
        code = proc.wait()
        with self._lock:
            self._processes.discard(proc)
        if code < 0:
            code = 128 - code
        if v2 and not stream.closed:
            stream.write(struct.pack("<BIB", _V2_EXIT, 1, code & 0xFF))
        stream.close()

    def _feed_stdin(self, stream: _Stream, proc: subprocess.Popen, v2: bool) -> None:
        """v2 stdin packets go to the command; the client closing the stream hangs up on it, as adbd does."""
        while True:
            if v2:
                header = stream.read_exact(5)
                if header is None:
                    break
                packet_id, length = struct.unpack("<BI", header)
                data = stream.read_exact(length) if length else b""
                if data is None:
                    break
                try:
                    if packet_id == _V2_STDIN and proc.stdin:
                        proc.stdin.write(data)
                        proc.stdin.flush()
                    elif packet_id == _V2_CLOSE_STDIN and proc.stdin:
                        proc.stdin.close()
                except (OSError, ValueError):
                    pass
            elif stream.inbox.get() is None:
                break
        if proc.poll() is None:
            _hang_up(proc)

    def _sync(self, stream: _Stream) -> None:
        def reply(tag: bytes, value: int = 0, data: bytes = b"") -> None:
            stream.write(tag + struct.pack("<I", value) + data)

        def fail(message: str) -> None:
            data = message.encode()
            reply(b"FAIL", len(data), data)

        while True:
            header = stream.read_exact(8)
            if header is None:
                break
            tag, length = header[:4], struct.unpack("<I", header[4:])[0]
            if tag == b"QUIT":
                break
            argument = stream.read_exact(length)
            if argument is None:
                break
            path_text = argument.decode("utf-8", "replace")
            try:
                if tag == b"STAT":
                    self._sync_stat(stream, path_text)
                elif tag == b"LIST":
                    self._sync_list(stream, path_text)
                elif tag == b"RECV":
                    self._sync_recv(stream, path_text, fail)
                elif tag == b"SEND":
                    if not self._sync_send(stream, path_text, fail):
                        break
                else:
                    fail(f"unknown sync command {tag!r}")
                    break
            except ValueError as exc:
                fail(str(exc))
        stream.close()

    def _sync_stat(self, stream: _Stream, path_text: str) -> None:
        try:
            st = os.stat(self.host_path(path_text))
            stream.write(b"STAT" + struct.pack("<III", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime)))
        except OSError:
            stream.write(b"STAT" + struct.pack("<III", 0, 0, 0))

    def _sync_list(self, stream: _Stream, path_text: str) -> None:
        folder = self.host_path(path_text)
        names = [".", ".."] + (sorted(os.listdir(folder)) if folder.is_dir() else [])
        for name in names:
            try:
                st = os.stat(folder / name)
            except OSError:
                continue
            encoded = name.encode()
            stream.write(b"DENT" + struct.pack("<IIII", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime), len(encoded)) + encoded)
        stream.write(b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))

    def _sync_recv(self, stream: _Stream, path_text: str, fail) -> None:
        path = self.host_path(path_text)
        try:
            with open(path, "rb") as handle:
                while chunk := handle.read(SYNC_DATA_MAX):
                    stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
        except OSError as exc:
            fail(f"remote object '{path_text}' does not exist" if not path.exists() else str(exc.strerror))
            return
        stream.write(b"DONE" + struct.pack("<I", 0))

    def _sync_send(self, stream: _Stream, path_text: str, fail) -> bool:
        device_path, _, mode_text = path_text.rpartition(",")
        if not device_path:
            device_path, mode_text = path_text, "33188"
        mode = int(mode_text) & 0o777 if mode_text.isdigit() else 0o644
        target = self.host_path(device_path)
        target.parent.mkdir(parents=True, exist_ok=True)  # adbd creates missing parent folders
        partial = target.with_name(f".{target.name}.partial")
        with open(partial, "wb") as handle:
            while True:
                header = stream.read_exact(8)
                if header is None:
                    return False
                tag, value = header[:4], struct.unpack("<I", header[4:])[0]
                if tag == b"DONE":
                    break
                if tag != b"DATA":
                    fail(f"invalid data message {tag!r}")
                    return False
                chunk = stream.read_exact(value)
                if chunk is None:
                    return False
                handle.write(chunk)
        if self.push_fault == "full":  # what adbd answers when /data is full
            partial.unlink()
            fail(f"write failed: No space left on device: {device_path}")
            return True
        self._apply_push_fault(partial)
        os.chmod(partial, mode)
        os.replace(partial, target)
        stream.write(b"OKAY" + struct.pack("<I", 0))
        return True

    def _apply_push_fault(self, path: Path) -> None:
        if self.push_fault == "truncate" and path.stat().st_size:
            os.truncate(path, path.stat().st_size - 1)
        elif self.push_fault == "flip" and path.stat().st_size:
            with open(path, "r+b") as handle:
                first = handle.read(1)
                handle.seek(0)
                handle.write(bytes([first[0] ^ 0xFF]))


class AdbServer:
    """A private adb server on a free port (never the user's 5037), killed on exit."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self.adb = shutil.which("adb")

    def __enter__(self) -> "AdbServer":
        if self.adb is None:
            raise RuntimeError("adb is not installed (Debian: apt-get install adb)")
        subprocess.run([self.adb, "-P", str(self.port), "start-server"], capture_output=True, timeout=30, check=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run([self.adb, "-P", str(self.port), "kill-server"], capture_output=True, timeout=30, check=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self):
        import adbutils

        return adbutils.AdbClient(host="127.0.0.1", port=self.port)

    def connect(self, device: AdbTestDevice, timeout: float = 10.0) -> None:
        """`adb connect` the test device and wait until the server lists it as `device`."""
        adb = self.client()
        adb.connect(device.serial, timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(d.serial == device.serial and d.state == "device" for d in adb.list()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the adb server did not list {device.serial} as a device within {timeout} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _hang_up(proc: subprocess.Popen) -> None:
    """What adbd does when the host's stream dies: SIGHUP to the process it spawned, and its pipes closed."""
    try:
        proc.send_signal(signal.SIGHUP)
    except (ProcessLookupError, PermissionError):
        pass
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        try:
            if pipe is not None:
                pipe.close()
        except OSError:
            pass


TOYBOX_CACHE = "toybox-android/bin"


def toybox_bin() -> Path:
    """Where scripts/build-toybox.sh puts toybox built with Android's configuration (one link per applet)."""
    if os.environ.get("MBDEPLOY_TOYBOX_BIN"):
        return Path(os.environ["MBDEPLOY_TOYBOX_BIN"])
    return cache_root() / TOYBOX_CACHE


def phone_shell(kind: str) -> tuple[list[str], str | None]:
    """(shell argv, PATH) for commands: mksh with toybox applets only ("phone"), or the host's ("host")."""
    if kind == "host":
        return ["/bin/sh"], None
    if kind != "phone":
        raise ValueError(f"test device shell must be 'phone' or 'host', got {kind!r}")
    mksh, applets = shutil.which("mksh"), toybox_bin()
    if mksh is None or not (applets / "toybox").exists():
        missing = "mksh (apt-get install mksh)" if mksh is None else f"toybox applets in {applets}"
        raise RuntimeError(f"the phone-like shell needs {missing}: run `bash scripts/install-system-deps.sh` "
                           "(it builds toybox with Android's config), or use shell='host'")
    return [mksh], str(applets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mbdeploy.testing.adb_device",
        description="An adb test device on 127.0.0.1: connect the real adb server to it with `adb connect`.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port to listen on (0: a free one)")
    parser.add_argument("--model", default=None, help="ro.product.model to report (default: Pixel 7)")
    parser.add_argument("--root", type=Path, default=None, help="sandbox folder standing for the device's file system")
    parser.add_argument("--shell", choices=["phone", "host"], default=None,
                        help="phone: mksh with Android-config toybox applets (default); host: /bin/sh and the host PATH")
    args = parser.parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="mbdeploy-adb-root-"))
    try:
        device = AdbTestDevice(root, port=args.port, model=args.model, shell=args.shell)
    except (ValueError, RuntimeError) as exc:
        parser.error(str(exc))
    port = device.start()
    print(f"adb test device listening on 127.0.0.1:{port} (root {device.root}); connect with: adb connect 127.0.0.1:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        device.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
