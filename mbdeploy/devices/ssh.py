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
import platform
import secrets
import select
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from mbdeploy import lifeline
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


# Sent once when a session starts. Its folder holds the owner line (the session shell's pid and the
# host that opened it) and, while a command runs, that command's process group; `mbd_run` starts each
# command in its own group (setsid) and a watcher that reads the session's stdin: end of input means
# the host went away (killed, unplugged, timed out), and the watcher kills the whole group at once.
SESSION_SETUP = (
    'S="${TMPDIR:-/tmp}/mbdeploy-session.$MBDEPLOY_SESSION"; mkdir -m 700 "$S" || exit 1; '
    'echo "$$ $1" > "$S/owner" || { rm -rf "$S"; echo "cannot write in ${TMPDIR:-/tmp} (full? df:' \
    ' $(df -P "${TMPDIR:-/tmp}" 2>/dev/null | tail -n 1))" >&2; exit 1; }; '
    "trap 'rm -rf \"$S\"' EXIT; trap 'exit 129' HUP; trap 'exit 141' PIPE; trap 'exit 143' TERM; exec 3<&0; "
    "mbd_run() { "
    'if command -v setsid >/dev/null 2>&1; then setsid sh -c "$2" </dev/null >"$S/o" 2>"$S/e" & '
    'else sh -c "$2" </dev/null >"$S/o" 2>"$S/e" & fi; c=$!; echo "$c" > "$S/running"; '
    '{ IFS= read -r _ <&3; kill -s KILL -- "-$c" 2>/dev/null || kill -KILL "-$c" 2>/dev/null || kill -KILL "$c" 2>/dev/null; } & w=$!; '
    'wait "$c"; r=$?; kill -KILL "$w" 2>/dev/null; wait "$w" 2>/dev/null; rm -f "$S/running"; '
    'printf "%s %s %s %s\\n" "$1" "$r" $(wc -c <"$S/o") $(wc -c <"$S/e"); cat "$S/o" "$S/e"; }'
)

# Run under the device lock before a bench: end what earlier sessions left running on the board.
# A session is left over when its shell is gone, or when it was opened from this host (whose
# benches on this board hold the lock we now hold). A live session of another host that runs a
# command is another bench: reported, never killed. Processes are checked to carry the session's
# mark in their environment before they are killed, so a reused pid is never hit.
REAP_SCRIPT = r"""
me="$1"; host="$2"; busy=""
marked() { tr '\0' '\n' < "/proc/$1/environ" 2>/dev/null | grep -qx "MBDEPLOY_SESSION=$2"; }
for d in "${TMPDIR:-/tmp}"/mbdeploy-session.*; do
  [ -d "$d" ] || continue
  t=${d##*/mbdeploy-session.}
  [ "$t" = "$me" ] && continue
  read -r pid owner < "$d/owner" 2>/dev/null || continue
  if marked "$pid" "$t" && [ "$owner" != "$host" ]; then
    [ -f "$d/running" ] && busy="$busy $owner"
    continue
  fi
  if [ -f "$d/running" ]; then
    c=$(cat "$d/running")
    if marked "$c" "$t"; then kill -s KILL -- "-$c" 2>/dev/null || kill -KILL "-$c" 2>/dev/null || kill -KILL "$c" 2>/dev/null; echo "ended $c"; fi
  fi
  marked "$pid" "$t" && kill -KILL "$pid" 2>/dev/null
  rm -rf "$d"
done
echo "busy:$busy"
"""


