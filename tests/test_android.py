"""AndroidDevice through the real adb server and the adb test device; server/state handling without one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mbdeploy.devices import android
from mbdeploy.devices.android import AndroidDevice, ServerAddress, server_address
from mbdeploy.errors import DeviceDisconnected, DeviceError, DeviceNotFound, InvalidInput
from mbdeploy.testing.adb_device import AdbTestDevice, free_port
from support.paths import REFERENCE
from support.skips import needs_adb

NASTY = "a b; touch pwned 'x.tflite"


# ---------------------------------------------------------------- no server needed
@pytest.mark.parametrize(
    "adb_host, env, expected",
    [
        (None, {}, ServerAddress("127.0.0.1", 5037)),
        ("rack.local", {}, ServerAddress("rack.local", 5037)),
        ("10.0.0.7:5038", {"ADB_SERVER_SOCKET": "tcp:1.2.3.4:9"}, ServerAddress("10.0.0.7", 5038)),
        (None, {"ADB_SERVER_SOCKET": "tcp:1.2.3.4:9999"}, ServerAddress("1.2.3.4", 9999)),
        (None, {"ADB_SERVER_SOCKET": "tcp:5040"}, ServerAddress("127.0.0.1", 5040)),
        (None, {"ANDROID_ADB_SERVER_PORT": "6000"}, ServerAddress("127.0.0.1", 6000)),
    ],
)
def test_server_address_precedence(adb_host, env, expected):
    assert server_address(adb_host, environ=env) == expected


@pytest.mark.parametrize("adb_host, env", [("host:port", {}), ("host:0", {}), (None, {"ADB_SERVER_SOCKET": "unix:/x"})])
def test_bad_server_address_names_the_allowed_form(adb_host, env):
    with pytest.raises(InvalidInput, match="port must be|must look like"):
        server_address(adb_host, environ=env)


def test_missing_adb_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DeviceError, match="adb is not installed: install Android platform-tools"):
        android.ensure_server(ServerAddress("127.0.0.1", free_port()))


def test_unreachable_remote_server_says_how_to_start_one():
    with pytest.raises(DeviceError, match="no adb server answers at 192.0.2.1:5037"):
        android.ensure_server(ServerAddress("192.0.2.1", 5037))


@pytest.mark.parametrize("state, fix", [("unauthorized", "Allow USB debugging"), ("offline", "adb reconnect")])
def test_unusable_states_list_the_fix_and_refuse_commands(state, fix):
    phone = AndroidDevice("R58M123", state=state)
    info = phone.info()
    assert info.state == state and fix in info.extra["fix"]
    with pytest.raises(DeviceError, match=f"R58M123 is {state}: .*{fix}"):
        phone.shell(["true"])


def test_workdir_must_stay_under_data_local_tmp():
    with pytest.raises(InvalidInput, match="subfolder of /data/local/tmp"):
        AndroidDevice("x", workdir="/data/local/tmp")


def test_parsers_on_dumpsys_layouts():
    battery = android.parse_battery("Current Battery Service state:\n  AC powered: false\n  USB powered: true\n  status: 2\n  level: 57\n")
    assert battery == {"level": 57, "charging": True, "powered_by": ["USB"], "status": "charging"}
    assert android.parse_thermal_status("IsStatusOverride: false\nThermal Status: 3\n") == "severe"
    assert android.parse_getprop("[ro.product.model]: [Pixel 7]\n[ro.x]: []\n") == {"ro.product.model": "Pixel 7", "ro.x": ""}
    reading = android.parse_sensor_lines("t cpu 41250\nt bogus -273000\nt skin 31\nf cpu0 1800000\n")
    assert reading.temperatures_c == {"cpu": 41.25, "skin": 31.0} and reading.cpu_freq_khz == {"cpu0": 1800000}


# ---------------------------------------------------------------- through the real adb server
@pytest.fixture
def device(server, phone):
    found = android.resolve(phone.serial, adb_host=server.address)
    yield found
    found.close()


@needs_adb
def test_discover_and_info(server, phone):
    devices = android.discover(server.address)
    assert [d.id for d in devices] == [phone.serial]
    info = devices[0].info()
    assert (info.kind, info.model, info.soc, info.abi, info.os) == ("android", "Pixel 7", "GS201", "arm64-v8a", "Android 14 (SDK 34)")
    assert info.extra["battery"] == {"level": 80, "charging": False, "powered_by": [], "status": "discharging"}
    assert info.extra["thermal_status"] == "none"
    assert {"pixel", "pixel_7", "panther", phone.serial} <= set(info.extra["match"])
    assert info.temperature_c == 35.2  # the hottest stand-in zone
    assert devices[0].python  # a test device names the host Python its runners need


@needs_adb
def test_a_phone_that_never_accepts_the_key_is_listed_unauthorized_with_the_fix(server, tmp_path):
    with AdbTestDevice(tmp_path / "locked", unauthorized=True) as locked:
        server.client().connect(locked.serial, timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = {d.id: d for d in android.discover(server.address)}
            if locked.serial in states and states[locked.serial].state == "unauthorized":
                break
            time.sleep(0.1)
        phone = states[locked.serial]
        info = phone.info()
        assert info.state == "unauthorized" and "Allow USB debugging" in info.extra["fix"]
        with pytest.raises(DeviceError, match="is unauthorized: unlock the phone"):
            phone.push(tmp_path, "/data/local/tmp/mbdeploy/x")
        server.client().disconnect(locked.serial)


@needs_adb
def test_resolve_by_alias_env_and_only_online(server, phone, monkeypatch):
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    assert android.resolve("pixel", server.address).id == phone.serial
    assert android.resolve("Pixel 7", server.address).id == phone.serial
    assert android.resolve(None, server.address).id == phone.serial  # the only online device
    monkeypatch.setenv("ANDROID_SERIAL", phone.serial)
    assert android.resolve(None, server.address).id == phone.serial
    with pytest.raises(DeviceNotFound, match=f"no phone match 'galaxy'; adb sees: {phone.serial} \\(device\\)"):
        android.resolve("galaxy", server.address)


@needs_adb
def test_push_pull_shell_round_trip(device, phone, tmp_path):
    local = tmp_path / "model.tflite"
    local.write_bytes(bytes(range(256)) * 3000)
    remote = f"{device.workdir}/models/model.tflite"
    device.push(local, remote)
    assert (phone.root / remote.lstrip("/")).read_bytes() == local.read_bytes()
    device.pull(remote, tmp_path / "back" / "model.tflite")
    assert (tmp_path / "back/model.tflite").read_bytes() == local.read_bytes()
    result = device.shell(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (result.exit_code, result.stdout, result.stderr) == (7, "out\n", "err\n")


@needs_adb
@pytest.mark.parametrize("fault, message", [("truncate", "arrived incomplete"), ("flip", "arrived corrupted: sha256 differs")])
def test_push_integrity_check_fails_loudly(device, phone, tmp_path, fault, message):
    local = tmp_path / "model.tflite"
    local.write_bytes(b"TFL3" * 5000)
    phone.push_fault = fault
    try:
        with pytest.raises(DeviceError, match=message):
            device.push(local, f"{device.workdir}/corrupt.tflite")
    finally:
        phone.push_fault = None


@needs_adb
def test_full_device_disk_is_a_clear_error(device, phone, tmp_path):
    local = tmp_path / "model.tflite"
    local.write_bytes(b"TFL3" * 100)
    phone.push_fault = "full"
    try:
        with pytest.raises(DeviceError, match=r"push of .*model.tflite.* failed .*if the device disk is full, free space \(df: "):
            device.push(local, f"{device.workdir}/full.tflite")
    finally:
        phone.push_fault = None


@needs_adb
def test_a_hostile_file_name_runs_nothing_extra(device, phone, tmp_path):
    local = tmp_path / NASTY
    local.write_bytes(b"TFL3 model bytes")
    remote = f"{device.workdir}/{NASTY}"
    device.push(local, remote)
    listed = device.shell(["ls", device.workdir])
    assert NASTY in listed.stdout.splitlines()
    assert device.shell(["cat", remote]).stdout == "TFL3 model bytes"
    device.pull(remote, tmp_path / "pulled")
    assert not list(phone.root.rglob("pwned")) and not (phone.root / "pwned").exists()
    assert not list(tmp_path.rglob("pwned"))


@needs_adb
def test_cleanup_removes_the_workdir_unless_keep(server, phone, tmp_path):
    local = tmp_path / "m.tflite"
    local.write_bytes(b"x")
    kept = AndroidDevice(phone.serial, adb_host=server.address, keep=True)
    kept.push(local, f"{kept.workdir}/m.tflite")
    kept.close()
    assert (phone.root / "data/local/tmp/mbdeploy/m.tflite").exists()
    cleaned = AndroidDevice(phone.serial, adb_host=server.address)
    cleaned.push(local, f"{cleaned.workdir}/m.tflite")
    cleaned.close()
    assert not (phone.root / "data/local/tmp/mbdeploy").exists()


@needs_adb
def test_benchmark_settings_are_applied_recorded_and_restored(device, phone):
    before = len(phone.command_log())
    applied = device.apply_benchmark_settings()
    assert applied == ["fixed_performance_mode", "stay_awake"]
    device.restore_settings()
    log = phone.command_log()[before:]
    assert "power set-fixed-performance-mode-enabled true" in log
    assert log.index("power set-fixed-performance-mode-enabled false") > log.index("power set-fixed-performance-mode-enabled true")
    assert "svc power stayon true" in log and "put global stay_on_while_plugged_in 0" in log


@needs_adb
def test_fixed_performance_mode_needs_android_11(server, tmp_path):
    with AdbTestDevice(tmp_path / "old", properties={"ro.build.version.sdk": "29", "ro.build.version.release": "10"}) as old:
        server.connect(old)
        phone = AndroidDevice(old.serial, adb_host=server.address)
        assert phone.apply_benchmark_settings(keep_screen_on=False) == []
        assert not any("fixed-performance" in line for line in old.command_log())
        server.client().disconnect(old.serial)


@needs_adb
def test_device_disappearing_mid_command_is_device_disconnected(server, tmp_path):
    doomed = AdbTestDevice(tmp_path / "doomed")
    doomed.start()
    try:
        server.connect(doomed)
        phone = AndroidDevice(doomed.serial, adb_host=server.address)
        assert phone.shell(["echo", "alive"]).stdout == "alive\n"
        threading.Timer(0.5, doomed.stop).start()
        started = time.monotonic()
        with pytest.raises(DeviceDisconnected, match=f"{doomed.serial} disconnected during `sleep`"):
            phone.shell(["sleep", "20"])
        assert time.monotonic() - started < 10
        with pytest.raises(DeviceDisconnected):
            phone.shell(["echo", "again"])
    finally:
        doomed.close()
        server.client().disconnect(doomed.serial)


@needs_adb
def test_first_use_applies_settings_and_close_restores_them(server, phone):
    before = len(phone.command_log())
    used = AndroidDevice(phone.serial, adb_host=server.address)
    used.workdir  # the first use for a run
    assert used.settings_applied == ["fixed_performance_mode", "stay_awake"]
    assert (phone.state / "fixed_performance_mode").read_text().strip() == "true"
    used.close()
    assert (phone.state / "fixed_performance_mode").read_text().strip() == "false"
    assert {"put global stay_on_while_plugged_in 0", "power set-fixed-performance-mode-enabled false"} <= set(phone.command_log()[before:])


# ---------------------------------------------------------------- the CLI end to end
MODELS = [REFERENCE / "mobilenet_v1_0.25_128_quant.tflite", REFERENCE / "mobilenet_v1_0.5_160_quant.tflite"]
needs_models = pytest.mark.skipif(not all(m.is_file() for m in MODELS), reason=f"shared reference models absent under {REFERENCE}")


def _cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mbdeploy", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    # `pixel` reaches the test phone through the registry's alias table (a project config file).
    config = tmp_path / "mbdeploy.toml"
    config.write_text("")
    env = dict(os.environ, MBDEPLOY_CONFIG=str(config), XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("ANDROID_SERIAL", None)
    return config, env


@needs_adb
def test_cli_devices_lists_the_test_phone(server, phone, cli_env):
    _, env = cli_env
    done = _cli("devices", "--json", "--adb-host", server.address, env=env)
    assert done.returncode == 0, done.stderr
    listed = {entry["id"]: entry for entry in json.loads(done.stdout)}
    entry = listed[phone.serial]
    assert (entry["kind"], entry["model"], entry["abi"], entry["state"]) == ("android", "Pixel 7", "arm64-v8a", "online")
    assert entry["extra"]["battery"]["level"] == 80 and "pixel" in entry["extra"]["match"]


@needs_adb
@needs_models
def test_cli_bench_on_the_test_phone_stores_valid_records(server, phone, cli_env, tmp_path):
    from mbdeploy.records.schema import validate_record
    from mbdeploy.records.store import read_records

    _, env = cli_env  # no alias: "pixel" matches the phone's model, as a user would type it
    out = tmp_path / "results"
    done = _cli("bench", "--device", "pixel", "--runner", "litert", "--adb-host", server.address,
                "--models", str(MODELS[0]), "--out", str(out), "--runs", "20", "--max-secs", "5", "--json", env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    records = read_records(Path(summary["run_dir"]) / "results.jsonl")
    assert len(records) == 1 and records[0]["status"] == "ok", records
    record = records[0]
    validate_record(record)
    assert record["device"]["kind"] == "android" and record["device"]["model"] == "Pixel 7"
    assert record["latency_ms"]["count"] == 20 and record["latency_ms"]["median"] > 0
    assert record["power"]["source"].startswith("battery current_now x voltage_now")
    during = record["thermal"]["during_run"]  # the phone's sampler, inside the timed loop
    assert (during["status_start"], during["status_end"]) == (0, 0) and during["max_temperature_c"] > 0
    assert not (phone.root / "data/local/tmp/mbdeploy").exists()  # cleaned up after the run
    assert "fixed_performance_mode" in record["runner_extra"]["device_settings"]


@needs_adb
@needs_models
def test_cli_bench_without_device_takes_the_only_phone_and_keeps_its_folder(server, phone, cli_env, tmp_path):
    _, env = cli_env
    done = _cli("bench", "--runner", "litert", "--adb-host", server.address, "--keep",
                "--models", str(MODELS[0]), "--out", str(tmp_path / "results"), "--runs", "5", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"][0]["device"] == phone.serial
    assert list((phone.root / "data/local/tmp/mbdeploy").rglob("*.tflite"))  # --keep left the folder and model
    # The litert runner ran under the device-side deadline guard, its pid recorded for the next bench to end.
    assert (phone.root / "data/local/tmp/mbdeploy/pids/litert_runner.pid").read_text().strip().isdigit()


def _gone(phone: AdbTestDevice, timeout: float = 10.0) -> list[str]:
    """The phone's processes (command lines) still alive once `timeout` has passed without them all ending."""
    deadline = time.monotonic() + timeout
    while (alive := phone.live_processes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [_cmdline(pid) for pid in alive]


def _cmdline(pid: int) -> str:
    try:
        return f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return f"{pid}: (gone)"


def _wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _unplug_mid_sweep(server, env, config, tmp_path):
    """Bench two models, pull the cable while the second one's timed run and sampler run; return
    (exit code, run folder, bench args, root, port, processes left on the phone)."""
    root = tmp_path / "phone"
    port = free_port()
    phone = AdbTestDevice(root, port=port)
    phone.start()
    server.connect(phone)
    config.write_text(f'[aliases]\npixel = "{phone.serial}"\n')
    out = tmp_path / "results"
    args = ["bench", "--device", "pixel", "--runner", "litert", "--adb-host", server.address, "--out", str(out),
            "--models", str(MODELS[0]), "--models", str(MODELS[1]), "--min-secs", "3", "--max-secs", "3", "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "mbdeploy", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        # The second model's timed run has started (its sampler runs since just before it): pull the cable.
        assert phone.wait_for_command("--target-ci", count=2, timeout=120), "the second model never started"
        assert phone.wait_for_command(" marker ", count=2, timeout=10)
        assert phone.live_processes(), "nothing ran on the phone when the cable was pulled"
        phone.stop()
        left = _gone(phone)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        phone.close()
    return proc.returncode, next(out.iterdir()), args, root, port, left


@needs_adb
@needs_models
def test_cli_bench_phone_unplugged_mid_sweep_keeps_records_and_leaves_nothing_running(server, cli_env, tmp_path):
    from mbdeploy.records.store import read_records

    config, env = cli_env
    _, run_dir, _, _, _, left = _unplug_mid_sweep(server, env, config, tmp_path)
    assert left == []  # no sampler, no runner outlives the disconnect
    first, second = read_records(run_dir / "results.jsonl")
    assert first["status"] == "ok" and first["artifact"]["name"] == "mobilenet_v1_0.25_128_quant"
    assert second["status"] == "failed" and second["artifact"]["name"] == "mobilenet_v1_0.5_160_quant"
    assert "disconnected during" in second["error"] and "--resume" in second["error"], second["error"]


@needs_adb
@needs_models
def test_cli_bench_unplugged_exits_non_zero_and_resume_finishes_after_reconnect(server, cli_env, tmp_path):
    from mbdeploy.records.store import read_records

    config, env = cli_env
    code, run_dir, args, root, port, _ = _unplug_mid_sweep(server, env, config, tmp_path)
    assert code != 0
    back = AdbTestDevice(root, port=port)  # plugged back in
    back.start()
    try:
        server.connect(back)
        done = _cli(*args, "--resume", run_dir.name, env=env)
    finally:
        back.close()
    assert done.returncode == 0, done.stderr
    records = read_records(run_dir / "results.jsonl")
    assert [r["status"] for r in records if r["artifact"]["name"] == "mobilenet_v1_0.5_160_quant"][-1] == "ok"


@needs_adb
@needs_models
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_a_killed_host_leaves_nothing_running_on_the_phone(server, cli_env, tmp_path, signal_name):
    import signal

    config, env = cli_env
    phone = AdbTestDevice(tmp_path / "phone")
    phone.start()
    try:
        server.connect(phone)
        config.write_text(f'[aliases]\npixel = "{phone.serial}"\n')
        args = ["bench", "--device", "pixel", "--runner", "litert", "--adb-host", server.address,
                "--out", str(tmp_path / "results"), "--models", str(MODELS[0]), "--min-secs", "60", "--max-secs", "60"]
        proc = subprocess.Popen([sys.executable, "-m", "mbdeploy", *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        try:
            # The timed run's own command (only it passes --target-ci) has started, the sampler before it.
            assert phone.wait_for_command("--target-ci", timeout=120), "the timed run never started"
            assert phone.wait_for_command(" marker ", timeout=10) and phone.live_processes()
            proc.send_signal(getattr(signal, signal_name))
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert _gone(phone) == []
        if signal_name == "SIGTERM":  # a terminated bench still puts the phone back as it found it
            assert (phone.state / "fixed_performance_mode").read_text().strip() == "false"
    finally:
        phone.close()
        server.client().disconnect(phone.serial)


@needs_adb
def test_the_next_bench_ends_what_an_earlier_one_left_and_nothing_else(server, tmp_path):
    phone = AdbTestDevice(tmp_path / "phone")
    phone.start()
    try:
        server.connect(phone)
        first = AndroidDevice(phone.serial, adb_host=server.address, keep=True, benchmark_settings=False)
        # What a host killed before it could clean up leaves: a detached command from the work folder.
        first.push(Path(shutil.which("sleep")), f"{first.workdir}/sleeper")
        first.shell(["sh", "-c", 'nohup sh -c \'echo $$ > "$0"; exec "$1" 300\' "$@" > /dev/null 2>&1 &',
                     "leftover", f"{first.workdir}/pids/old.pid", f"{first.workdir}/sleeper"])
        assert _wait_for(lambda: len(phone.live_processes()) == 1)
        stranger = subprocess.Popen(["sleep", "300"])  # a reused pid must not be killed
        (phone.root / "data/local/tmp/mbdeploy/pids/reused.pid").write_text(f"{stranger.pid}\n")
        try:
            later = AndroidDevice(phone.serial, adb_host=server.address, benchmark_settings=False)
            later.workdir  # the next bench's first use of the phone
            assert len(later.ended_leftovers) == 1 and _gone(phone) == []
            assert stranger.poll() is None
            later.close()
        finally:
            stranger.kill()
            stranger.wait()
    finally:
        phone.close()
        server.client().disconnect(phone.serial)


@needs_adb
@pytest.mark.parametrize("shell", ["phone", "host"])
def test_push_check_reads_the_file_on_stdin_so_odd_names_are_not_corrupted(server, tmp_path, shell):
    # GNU sha256sum (the host shell) prefixes the digest of such a name with `\`; toybox does not.
    local = tmp_path / "m.tflite"
    local.write_bytes(b"TFL3 odd")
    with AdbTestDevice(tmp_path / "phone", shell=shell) as odd:
        server.connect(odd)
        device = AndroidDevice(odd.serial, adb_host=server.address, benchmark_settings=False)
        for name in ("back\\slash.tflite", "new\nline.tflite"):
            device.push(local, f"{device.workdir}/{name}")  # "arrived corrupted" with `sha256sum "$1"`
        device.close()
        server.client().disconnect(odd.serial)


@needs_adb
@needs_models
def test_cli_bench_on_an_x86_64_phone_names_benchmark_binary_in_one_line_and_fetches_nothing(server, cli_env, tmp_path):
    config, env = cli_env
    with AdbTestDevice(tmp_path / "x86", properties={"ro.product.cpu.abi": "x86_64",
                                                     "ro.product.cpu.abilist": "x86_64,x86"}) as x86:
        server.connect(x86)
        config.write_text(f'[aliases]\nemulator = "{x86.serial}"\n')
        done = _cli("bench", "--device", "emulator", "--adb-host", server.address, "--models", str(MODELS[0]),
                    "--out", str(tmp_path / "results"), "--runs", "3", env=env)
        server.client().disconnect(x86.serial)
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert done.returncode != 0 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "not this x86_64 device; pass --benchmark-binary PATH" in errors[0]
    assert not (tmp_path / "cache" / "mbdeploy" / "benchmark_model").exists()  # no download was tried
