"""A real OpenSSH server on a loopback port, as the current user, for the ssh device tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sshd_unavailable_reason() -> str | None:
    for tool in ("/usr/sbin/sshd", shutil.which("ssh"), shutil.which("ssh-keygen")):
        if not tool or not Path(tool).exists():
            return "OpenSSH server/client not installed (Debian: apt-get install openssh-server openssh-client)"
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        # sshd running as root insists on its privilege-separation folder.
        try:
            Path("/run/sshd").mkdir(mode=0o755)
        except OSError as exc:
            return f"sshd as root needs /run/sshd and it cannot be created: {exc}"
    return None


@contextmanager
def sshd(folder: Path, extra: str = ""):
    """A real OpenSSH server on a free loopback port, as the current user, with throwaway keys.

    `extra` is appended to its sshd_config (e.g. a ForceCommand that prints a login banner).

    Yields (url_prefix, ssh_config_path): `ssh://user@127.0.0.1:PORT` and an ssh
    config file naming the user key and a private known_hosts file.
    """
    reason = sshd_unavailable_reason()
    if reason:
        pytest.skip(reason)
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], check=True)
    (folder / "authorized_keys").write_text((folder / "user_key.pub").read_text())
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"HostKey {folder / 'host_key'}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
        "ListenAddress 127.0.0.1\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nMaxStartups 50\nMaxSessions 50\n"
        f"PidFile {folder / 'sshd.pid'}\n" + extra
    )
    client_config = folder / "ssh_config"
    client_config.write_text(
        f"Host *\n  IdentityFile {folder / 'user_key'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {folder / 'known_hosts'}\n  StrictHostKeyChecking accept-new\n  LogLevel ERROR\n"
    )
    log = open(folder / "sshd.log", "wb")
    server = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config), "-p", str(port)],
                              stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.skip(f"sshd exited at start: {(folder / 'sshd.log').read_text()[-300:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        user = os.environ.get("USER") or __import__("pwd").getpwuid(os.getuid()).pw_name
        yield f"ssh://{user}@127.0.0.1:{port}", client_config
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
