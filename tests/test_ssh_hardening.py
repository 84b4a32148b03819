"""ssh boards when things go wrong, against a real OpenSSH server on loopback.

The user's files in the work folder, an interrupted or killed bench, a
half-open session, a login banner, a changed host key, a full temp folder, a
lost connection, two spellings of one board. The remote "board" is this
host, so its processes are visible in /proc and waited on through pidfds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from mbdeploy.devices.lock import DeviceLock
from mbdeploy.devices.ssh import SshDevice
from mbdeploy.errors import DeviceDisconnected, DeviceError
from support.cli import PYTHON, harness_env, mbdeploy
from support.processes import exits_within, killed_afterwards, processes_mentioning, runners_under, wait_for
from support.sshd import sshd
from support.tiny_model import tiny_tflite

LONG = ["--min-secs", "120", "--max-secs", "120", "--warmup", "0"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """sshd that takes TMPDIR from the client, so a test can hand the board its own (or a full) temp folder."""
    with sshd(tmp_path_factory.mktemp("sshd"), extra="AcceptEnv TMPDIR\n") as found:
        yield found


@pytest.fixture(scope="module")
def banner_server(tmp_path_factory):
    """sshd whose every session first prints a login banner on stdout, as a `.bashrc` that echoes does
    (a number among it, to tempt a size check)."""
    folder = tmp_path_factory.mktemp("sshd-banner")
    banner = folder / "banner.sh"
    banner.write_text('#!/bin/sh\necho "Welcome to the board"\necho 4096\nexec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n')
    banner.chmod(0o755)
    with sshd(folder, extra=f"ForceCommand {banner}\nAcceptEnv TMPDIR\n") as found:
        yield found


def _url(server, tmp_path: Path, workdir: Path | None = None) -> str:  # noqa: ANN001
    url, _ = server
    return f"{url}?python={sys.executable}&workdir={workdir or tmp_path / 'remote'}"


def _env(server, tmp_path: Path) -> dict:  # noqa: ANN001
    """CLI environment whose user config names the test server's ssh config and a private board TMPDIR."""
    _, config = server
    board_tmp = tmp_path / "board-tmp"
    board_tmp.mkdir(exist_ok=True)
    env = harness_env(tmp_path)
    user_config = tmp_path / "config.toml"
    user_config.write_text(f'[ssh]\nconfig = "{config}"\noptions = ["-o", "SetEnv=TMPDIR={board_tmp}"]\n')
    env["MBDEPLOY_CONFIG"] = str(user_config)
    return env


def _device(server, tmp_path: Path, **kwargs) -> SshDevice:  # noqa: ANN001, ANN003
    _, config = server
    (tmp_path / "board-tmp").mkdir(exist_ok=True)
    return SshDevice(_url(server, tmp_path), ssh_config=config,
                     ssh_options=["-o", f"SetEnv=TMPDIR={tmp_path / 'board-tmp'}"], **kwargs)


def _models(tmp_path: Path) -> Path:
    tiny_tflite(tmp_path / "models" / "m.tflite", channels=8)
    return tmp_path / "models"


# --- 13: only our own folder, and --keep ---------------------------------------------------------

