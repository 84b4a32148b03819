"""The `ssh` device: a Linux board reached with the system OpenSSH client.

`ssh://user@host[:port][?python=/path/python3&workdir=/path]`; the host may be
a `Host` alias from ~/.ssh/config, which ssh reads as usual (or the file named
by `ssh_config`). Authentication is by key only (BatchMode: never a password
prompt). One master connection is opened on first use and shared by every
command (ControlMaster), so a per-model round trip costs milliseconds.

The remote side always gets one command line built by `quote_argv`, so a file
name is one word to the remote shell. Files travel through `cat` over the
same connection rather than scp: legacy scp lets the remote shell expand the
target path, and streaming keeps a single quoting rule for every transfer.
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from mbdeploy.devices import sensors
from mbdeploy.atomic import sha256_file
from mbdeploy.devices.local import linux_device_info
from mbdeploy.devices.base import Device, DeviceInfo, SensorReading, ShellResult, quote_argv
from mbdeploy.errors import DeviceDisconnected, DeviceError, InvalidInput

SSH_CONNECT_TIMEOUT_S = 10
SSH_ERROR = 255  # ssh's own exit code for connection and authentication failures

INFO_SCRIPT = (
    'echo "machine=$(uname -m)"; echo "kernel=$(uname -r)"; echo "hostname=$(uname -n)"; '
    '(. /etc/os-release 2>/dev/null; echo "os=$PRETTY_NAME"); '
    'echo "cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)"; '
    "echo \"cpu=$(grep -m1 -E '^(model name|Hardware|Processor)' /proc/cpuinfo 2>/dev/null | cut -d: -f2-)\"; "
    "echo \"board=$( (tr -d '\\000' < /proc/device-tree/model || cat /sys/devices/virtual/dmi/id/product_name) 2>/dev/null)\"; "
    "echo '--sysfs--'; "
)


def parse_target(target: str) -> dict:
    """`ssh://user@host:port?python=...&workdir=...` -> its parts; raise InvalidInput if malformed."""
    parts = urlsplit(target)
    if parts.scheme != "ssh" or not parts.hostname:
        raise InvalidInput(f"ssh device {target!r} must look like ssh://[user@]host[:port][?python=PATH&workdir=PATH]")
    if parts.hostname.startswith("-") or (parts.username or "").startswith("-"):
        # ssh would read it as an option (e.g. -oProxyCommand=...), not as a host.
        raise InvalidInput(f"ssh device {target!r}: a host or user may not start with '-'")
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput(f"ssh device {target!r} has an invalid port; use 1-65535") from None
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(query) - {"python", "workdir"}
    if unknown:
        raise InvalidInput(f"ssh device {target!r}: unknown option(s) {sorted(unknown)}; allowed: python, workdir")
    return {"user": parts.username, "host": parts.hostname, "port": port,
            "python": query.get("python"), "workdir": query.get("workdir")}


class RemoteSession:
    """One long-lived remote `sh` that runs commands sent over its stdin, framed by a token.

    Every ssh command pays for the remote login shell's start-up (its rc
    files), which on some boards costs more than the command. The session
    pays it once: each command runs in a subshell with stdin from /dev/null
    and its stdout/stderr in files; the session then prints
    `TOKEN exit_code stdout_bytes stderr_bytes` and both files, so the host
    reads exactly what the command wrote.
    """

    def __init__(self, argv: list[str]) -> None:
        self._process = subprocess.Popen(argv + ["sh"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL)
        self._buffer = b""
        try:
            self._send('T=$(mktemp -d) || exit 1; trap \'rm -rf "$T"\' EXIT')
            self.run(["true"], timeout=SSH_CONNECT_TIMEOUT_S + 20)  # fail now if the session is unusable
        except BaseException:
            self.kill()
            raise

    def _send(self, line: str) -> None:
        self._process.stdin.write(line.encode() + b"\n")
        self._process.stdin.flush()

    def _read_until(self, predicate, deadline: float | None) -> None:  # noqa: ANN001
        descriptor = self._process.stdout.fileno()
        while not predicate():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([descriptor], [], [], remaining)
            if not ready:
                raise TimeoutError
            chunk = os.read(descriptor, 1 << 16)
            if not chunk:
                raise EOFError
            self._buffer += chunk

    def run(self, argv: list[str], timeout: float | None) -> ShellResult:
        token = f"__mbdeploy_{secrets.token_hex(8)}__"
        self._send(f'( {quote_argv(argv)} ) </dev/null >"$T/o" 2>"$T/e"; r=$?; '
                   f'printf "%s %s %s %s\\n" {token} "$r" $(wc -c <"$T/o") $(wc -c <"$T/e"); cat "$T/o" "$T/e"')
        deadline = None if timeout is None else time.monotonic() + timeout
        marker = token.encode() + b" "
        self._read_until(lambda: marker in self._buffer and b"\n" in self._buffer.split(marker, 1)[1], deadline)
        header, rest = self._buffer.split(marker, 1)[1].split(b"\n", 1)
        exit_code, out_size, err_size = (int(word) for word in header.split())
        self._buffer = rest
        self._read_until(lambda: len(self._buffer) >= out_size + err_size, deadline)
        out, err = self._buffer[:out_size], self._buffer[out_size:out_size + err_size]
        self._buffer = self._buffer[out_size + err_size:]
        return ShellResult(exit_code=exit_code, stdout=out.decode(errors="replace"), stderr=err.decode(errors="replace"))

    def kill(self) -> None:
        """Drop the connection at once (a command overran its timeout)."""
        self._process.kill()
        self._process.wait()

    def close(self) -> None:
        try:
            self._process.stdin.close()
            self._process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()


class SshDevice(Device):
    kind = "ssh"

    def __init__(self, target: str, ssh_config: Path | None = None, ssh_options: list[str] | None = None,
                 python: str | None = None) -> None:
        parts = parse_target(target)
        self._user, self._host, self._port = parts["user"], parts["host"], parts["port"]
        self.python = parts["python"] or python or "python3"
        self._workdir = parts["workdir"]
        self._ssh_config = Path(ssh_config) if ssh_config else None
        self._ssh_options = list(ssh_options or [])
        self._control_dir: str | None = None
        self._session: RemoteSession | None = None
        self._session_unusable = False  # set once the remote cannot host a session; then always go direct
        self._session_lock = threading.Lock()

    @property
    def id(self) -> str:
        user = f"{self._user}@" if self._user else ""
        port = f":{self._port}" if self._port else ""
        return f"ssh://{user}{self._host}{port}"

    # --- the ssh command line -------------------------------------------------
    def _base(self, control: bool = True) -> list[str]:
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={SSH_CONNECT_TIMEOUT_S}"]
        if self._ssh_config:
            argv += ["-F", str(self._ssh_config)]
        if self._port:
            argv += ["-p", str(self._port)]
        if self._user:
            argv += ["-l", self._user]
        if control and self._control_dir:
            argv += ["-o", "ControlMaster=no", "-o", f"ControlPath={self._control_path}"]
        return argv + self._ssh_options

    @property
    def _control_path(self) -> str:
        return os.path.join(self._control_dir or "", "master")

    def _connect(self) -> None:
        """Open the shared master connection once; its output goes to a file, never our pipes."""
        if self._control_dir:
            return
        control_dir = tempfile.mkdtemp(prefix="mbd-ssh-")
        argv = self._base(control=False) + [
            "-o", "ControlMaster=yes", "-o", f"ControlPath={os.path.join(control_dir, 'master')}",
            "-o", "ControlPersist=300", "-N", "-f", self._host,
        ]
        with tempfile.TemporaryFile() as errors:
            try:
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                                      timeout=SSH_CONNECT_TIMEOUT_S + 20, check=False)
            except FileNotFoundError:
                shutil.rmtree(control_dir, ignore_errors=True)
                raise DeviceError("the ssh client is not installed (Debian: apt-get install openssh-client)") from None
            except subprocess.TimeoutExpired:
                shutil.rmtree(control_dir, ignore_errors=True)
                raise DeviceError(f"{self.id} did not answer within {SSH_CONNECT_TIMEOUT_S + 20} s") from None
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()
        if done.returncode != 0:
            shutil.rmtree(control_dir, ignore_errors=True)
            last = message.splitlines()[-1] if message else f"exit code {done.returncode}"
            raise DeviceError(f"cannot reach {self.id}: {last}", device=self.id)
        self._control_dir = control_dir

    def close(self) -> None:
        with self._session_lock:
            if self._session is not None:
                self._session.close()
                self._session = None
        if not self._control_dir:
            return
        subprocess.run(self._base() + ["-O", "exit", self._host], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=15, check=False)
        shutil.rmtree(self._control_dir, ignore_errors=True)
        self._control_dir = None

    def __del__(self) -> None:  # a forgotten close() must not leave a master process behind
        try:
            self.close()
        except Exception:
            pass

    def _run(self, argv: list[str], timeout: float | None, stdin=subprocess.DEVNULL) -> ShellResult:
        self._connect()
        command = self._base() + [self._host, "--", quote_argv(argv)]
        try:
            done = subprocess.run(command, stdin=stdin, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{argv[0]} did not finish within {timeout:.0f} s on {self.id}") from None
        stderr = done.stderr.decode(errors="replace")
        if done.returncode == SSH_ERROR and ("ssh:" in stderr or "Connection" in stderr or not done.stdout):
            raise DeviceDisconnected(f"lost {self.id}: {stderr.strip() or 'ssh exit 255'}", device=self.id)
        return ShellResult(exit_code=done.returncode, stdout=done.stdout.decode(errors="replace"), stderr=stderr)

    def _in_session(self, argv: list[str], timeout: float | None) -> ShellResult | None:
        """Run through the long-lived session; None when it is busy (another thread) so the caller goes direct."""
        if self._session_unusable or not self._session_lock.acquire(blocking=False):
            return None
        try:
            if self._session is None:
                self._connect()
                try:
                    self._session = RemoteSession(self._base() + [self._host, "--"])
                except (EOFError, TimeoutError, OSError, ValueError):
                    self._session_unusable = True  # e.g. no mktemp there: every command goes direct instead
                    return None
            try:
                return self._session.run(argv, timeout)
            except TimeoutError:
                self._session.kill()
                self._session = None
                raise DeviceError(f"{argv[0]} did not finish within {timeout:.0f} s on {self.id}") from None
            except (EOFError, OSError, ValueError) as exc:
                self._session.close()
                self._session = None
                raise DeviceDisconnected(f"lost {self.id} during {argv[0]}: {exc or 'connection closed'}",
                                         device=self.id) from None
        finally:
            self._session_lock.release()

    # --- Device ----------------------------------------------------------------
    def shell(self, argv: list[str], timeout: float | None = None) -> ShellResult:
        words = [str(word) for word in argv]
        result = self._in_session(words, timeout)
        return result if result is not None else self._run(words, timeout)

    @property
    def workdir(self) -> str:
        if self._workdir is None:
            done = self.shell(["sh", "-c", 'd="$HOME/.cache/mbdeploy/device" && mkdir -p "$d" && cd "$d" && pwd -P'], 30)
            if not done.ok or not done.stdout.strip():
                raise DeviceError(f"cannot create a work folder on {self.id}: {done.stderr.strip()}")
            self._workdir = done.stdout.strip()
        return self._workdir

    def push(self, local: Path, remote: str) -> None:
        # One round trip: write, then report size and sha256 of what landed.
        script = 'mkdir -p "$(dirname "$1")" && cat > "$1" && wc -c < "$1" && sha256sum < "$1"'
        with open(local, "rb") as source:
            done = self._run(["sh", "-c", script, "sh", remote], 600, stdin=source)
        if not done.ok:
            raise DeviceError(f"push of {local} to {self.id}:{remote} failed: {done.stderr.strip()}")
        self._compare(Path(local), remote, done.stdout)

    def check_arrived(self, local: Path, remote: str) -> None:
        """Raise unless the remote file has the local file's size and sha256."""
        done = self.shell(["sh", "-c", 'wc -c < "$1" && sha256sum < "$1"', "sh", remote], 120)
        if not done.ok:
            raise DeviceError(f"cannot check {remote} on {self.id}: {done.stderr.strip()}")
        self._compare(Path(local), remote, done.stdout)

    def _compare(self, local: Path, remote: str, report: str) -> None:
        words = report.split()
        if len(words) < 2 or not words[0].isdigit():
            raise DeviceError(f"cannot check {remote} on {self.id}: no size/sha256sum output ({report.strip()!r})")
        size, digest = int(words[0]), words[1]
        if size != local.stat().st_size:
            raise DeviceError(f"push of {local} to {self.id}:{remote} arrived incomplete ({size} bytes)")
        if digest != sha256_file(local):
            raise DeviceError(f"push of {local} to {self.id}:{remote} arrived corrupted (sha256 differs)")

    def pull(self, remote: str, local: Path) -> None:
        self._connect()
        command = self._base() + [self._host, "--", quote_argv(["cat", "--", remote])]
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        with open(local, "wb") as target:  # raw bytes straight to the file, never decoded
            done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=target, stderr=subprocess.PIPE,
                                  timeout=600, check=False)
        if done.returncode != 0:
            Path(local).unlink(missing_ok=True)
            raise DeviceError(f"pull of {self.id}:{remote} failed: {done.stderr.decode(errors='replace').strip()}")

    def _remote_snapshot(self, globs: tuple[str, ...]) -> sensors.Snapshot:
        done = self.shell(["sh", "-c", sensors.snapshot_script(globs)], 30)
        return sensors.parse_snapshot_output(done.stdout)

    def properties(self) -> dict[str, str]:
        return self._info_fields()[0]

    def _info_fields(self) -> tuple[dict[str, str], sensors.Snapshot]:
        done = self.shell(["sh", "-c", INFO_SCRIPT + sensors.snapshot_script(sensors.SENSOR_GLOBS)], 30)
        head, _, sysfs = done.stdout.partition("--sysfs--\n")
        props = {}
        for line in head.splitlines():
            key, sep, value = line.partition("=")
            if sep and value.strip():
                props[key] = value.strip()
        return props, sensors.parse_snapshot_output(sysfs)

    def info(self) -> DeviceInfo:
        props, files = self._info_fields()
        return linux_device_info(self.kind, self.id, props, files, python=self.python)

    def sensors(self) -> SensorReading:
        return sensors.reading_from_snapshot(self._remote_snapshot(sensors.SENSOR_GLOBS))

    def power_meter(self, allow_charging: bool = False) -> sensors.RaplPowerMeter:
        # allow_charging matters for battery-powered phones only; boards and hosts have mains power.
        return sensors.RaplPowerMeter(snapshot=lambda: self._remote_snapshot(sensors.POWER_GLOBS), where=self.id)
