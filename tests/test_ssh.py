"""The ssh device against a real OpenSSH server started on loopback with throwaway keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from support.cli import harness_env, mbdeploy
from support.injection import INJECTION_NAME, no_new_pwned
from support.paths import REFERENCE_MODEL
from support.sshd import sshd
from support.tiny_model import tiny_tflite
from mbdeploy import bench
from mbdeploy.devices.config import DeviceConfig
from mbdeploy.devices.local import LocalDevice
from mbdeploy.devices.registry import describe, resolve
from mbdeploy.devices.ssh import SshDevice
from mbdeploy.errors import DeviceError, DeviceNotFound, InvalidInput
from mbdeploy.runners.base import TimingOptions


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sshd(tmp_path_factory.mktemp("sshd")) as found:
        yield found


@pytest.fixture
def board(server, tmp_path):
    """An ssh device whose Python is this venv's and whose work folder is in tmp."""
    url, config = server
    device = SshDevice(f"{url}?python={sys.executable}&workdir={tmp_path / 'remote'}", ssh_config=config)
    yield device
    device.close()


def test_info_and_sensors_over_ssh(board):
    info = board.info()
    assert info.kind == "ssh" and info.state == "online"
    assert info.id.startswith("ssh://") and "?" not in info.id
    assert info.cores and info.abi and info.os and info.model
    # Loopback: the board is this host, so the remote sysfs script must see what a local read sees.
    remote, local = board.sensors(), LocalDevice().sensors()
    assert set(remote.temperatures_c) == set(local.temperatures_c)
    assert set(remote.cpu_freq_khz) == set(local.cpu_freq_khz)


def test_remote_shell_quotes_every_word(board, tmp_path):
    home = Path.home()
    with no_new_pwned(home, tmp_path, tmp_path / "remote"):
        echoed = board.shell(["echo", INJECTION_NAME, "$HOME", "`id`", "*"])
        printed = board.shell(["sh", "-c", 'printf "%s|" "$@"', "sh", INJECTION_NAME, "two words"])
    assert echoed.ok and echoed.stdout.strip() == f"{INJECTION_NAME} $HOME `id` *"
    assert printed.stdout == f"{INJECTION_NAME}|two words|"
    assert board.shell(["sh", "-c", "exit 3"]).exit_code == 3