class RemoteSession:
    """One long-lived remote `sh` that runs commands sent over its stdin, framed by a token.

    Every ssh command pays for the remote login shell's start-up (its rc
    files), which on some boards costs more than the command. The session
    pays it once: each command runs with stdin from /dev/null and its
    stdout/stderr in files; the session then prints
    `TOKEN exit_code stdout_bytes stderr_bytes` and both files, so the host
    reads exactly what the command wrote, and anything a login script
    prints before (a banner) is never taken for it.

    The ssh client dies with us (lifeline); when it does, or when the
    session is killed, the remote watcher ends the command's process group.
    """

    def __init__(self, argv: list[str], owner: str, where: str) -> None:
        self.token = secrets.token_hex(8)
        self._where = where
        self._errors = tempfile.TemporaryFile()
        remote = quote_argv(["env", f"MBDEPLOY_SESSION={self.token}", "sh", "-s", owner])
        self._process = lifeline.spawn(argv + [remote], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=self._errors)
        self._buffer = b""
        try:
            self._send(SESSION_SETUP)
            self.run(["true"], timeout=SSH_CONNECT_TIMEOUT_S + 20)  # fail now if the session is unusable
        except (EOFError, OSError, TimeoutError, ValueError) as exc:
            if isinstance(exc, EOFError):
                try:
                    self._process.wait(timeout=5)  # ssh has the board's last words in its stderr by then
                except subprocess.TimeoutExpired:
                    pass
            self.kill()
            reason = self.stderr() or (f"no answer within {SSH_CONNECT_TIMEOUT_S + 20} s"
                                      if isinstance(exc, TimeoutError) else "the shell exited at once")
            raise DeviceError(f"cannot start a shell session on {where}: {reason}", device=where) from None
        except BaseException:
            self.kill()
            raise

    def stderr(self) -> str:
        """What ssh and the remote shell said on stderr, on one line."""
        try:
            self._errors.seek(0)
            text = self._errors.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""
        return " ".join(line.strip() for line in text.splitlines() if line.strip())

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
        self._send(f"mbd_run {token} {shlex.quote(quote_argv(argv))}")
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
        """Drop the connection at once; the remote watcher then ends whatever the session runs."""
        lifeline.kill_group(self._process)
        self._close_pipes()

    def close(self) -> None:
        try:
            self._process.stdin.close()  # end of input: the remote shell exits and removes its folder
            self._process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            lifeline.kill_group(self._process)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for stream in (self._process.stdin, self._process.stdout):
            try:
                stream.close()
            except OSError:
                pass


def _stale_control_dirs() -> None:
    """Remove host-side control folders of mbdeploy processes that died without cleaning up (kill -9)."""
    for folder in Path(tempfile.gettempdir()).glob("mbd-ssh-*"):
        pid = folder.name.split("-")[2] if folder.name.count("-") >= 3 else ""
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # another user's process is alive


def _ssh_failure(where: str, message: str, host: str, port: int | None) -> DeviceError:
    """ssh's own words, on one line, with the fix where we know it."""
    lines = [line.strip() for line in message.splitlines() if line.strip() and set(line.strip()) != {"@"}]
    text = " ".join(lines) or "ssh exited without a message"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in message or "Host key verification failed" in message:
        name = f"[{host}]:{port}" if port else host
        fix = (f"if the board was reinstalled, check its new key and remove the old one: ssh-keygen -R '{name}'"
               if "-R" not in text else "if the board was reinstalled, run the ssh-keygen -R command above")
        return DeviceError(f"cannot reach {where}: its host key does not match known_hosts: {text} ({fix})",
                           device=where)
    return DeviceError(f"cannot reach {where}: {text}", device=where)