def test_bench_never_touches_the_users_files_in_the_work_folder_and_keep_keeps_its_own(server, tmp_path):
    remote = tmp_path / "remote"
    (remote / "models").mkdir(parents=True)
    (remote / "models" / "mine.txt").write_text("the user's")
    _models(tmp_path)
    env = _env(server, tmp_path)
    args = ["bench", "--device", _url(server, tmp_path), "--models", "models", "--runs", "3", "--warmup", "0",
            "--json"]
    done = mbdeploy(args, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert (remote / "models" / "mine.txt").read_text() == "the user's"
    assert sorted(p.name for p in remote.iterdir()) == ["models"]  # our run folder came and went
    kept = mbdeploy([*args, "--keep"], cwd=tmp_path, env=env)
    assert kept.returncode == 0, kept.stderr
    run_id = json.loads(kept.stdout)["run_id"]
    ours = remote / f"mbdeploy-{run_id}"
    assert (ours / ".mbdeploy-run").read_text().strip() == f"mbdeploy-{run_id}"
    assert list(ours.rglob("m.tflite")) and (remote / "models" / "mine.txt").exists()


# --- 14 and 17: interrupted or killed, nothing keeps running, nothing is left ---------------------

def _bench_until_the_runner_runs(server, tmp_path: Path) -> tuple[subprocess.Popen, int]:  # noqa: ANN001
    _models(tmp_path)
    bench = subprocess.Popen([PYTHON, "-m", "mbdeploy", "bench", "--device", _url(server, tmp_path),
                              "--models", "models", *LONG], cwd=tmp_path, env=_env(server, tmp_path),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        [runner] = wait_for(lambda: runners_under(tmp_path), 90, "the runner to start on the board")
    except BaseException:
        bench.kill()
        bench.communicate()
        raise
    return bench, runner


def test_ctrl_c_ends_the_remote_runner_at_once(server, tmp_path):
    with killed_afterwards("litert_runner.py", str(tmp_path)):
        bench, runner = _bench_until_the_runner_runs(server, tmp_path)
        try:
            bench.send_signal(signal.SIGINT)
            _, stderr = bench.communicate(timeout=30)  # the runner had 120 s to go
        finally:
            bench.kill()
        assert exits_within(runner, 10), "the runner kept running on the board"
    assert bench.returncode == 130 and "Error: interrupted" in stderr and "Traceback" not in stderr
    # The session folder goes with the session: the board's shell removes it on its way out, which can be a
    # moment after the host's ssh has exited.
    wait_for(lambda: not list((tmp_path / "board-tmp").iterdir()), 10, "the board's session folder to go")


def test_a_killed_bench_leaves_no_runner_no_master_and_no_control_folder(server, tmp_path):
    with killed_afterwards("litert_runner.py", str(tmp_path)):
        bench, runner = _bench_until_the_runner_runs(server, tmp_path)
        masters = wait_for(lambda: processes_mentioning("ControlMaster=yes", f"mbd-ssh-{bench.pid}-"), 10,
                           "the bench's ssh master")
        control = list(Path(tempfile.gettempdir()).glob(f"mbd-ssh-{bench.pid}-*"))
        bench.kill()
        bench.communicate()
        assert exits_within(runner, 15), "the runner kept running on the board after kill -9"
        left = [pid for pid in masters if not exits_within(pid, 10)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, "the ssh master outlived its bench"
        # The next bench clears what the dead one left on both sides: the host's control folder when it
        # connects, the board's session folder when it begins its run under the device lock. (The dead
        # session's shell also removes its folder when sshd hangs it up, but that can come late on a busy
        # board, so only the reaper's work is deterministic.)
        board = _device(server, tmp_path)
        try:
            board.begin_run("after-the-kill")
        finally:
            board.close()
    assert not control[0].exists()
    assert not list((tmp_path / "board-tmp").iterdir())


def test_the_next_bench_ends_what_a_half_open_session_left(server, tmp_path):
    first = _device(server, tmp_path)
    sessions: list[int] = []
    mark = f"{tmp_path}/left-over"
    worker = threading.Thread(target=lambda: _swallow(first.shell, _sleeper(300, mark)))
    with killed_afterwards(mark):
        try:
            first.shell(["true"])
            worker.start()
            sleepers = wait_for(lambda: processes_mentioning(mark), 30, "the long command")
            # A network that died without a word: the host side freezes, the board never sees the end.
            sessions += [p for p in processes_mentioning("MBDEPLOY_SESSION=") if _parent_of(p) == os.getpid()]
            for pid in sessions:
                os.kill(pid, signal.SIGSTOP)
            second = _device(server, tmp_path)
            try:
                second.begin_run("run-2")  # under the device lock: this host's older session is ours to end
            finally:
                second.close()
            assert all(exits_within(pid, 10) for pid in sleepers), "the left-over command was not ended"
        finally:
            for pid in sessions:
                os.kill(pid, signal.SIGCONT)
            first.close()
            worker.join(30)


def _sleeper(seconds: int, mark: str) -> list[str]:
    """A command that sleeps, with `mark` in its command line so the test finds (and ends) only its own."""
    return [sys.executable, "-c", f"import time; time.sleep({seconds})", mark]


def _swallow(call, *args) -> None:  # noqa: ANN001, ANN002
    try:
        call(*args)
    except DeviceError:
        pass


def _parent_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def test_a_live_bench_from_another_host_is_never_timed_beside(server, tmp_path):
    board_tmp = tmp_path / "board-tmp"
    board_tmp.mkdir()
    token = "0123456789abcdef"
    folder = board_tmp / f"mbdeploy-session.{token}"
    folder.mkdir()
    other = subprocess.Popen(["env", f"MBDEPLOY_SESSION={token}", "sleep", "120"])
    try:
        (folder / "owner").write_text(f"{other.pid} other-host\n")
        (folder / "running").write_text(f"{other.pid}\n")
        board = _device(server, tmp_path)
        try:
            with pytest.raises(DeviceError, match="another mbdeploy bench \\(from other-host\\) is running on"):
                board.begin_run("run-1")
        finally:
            board.close()
        assert other.poll() is None  # another host's bench is reported, never killed
    finally:
        other.kill()
        other.wait()


# --- 15: a login banner is never taken for output ----------------------------------------------

def test_a_login_banner_breaks_nothing(banner_server, tmp_path):
    board = _device(banner_server, tmp_path)
    try:
        assert board.shell(["echo", "exact"]).stdout == "exact\n"
        source = tmp_path / "blob.bin"
        source.write_bytes(bytes(range(256)) * 40)
        remote = f"{board.workdir}/blob.bin"
        board.push(source, remote)  # size and sha256 read after the mark, not from the banner's "4096"
        board.pull(remote, tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
        assert board.info().state == "online"
    finally:
        board.close()
    _models(tmp_path)
    done = mbdeploy(["bench", "--device", _url(banner_server, tmp_path), "--models", "models", "--runs", "3",
                     "--warmup", "0", "--json"], cwd=tmp_path, env=_env(banner_server, tmp_path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["failed"] == 0


# --- 16: errors keep their reason -------------------------------------------------------------

def test_a_changed_host_key_shows_sshs_message_and_the_fix(server, tmp_path):
    url, config = server
    port = url.rsplit(":", 1)[1]
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "impostor")], check=True)
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {(tmp_path / 'impostor.pub').read_text().split(' ', 2)[0]} "
                     f"{(tmp_path / 'impostor.pub').read_text().split(' ', 2)[1]}\n")
    changed = tmp_path / "ssh_config"
    changed.write_text(config.read_text().replace(str(config.parent / "known_hosts"), str(known)))
    env = harness_env(tmp_path)
    (tmp_path / "config.toml").write_text(f'[ssh]\nconfig = "{changed}"\n')
    env["MBDEPLOY_CONFIG"] = str(tmp_path / "config.toml")
    _models(tmp_path)
    done = mbdeploy(["bench", "--device", url, "--models", "models", "--runs", "3"], cwd=tmp_path, env=env)
    assert done.returncode != 0
    [line] = done.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"Error: {url} is offline: cannot reach {url}: its host key does not match known_hosts")
    assert "Host key verification failed" in line and "ssh-keygen" in line and f"127.0.0.1]:{port}" in line
    assert known.read_text().count("\n") == 1  # known_hosts untouched


def test_a_full_temp_folder_on_the_board_says_why_and_the_board_is_not_online(server, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root (it stands for a board whose temp folder is full)")
    try:
        filler = subprocess.run(["dd", "if=/dev/zero", f"of={full / 'fill'}", "bs=4k"], capture_output=True)
        assert b"No space left" in filler.stderr
        _, config = server
        board = SshDevice(_url(server, tmp_path), ssh_config=config, ssh_options=["-o", f"SetEnv=TMPDIR={full}"])
        try:
            from mbdeploy.devices.registry import describe

            info = describe(board)
        finally:
            board.close()
    finally:
        subprocess.run(["umount", str(full)], check=False)
    assert info.state == "offline"
    assert "cannot start a shell session on" in info.extra["error"]
    # The board's own words (dash's echo says only "I/O error"), then what df shows for that folder.
    assert "I/O error" in info.extra["error"] or "No space left on device" in info.extra["error"]
    assert f"cannot write in {full} (full? df: tmpfs " in info.extra["error"] and "100%" in info.extra["error"]


def test_a_lost_connection_says_what_happened(server, tmp_path):
    board = _device(server, tmp_path)
    failures: list[BaseException] = []

    mark = f"{tmp_path}/lost"

    def long_command() -> None:
        try:
            board.shell(_sleeper(60, mark))
        except DeviceError as exc:
            failures.append(exc)

    with killed_afterwards(mark):
        try:
            board.shell(["true"])
            worker = threading.Thread(target=long_command)
            worker.start()
            sleepers = wait_for(lambda: processes_mentioning(mark), 30, "the command on the board")
            master = board._master  # noqa: SLF001 - the test plays the network dropping
            assert master is not None
            os.killpg(master.pid, signal.SIGKILL)
            worker.join(30)
            assert all(exits_within(pid, 10) for pid in sleepers)
        finally:
            board.close()
    [error] = failures
    assert isinstance(error, DeviceDisconnected)
    message = error.message
    assert message.startswith(f"lost {board.id} during {sys.executable}: ") and not message.rstrip().endswith(":")


# --- 17: one lock per board, however it is spelled --------------------------------------------

def test_every_spelling_of_a_board_shares_one_lock(server, tmp_path):
    url, config = server
    user, _, hostport = url.removeprefix("ssh://").partition("@")
    alias_config = tmp_path / "ssh_config"
    alias_config.write_text(f"Host myboard\n  HostName 127.0.0.1\n  Port {hostport.split(':')[1]}\n  User {user}\n\n"
                            + config.read_text())
    spellings = [url, f"ssh://{hostport}", f"ssh://{user}@localhost:{hostport.split(':')[1]}", "ssh://myboard"]
    keys = {SshDevice(s, ssh_config=alias_config).lock_key for s in spellings}
    assert len(keys) == 1, keys
    assert SshDevice(f"ssh://nobody@{hostport}", ssh_config=alias_config).lock_key not in keys

    _models(tmp_path)
    env = _env(server, tmp_path)
    with DeviceLock(keys.pop(), wait=False, directory=tmp_path / "cache" / "mbdeploy" / "locks"):
        done = mbdeploy(["bench", "--device", f"ssh://{hostport}?python={sys.executable}", "--models", "models",
                         "--runs", "3", "--no-wait"], cwd=tmp_path, env=env)
    assert done.returncode == 1 and "is busy" in done.stderr, done.stderr
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())