def test_push_verifies_and_pull_round_trips(board, tmp_path):
    source = tmp_path / INJECTION_NAME
    source.write_bytes(bytes(range(256)) * 500)
    remote = f"{board.workdir}/models/{INJECTION_NAME}"
    with no_new_pwned(Path.home(), tmp_path, tmp_path / "remote"):
        board.push(source, remote)
        board.pull(remote, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    assert Path(remote).read_bytes() == source.read_bytes()  # loopback: the "remote" is this disk
    Path(remote).write_bytes(bytes(reversed(source.read_bytes())))
    with pytest.raises(DeviceError, match="sha256 differs"):
        board.check_arrived(source, remote)
    with pytest.raises(DeviceError, match="push of"):
        board.push(source, "/proc/not-writable/model.tflite")
    with pytest.raises(DeviceError, match="pull of"):
        board.pull(f"{board.workdir}/missing", tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_litert_runner_over_ssh_with_a_hostile_file_name(board, tmp_path, monkeypatch):
    monkeypatch.setenv("MBDEPLOY_LOCK_DIR", str(tmp_path / "locks"))
    model = tiny_tflite(tmp_path / "models" / INJECTION_NAME, channels=8)
    artifacts = bench.collect_artifacts([tmp_path / "models"])
    options = bench.BenchOptions(timing=TimingOptions(min_secs=0.2, max_secs=0.6), wait_for_lock=False)
    info = board.info().to_dict()
    folder = bench.start_run(tmp_path / "results", options, [model], [info])
    with no_new_pwned(Path.home(), tmp_path, tmp_path / "remote", tmp_path / "models"):
        records = bench.run_sweep([board], [info], artifacts, folder, options)
    [record] = records
    assert record["status"] == "ok", record["error"]
    assert record["device"]["kind"] == "ssh" and record["device"]["id"] == board.id
    assert record["latency_ms"]["count"] == len(record["samples_ms"]) > 0
    assert record["init_ms"] > 0 and record["peak_memory_mb"] > 0
    assert record["power"]["status"] == "unavailable" and board.id in record["power"]["reason"]
    assert folder.records() == records
    assert not list((tmp_path / "remote" / "models").rglob("*.tflite"))  # pushed models are cleaned up


def test_cli_bench_over_ssh_through_a_config_alias(server, tmp_path):
    url, config = server
    if not REFERENCE_MODEL.exists():
        pytest.skip(f"reference model absent: {REFERENCE_MODEL}")
    # The alias from the project file, the ssh config from the user's own (harness_env: XDG_CONFIG_HOME).
    (tmp_path / "mbdeploy.toml").write_text(
        f'[aliases]\nmyboard = "{url}?python={sys.executable}&workdir={tmp_path / "remote"}"\n')
    (tmp_path / "config" / "mbdeploy").mkdir(parents=True)
    (tmp_path / "config" / "mbdeploy" / "config.toml").write_text(f'[ssh]\nconfig = "{config}"\n')
    result = mbdeploy(["bench", "--device", "MyBoard", "--models", str(REFERENCE_MODEL), "--runs", "20",
                       "--out", "results", "--json"], cwd=tmp_path, env=harness_env(tmp_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["records"] == 1 and summary["failed"] == 0
    [row] = summary["summary"]
    assert row["device"] == url and row["count"] == 20 and row["stop_reason"] == "runs"


def test_unreachable_and_ambiguous_hosts(server, tmp_path):
    url, config = server
    dead = SshDevice("ssh://nobody@127.0.0.1:1", ssh_config=config)
    with pytest.raises(DeviceError, match="cannot reach ssh://nobody@127.0.0.1:1"):
        dead.info()
    assert describe(dead).state == "offline"
    # This host and the loopback board report the same model: asking by model is ambiguous.
    both = DeviceConfig(ssh_hosts=[url], ssh_config=config)
    model = describe(resolve(url, config=both)[0]).model
    with pytest.raises(DeviceNotFound, match="matches 2 devices"):
        resolve(model, config=both)
    assert [d.id for d in resolve(url, config=both)] == [url]


def test_session_output_is_exact_and_survives_a_timeout(board):
    assert board.shell(["printf", "%s\\n\\nend", "no newline"]).stdout == "no newline\n\nend"
    assert len(board.shell(["head", "-c", "300000", "/dev/zero"]).stdout) == 300000
    mixed = board.shell(["sh", "-c", "echo out; echo err >&2; exit 4"])
    assert (mixed.stdout, mixed.stderr, mixed.exit_code) == ("out\n", "err\n", 4)
    with pytest.raises(DeviceError, match="did not finish within"):
        board.shell(["sleep", "5"], timeout=0.5)
    assert board.shell(["echo", "again"]).stdout == "again\n"  # a fresh session replaced the killed one


def test_a_second_thread_does_not_wait_for_a_busy_session(board, tmp_path):
    import threading
    import time

    # The busy command holds the session until the test releases it, so the second
    # command can only finish if it went over its own connection.
    started, release = tmp_path / "started", tmp_path / "release"
    hold = 'touch "$1"; while [ ! -e "$2" ]; do sleep 0.05; done; echo released'
    board.shell(["true"])  # the session is open before the busy command takes it
    busy: list = []
    holder = threading.Thread(target=lambda: busy.append(board.shell(["sh", "-c", hold, "sh", started, release])))
    beside: list = []
    second = threading.Thread(target=lambda: beside.append(board.shell(["echo", "beside"])))
    holder.start()
    try:
        for _ in range(600):  # a guard against a hang, not a measurement
            if started.exists() or not holder.is_alive():
                break
            time.sleep(0.05)
        assert started.exists(), f"the busy command never started: {busy}"
        second.start()
        second.join(timeout=60)
        assert not second.is_alive(), "the second command queued behind the busy session"
        assert beside[0].stdout == "beside\n"
        assert holder.is_alive() and not release.exists()  # it finished while the session was still busy
    finally:
        release.touch()
        holder.join(timeout=60)
        second.join(timeout=60)
    assert busy[0].stdout == "released\n"


@pytest.mark.parametrize("target", ["ssh://-oProxyCommand=touch%20pwned", "ssh://-oProxyCommand=x@host"])
def test_hosts_and_users_that_look_like_options_are_refused(target):
    from mbdeploy.devices.ssh import parse_target

    with pytest.raises(InvalidInput, match="may not start with '-'"):
        parse_target(target)