class SshDevice(Device):
    kind = "ssh"

    def __init__(self, target: str, ssh_config: Path | None = None, ssh_options: list[str] | None = None,
                 python: str | None = None) -> None:
        parts = parse_target(target)
        self._user, self._host, self._port = parts["user"], parts["host"], parts["port"]
        self.python = parts["python"] or python or "python3"
        self._base_dir = parts["workdir"]  # ?workdir=: where mbdeploy may make its own folders
        self._run_dir: str | None = None  # <base>/mbdeploy-<run id>, made and marked by us
        self._run_id: str | None = None
        self._ssh_config = Path(ssh_config) if ssh_config else None
        self._ssh_options = list(ssh_options or [])
        self._control_dir: str | None = None
        self._master: subprocess.Popen | None = None
        self._idle: list[RemoteSession] = []  # sessions ready for a command
        self._sessions: set[RemoteSession] = set()  # every open session, busy or idle
        self._session_lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._lock_key: str | None = None

    @property
    def id(self) -> str:
        user = f"{self._user}@" if self._user else ""
        port = f":{self._port}" if self._port else ""
        return f"ssh://{user}{self._host}{port}"

    @property
    def lock_key(self) -> str:
        """`ssh:user@address:port` as ssh itself resolves them (`ssh -G`: config, default user and port), so
        every spelling of one board (an alias, with or without the user or the port) shares one lock."""
        if self._lock_key is None:
            self._lock_key = self.id
            try:
                done = subprocess.run(self._base(control=False) + ["-G", self._host], capture_output=True, text=True,
                                      timeout=15, check=False, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired):
                return self._lock_key
            resolved = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
            if done.returncode == 0 and resolved.get("hostname"):
                host = resolved["hostname"]
                try:
                    host = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]
                except OSError:
                    pass  # not resolvable here: the name ssh would use is the next best identity
                self._lock_key = f"ssh:{resolved.get('user', '')}@{host}:{resolved.get('port', '22')}"
        return self._lock_key

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
        """Open the shared master connection once: a child of ours that dies with us (no ControlPersist)."""
        with self._connect_lock:  # two threads must not start two masters
            self._connect_locked()

    def _connect_locked(self) -> None:
        if self._control_dir and self._master is not None and self._master.poll() is None:
            return
        self._drop_master()
        _stale_control_dirs()
        control_dir = tempfile.mkdtemp(prefix=f"mbd-ssh-{os.getpid()}-")
        path = os.path.join(control_dir, "master")
        argv = self._base(control=False) + [
            "-o", "ControlMaster=yes", "-o", f"ControlPath={path}", "-o", "ControlPersist=no", "-N", self._host]
        errors = tempfile.TemporaryFile()
        try:
            master = lifeline.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)
            deadline = time.monotonic() + SSH_CONNECT_TIMEOUT_S + 20
            while not os.path.exists(path) and master.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if not os.path.exists(path):
                lifeline.kill_group(master)
                errors.seek(0)
                message = errors.read().decode(errors="replace")
                if master.returncode == 127 and "ssh:" in message and "No such file" in message:
                    raise DeviceError("the ssh client is not installed (Debian: apt-get install openssh-client)")
                if not message.strip():
                    message = f"no connection within {SSH_CONNECT_TIMEOUT_S + 20} s"
                raise _ssh_failure(self.id, message, self._host, self._port)
        except BaseException:
            shutil.rmtree(control_dir, ignore_errors=True)
            raise
        finally:
            errors.close()
        self._control_dir, self._master = control_dir, master

    def _drop_master(self) -> None:
        if self._master is not None:
            lifeline.kill_group(self._master)
            self._master = None
        if self._control_dir:
            shutil.rmtree(self._control_dir, ignore_errors=True)
            self._control_dir = None

    def close(self) -> None:
        """End every session (their remote watchers end what they ran) and the master connection."""
        with self._session_lock:
            sessions, self._sessions, self._idle = list(self._sessions), set(), []
        for session in sessions:
            session.kill()
        self._drop_master()

    def __del__(self) -> None:  # a forgotten close() must not leave a master process behind
        try:
            self.close()
        except Exception:
            pass

    def _owner(self) -> str:
        """Who opens sessions on the board: this host's name (one word)."""
        return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in platform.node()) or "host"

    def _take_session(self) -> RemoteSession:
        with self._session_lock:
            if self._idle:
                return self._idle.pop()
        self._connect()
        session = RemoteSession(self._base() + [self._host, "--"], self._owner(), self.id)
        with self._session_lock:
            self._sessions.add(session)
        return session

    def _give_back(self, session: RemoteSession) -> None:
        with self._session_lock:
            if session in self._sessions and len(self._idle) < 2:
                self._idle.append(session)
                return
            self._sessions.discard(session)
        session.close()

    def _forget(self, session: RemoteSession) -> None:
        with self._session_lock:
            self._sessions.discard(session)

    # --- Device ----------------------------------------------------------------
    def shell(self, argv: list[str], timeout: float | None = None) -> ShellResult:
        """Run argv in a session (a second thread gets a second session, never a queue behind the first)."""
        words = [str(word) for word in argv]
        session = self._take_session()
        try:
            result = session.run(words, timeout)
        except TimeoutError:
            self._forget(session)
            session.kill()
            raise DeviceError(f"{words[0]} did not finish within {timeout:.0f} s on {self.id}; "
                              "it was ended on the board", device=self.id) from None
        except (EOFError, OSError, ValueError):
            self._forget(session)
            session.kill()
            raise DeviceDisconnected(f"lost {self.id} during {words[0]}: {self._lost_reason(session)}",
                                     device=self.id) from None
        except BaseException:  # Ctrl-C, SIGTERM: drop the session so the board ends the command now
            self._forget(session)
            session.kill()
            raise
        self._give_back(session)
        return result

    def _lost_reason(self, session: RemoteSession) -> str:
        said = session.stderr()
        if self._master is not None and self._master.poll() is not None:
            said = said or f"the ssh connection ended (ssh exit {self._master.returncode})"
        return said or ("the connection closed without a message (the board rebooted, its sshd restarted "
                        "or the network dropped)")

    @property
    def workdir(self) -> str:
        """`<base>/mbdeploy-<run id>`: a folder this run made and marked; the only one it ever deletes."""
        if self._run_dir is None:
            name = f"mbdeploy-{self._run_id or 'session-' + secrets.token_hex(4)}"
            script = ('b=${1:-"$HOME/.cache/mbdeploy/device"}; mkdir -p "$b/$2" && cd "$b/$2" && '
                      'echo "$2" > .mbdeploy-run && pwd -P')
            done = self.shell(["sh", "-c", script, "sh", self._base_dir or "", name], 30)
            if not done.ok or not done.stdout.strip():
                reason = done.stderr.strip() or f"exit code {done.exit_code} and no message"
                raise DeviceError(f"cannot create a work folder on {self.id}: {reason}", device=self.id)
            self._run_dir = done.stdout.strip().splitlines()[-1]
        return self._run_dir

    def begin_run(self, run_id: str) -> None:
        """Under the device lock: end what earlier sessions left on the board, then use this run's folder."""
        session = self._take_session()
        try:
            done = session.run(["sh", "-c", REAP_SCRIPT, "sh", session.token, self._owner()], 60)
        except BaseException:
            self._forget(session)
            session.kill()
            raise
        self._give_back(session)
        busy = done.stdout.rpartition("busy:")[2].split()
        if busy:
            raise DeviceError(f"another mbdeploy bench (from {', '.join(sorted(set(busy)))}) is running on {self.id}; "
                              "wait for it to finish, then --resume this run", device=self.id)
        if run_id != self._run_id:
            self._run_id, self._run_dir = run_id, None

    def end_run(self) -> None:
        """Remove this run's folder (only if it carries our mark), unless --keep."""
        if self.keep or self._run_dir is None:
            return
        script = '[ -f "$1/.mbdeploy-run" ] && rm -rf -- "$1"'
        try:
            self.shell(["sh", "-c", script, "sh", self._run_dir], 60)
        finally:
            self._run_dir = None

    def _direct(self, script: str, args: list[str], stdin, stdout, timeout: float):  # noqa: ANN001, ANN201
        """One ssh command outside the sessions (a file on stdin or stdout); its own process group, dies with us."""
        self._connect()
        command = self._base() + [self._host, "--", quote_argv(["sh", "-c", script, "sh", *args])]
        process = lifeline.spawn(command, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
        try:
            _, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            lifeline.kill_group(process)
            raise DeviceError(f"a copy to or from {self.id} did not finish within {timeout:.0f} s",
                              device=self.id) from None
        except BaseException:
            lifeline.kill_group(process)
            raise
        return process.returncode, err.decode(errors="replace").strip()

    def push(self, local: Path, remote: str) -> None:
        # One round trip: write, then report size and sha256 of what landed, after a mark that no login
        # banner can imitate (the banner, if any, comes before it).
        mark = f"__mbdeploy_{secrets.token_hex(8)}__"
        script = 'mkdir -p "$(dirname "$1")" && cat > "$1" && echo "$2" && wc -c < "$1" && sha256sum < "$1"'
        with open(local, "rb") as source, tempfile.TemporaryFile() as out:
            code, err = self._direct(script, [remote, mark], source, out, 600)
            out.seek(0)
            report = out.read().decode(errors="replace")
        if code != 0:
            raise DeviceError(f"push of {local} to {self.id}:{remote} failed: {err or f'exit code {code}'}")
        self._compare(Path(local), remote, report.rpartition(mark)[2] if mark in report else "")

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
        # The file follows a mark line, so a login banner printed before it never lands in the copy.
        mark = f"__mbdeploy_{secrets.token_hex(8)}__"
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as raw:
            code, err = self._direct('[ -r "$1" ] && [ -f "$1" ] || { echo "cannot read $1" >&2; exit 1; }; '
                                     'echo "$2" && cat -- "$1"', [remote, mark], subprocess.DEVNULL, raw, 600)
            if code != 0:
                raise DeviceError(f"pull of {self.id}:{remote} failed: {err or f'exit code {code}'}")
            raw.seek(0)
            head = raw.read(1 << 16)
            found = head.find(mark.encode() + b"\n")
            if found < 0:
                raise DeviceError(f"pull of {self.id}:{remote} failed: the board's output lacks the start mark")
            raw.seek(found + len(mark) + 1)
            with open(local, "wb") as target:
                shutil.copyfileobj(raw, target)

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
        if not done.ok or "machine" not in props:
            # Never an "online" board with every field blank: say what the board said instead.
            said = done.stderr.strip() or done.stdout.strip()[-200:] or f"exit code {done.exit_code} and no output"
            raise DeviceError(f"cannot read the facts of {self.id}: {said}", device=self.id)
        return props, sensors.parse_snapshot_output(sysfs)

    def info(self) -> DeviceInfo:
        props, files = self._info_fields()
        return linux_device_info(self.kind, self.id, props, files, python=self.python)

    def sensors(self) -> SensorReading:
        return sensors.reading_from_snapshot(self._remote_snapshot(sensors.SENSOR_GLOBS))

    def power_meter(self, allow_charging: bool = False) -> sensors.RaplPowerMeter:
        # allow_charging matters for battery-powered phones only; boards and hosts have mains power.
        return sensors.RaplPowerMeter(snapshot=lambda: self._remote_snapshot(sensors.POWER_GLOBS), where=self.id)
