"""The adb test device against the REAL adb server (Debian's `adb`), through adbutils and the adb CLI."""

from __future__ import annotations

import subprocess
import sys

from support.skips import needs_adb


pytestmark = needs_adb


def test_adb_server_lists_the_test_device_with_its_banner(server, phone):
    listed = {d.serial: d.state for d in server.client().list()}
    assert listed[phone.serial] == "device"
    out = subprocess.run(["adb", "-P", str(server.port), "devices", "-l"], capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith(phone.serial))
    assert "model:Pixel_7" in line and "device:panther" in line


def test_shell_v1_and_v2_through_adbutils(server, phone):
    dev = server.client().device(phone.serial)
    assert dev.shell("getprop ro.product.model") == "Pixel 7"
    assert dev.shell("getprop ro.product.cpu.abi") == "arm64-v8a"
    v2 = dev.shell2("echo out; echo err >&2; exit 3", v2=True)
    assert (v2.returncode, v2.stdout, v2.stderr) == (3, "out\n", "err\n")
    v1 = dev.shell2("echo both; false")
    assert (v1.returncode, v1.output) == (1, "both\n")


def test_adb_cli_shell_returns_the_exit_status(server, phone):
    done = subprocess.run(["adb", "-P", str(server.port), "-s", phone.serial, "shell", "echo hi; exit 4"],
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (4, "hi\n")


def test_sync_push_stat_list_pull_round_trip(server, phone, tmp_path):
    dev = server.client().device(phone.serial)
    data = bytes(range(256)) * 4100  # > one sync DATA chunk and > one adb payload
    dev.sync.push(data, "/data/local/tmp/rt/blob.bin")
    assert (phone.root / "data/local/tmp/rt/blob.bin").read_bytes() == data
    assert dev.sync.stat("/data/local/tmp/rt/blob.bin").size == len(data)
    assert dev.sync.stat("/data/local/tmp/rt/missing").mtime is None
    assert "blob.bin" in [entry.path for entry in dev.sync.list("/data/local/tmp/rt")]
    assert dev.sync.read_bytes("/data/local/tmp/rt/blob.bin") == data


def test_adb_cli_push_and_pull(server, phone, tmp_path):
    source = tmp_path / "model.bin"
    source.write_bytes(b"\x00\x01tflite" * 1000)
    adb = ["adb", "-P", str(server.port), "-s", phone.serial]
    subprocess.run([*adb, "push", str(source), "/data/local/tmp/cli/model.bin"], check=True, capture_output=True, timeout=30)
    subprocess.run([*adb, "pull", "/data/local/tmp/cli/model.bin", str(tmp_path / "back.bin")], check=True, capture_output=True, timeout=30)
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()


def test_shell_sees_device_paths_in_the_sandbox(server, phone):
    dev = server.client().device(phone.serial)
    dev.shell("mkdir -p /data/local/tmp/paths && echo hello > /data/local/tmp/paths/f.txt")
    assert (phone.root / "data/local/tmp/paths/f.txt").read_text() == "hello\n"
    assert dev.shell("cat /sys/class/power_supply/battery/capacity") == "80"


def test_command_line_starts_a_device_that_adb_connects_to(server, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mbdeploy.testing.adb_device", "--port", "0", "--model", "Pixel 8", "--root", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on 127.0.0.1:" in line
        serial = line.split("listening on ")[1].split()[0]
        adb = server.client()
        adb.connect(serial, timeout=10)
        assert adb.device(serial).shell("getprop ro.product.model") == "Pixel 8"
        adb.disconnect(serial)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_commands_run_under_mksh_with_toybox_applets_only(server, phone):
    from mbdeploy.testing.adb_device import toybox_bin

    dev = server.client().device(phone.serial)
    assert "MIRBSD KSH" in dev.shell("echo $KSH_VERSION")  # Android's shell
    assert dev.shell("command -v tr") == str(toybox_bin() / "tr")  # an applet Debian's toybox package lacks
    assert dev.shell("readlink -f $(command -v sed)") == str((toybox_bin() / "toybox").resolve())
    gnu_only = dev.shell2("grep -P x /dev/null", v2=True)
    assert gnu_only.returncode != 0 and "Unknown option" in gnu_only.stderr  # fails here as on a phone


def test_the_host_shell_stays_an_option(server, tmp_path):
    from mbdeploy.testing.adb_device import AdbTestDevice

    with AdbTestDevice(tmp_path / "host", shell="host") as host:
        server.connect(host)
        dev = server.client().device(host.serial)
        assert dev.shell("echo ${KSH_VERSION:-none}") == "none"
        assert dev.shell2("grep -P x /dev/null", v2=True).returncode == 1  # GNU grep knows -P: no match
        server.client().disconnect(host.serial)
