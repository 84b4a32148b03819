"""Helpers shared by the benchmark-harness tests: tiny models and a real sshd on loopback.

Imported by tests/test_{bench,ssh,devices_local,results}.py (not a conftest:
fixtures here are plain functions and context managers).
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REFERENCE_MODEL = SHARED / "reference" / "mobilenet_v1_0.25_128_quant.tflite"
PYTHON = sys.executable
INJECTION_NAME = "a b; touch pwned 'x.tflite"


@functools.lru_cache(maxsize=None)
def _tiny_tflite_bytes(channels: int, size: int) -> bytes:
    """A small float conv net converted with TensorFlow (a different width gives a different file)."""
    import tensorflow as tf

    tf.random.set_seed(channels)
    model = tf.keras.Sequential([
        tf.keras.Input((size, size, 3)),
        tf.keras.layers.Conv2D(channels, 3, strides=2, activation="relu"),
        tf.keras.layers.DepthwiseConv2D(3, activation="relu"),
        tf.keras.layers.Conv2D(channels * 2, 1, activation="relu"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(10),
    ])
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def tiny_tflite(path: Path, channels: int = 8, size: int = 64) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_tiny_tflite_bytes(channels, size))
    return path


def harness_env(tmp_path: Path) -> dict:
    """Environment for a CLI subprocess: its own cache (device work folder, locks), no user config."""
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env.pop("MBDEPLOY_CONFIG", None)
    env.pop("MBDEPLOY_LOCK_DIR", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def mbdeploy(args: list[str], cwd: Path, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "mbdeploy", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


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
def sshd(folder: Path):
    """A real OpenSSH server on a free loopback port, as the current user, with throwaway keys.

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
        f"PidFile {folder / 'sshd.pid'}\n"
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


@contextmanager
def no_new_pwned(*folders: Path):
    """Assert that nothing named `pwned` appears in the folders while the block runs."""
    before = {folder: (folder / "pwned").exists() for folder in folders}
    yield
    for folder in folders:
        if not before[folder]:
            assert not (folder / "pwned").exists(), f"a file name was run as a command in {folder}"
