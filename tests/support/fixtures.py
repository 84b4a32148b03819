"""The pytest fixtures every test file can ask for (registered by tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from support.paths import REFERENCE
from support.skips import NO_ADB

# TensorFlow reads this when it is first imported: keep its C++ start-up chatter out of test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE / "mobilenet_v1_0.5_160_quant.tflite").exists():
        pytest.skip(f"reference data absent: {REFERENCE} (the project's ../shared/reference) is not there")
    return REFERENCE


@pytest.fixture(scope="session")
def small_models(tmp_path_factory) -> Path:
    """mobilenet_v1_0.25_128 in all four TFLite precisions, random weights, converted once."""
    from mbdeploy.convert import ConvertRequest, convert_model

    out = tmp_path_factory.mktemp("models")
    convert_model(ConvertRequest(0.25, 128, out_dir=out, formats=["tflite"]))
    return out


# --- the adb path: the real adb server and the adb test device ---------------

@pytest.fixture(scope="module")
def server():
    """A private adb server on a free port (a user's server is never touched), killed afterwards."""
    if shutil.which("adb") is None:
        pytest.skip(NO_ADB)
    from mbdeploy.testing.adb_device import AdbServer

    with AdbServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def phone(server, tmp_path_factory):
    """The adb test device (a Pixel 7), connected through that server."""
    from mbdeploy.testing.adb_device import AdbTestDevice

    with AdbTestDevice(tmp_path_factory.mktemp("phone")) as dev:
        server.connect(dev)
        yield dev


# An unroutable documentation address (RFC 5737). A test that names no adb server (a CLI call looking
# for phones by name, `mbdeploy devices`) asks it instead of starting one on this host's default port
# 5037, which would outlive the run. Tests of the adb path name their own server (--adb-host, `adb -P`),
# which takes precedence.
UNROUTABLE_ADB_SERVER = "tcp:192.0.2.1:5037"


@pytest.fixture(scope="session", autouse=True)
def no_default_adb_server():
    previous = os.environ.get("ADB_SERVER_SOCKET")
    os.environ["ADB_SERVER_SOCKET"] = UNROUTABLE_ADB_SERVER
    yield
    if previous is None:
        os.environ.pop("ADB_SERVER_SOCKET", None)
    else:
        os.environ["ADB_SERVER_SOCKET"] = previous


@pytest.fixture(scope="module", autouse=True)
def no_adb_server_left_on_the_default_port(request, no_default_adb_server):
    """The suite drives adb servers on ports of its own. One started on adb's default port anyway would
    outlive the run: ended here, and the module that started it fails."""
    import signal

    from support.processes import processes_mentioning

    before = set(processes_mentioning("adb", "tcp:5037", "server"))
    yield
    left = [pid for pid in processes_mentioning("adb", "tcp:5037", "server") if pid not in before]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    if left:
        pytest.fail(f"{request.module.__name__} started an adb server on the default port 5037 and left it running")
