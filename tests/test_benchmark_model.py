"""benchmark_model / benchmark APK: parser on transcripts, command lines, the cached download, and both runners
driven through the real adb server against the adb test device.

The official tool is an Android (bionic) binary and cannot run here: the runner tests stand a small shell
script in for it that prints a transcript and records the argv it received."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from mbdeploy.errors import InvalidInput, RunnerError
from mbdeploy.runners.base import TimingOptions
from mbdeploy.runners.benchmark_app import ACTIVITY, BenchmarkAppRunner, logcat_messages
from mbdeploy.runners.benchmark_model import (
    BenchmarkModelRunner,
    fetch_release,
    parse_output,
    parse_stat,
    tool_flags,
)

TRANSCRIPTS = Path(__file__).parent / "transcripts"
NASTY = "a b; touch pwned 'x.tflite"


def transcript(name: str) -> str:
    return (TRANSCRIPTS / name).read_text()


# ---------------------------------------------------------------- parser
@pytest.mark.parametrize(
    "line, expected",
    [
        ("count=0", {"count": 0}),
        ("INFO: count=0 p5=nan median=nan p95=nan", {"count": 0}),
        ("count=1 curr=2304", {"count": 1, "min": 2304.0, "max": 2304.0, "avg": 2304.0, "std": 0.0}),
        ("count=5 curr=12(all same)", {"count": 5, "avg": 12.0, "std": 0.0}),
        ("count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929",
         {"count": 50, "first": 79449.0, "min": 77385.0, "max": 88213.0, "avg": 79732.0, "std": 1929.0}),
        ("INFO: count=9 first=3 curr=2 min=1 max=3 avg=2.1 std=0 p5=1 median=2 p95=3",
         {"count": 9, "p5": 1.0, "median": 2.0, "p95": 3.0}),
        ("Timings (microseconds): count=1 curr=147", None),
    ],
)
def test_parse_stat_forms(line, expected):
    parsed = parse_stat(line)
    if expected is None:
        assert parsed is None
    else:
        assert expected.items() <= parsed.items()


def test_older_build_without_prefix_or_percentiles():
    out = parse_output(transcript("tf2_3_cpu.txt"), TimingOptions(min_secs=1, max_secs=150))
    assert out.summary_ms["count"] == 197
    assert out.summary_ms["mean"] == pytest.approx(5.0662) and out.summary_ms["median"] is None
    assert (out.summary_ms["min"], out.summary_ms["max"], out.summary_ms["std"]) == pytest.approx((4.921, 5.603, 0.098))
    assert out.init_ms == pytest.approx(3.418) and out.first_inference_ms is None
    assert out.extra["memory_delta_mb"] == {"init": 2.10938, "overall": 9.82812}
    assert out.extra["warmup_us"]["count"] == 98 and out.stop_reason == "min_secs"


def test_newer_build_with_info_prefix_percentiles_and_peak_memory():
    out = parse_output(transcript("litert_xnnpack_percentiles.txt"), TimingOptions(threads=4, runs=100, min_secs=2, max_secs=20))
    s = out.summary_ms
    assert (s["count"], s["median"], s["p5"], s["p95"]) == (2133, pytest.approx(0.921), pytest.approx(0.88), pytest.approx(1.021))
    assert out.init_ms == pytest.approx(11.73) and out.first_inference_ms == pytest.approx(1.893)
    assert out.peak_memory_mb == pytest.approx(9.55859)
    assert out.extra["delegates"] == [{"delegate": "XNNPACK", "coverage": "complete", "delegate_kernels": None}]
    assert "delegate_warning" not in out.extra


def test_partial_delegate_is_recorded_and_warned():
    out = parse_output(transcript("gpu_partial_single_warmup.txt"))
    assert out.extra["delegates"] == [{"delegate": "GPU", "coverage": "partial", "delegate_kernels": 3}]
    assert out.extra["delegate_warning"] == "GPU runs part of the graph (3 delegate kernels)"
    assert out.extra["warmup_us"]["count"] == 1 and out.summary_ms["count"] == 412


def test_all_same_and_empty_phases():
    out = parse_output(transcript("all_same_and_empty.txt"))
    assert out.summary_ms["count"] == 5
    assert out.summary_ms["mean"] == out.summary_ms["median"] == out.summary_ms["min"] == pytest.approx(0.012)
    assert out.summary_ms["std"] == 0.0
    assert out.extra["warmup_us"] == {"count": 0} and out.first_inference_ms is None


def test_op_profile_by_node_type_comes_from_the_regular_runs_section():
    out = parse_output(transcript("op_profiling.txt"))
    table = out.extra["op_profile_by_type"]
    assert [row["node_type"] for row in table] == ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "SOFTMAX", "RESHAPE"]
    assert table[0] == {"node_type": "CONV_2D", "count": 15, "avg_ms": 3.562, "avg_percent": 68.742,
                        "cdf_percent": 68.742, "mem_kb": 0.0, "times_called": 15}
    assert sum(row["count"] for row in table) == 31  # "Number of nodes executed: 31"
    assert out.summary_ms["count"] == 192  # the op profiler's own Timings line is not a phase


def test_failed_run_is_a_runner_error_with_the_tools_words():
    with pytest.raises(RunnerError, match="no timed runs.*Failed to initialize the interpreter"):
        parse_output(transcript("not_delegated_then_failure.txt"))


def test_not_delegated_line_is_parsed():
    text = transcript("not_delegated_then_failure.txt") + "\ncount=3 first=5 curr=5 min=4 max=5 avg=4.7 std=0\n"
    out = parse_output(text)
    assert out.extra["delegates"] == [{"delegate": "NNAPI", "coverage": "none", "delegate_kernels": 0}]
    assert "NNAPI runs none of the graph" in out.extra["delegate_warning"]


def test_logcat_messages_of_the_app_parse_like_the_binary():
    messages = logcat_messages(transcript("benchmark_app_logcat.txt"))
    assert "ActivityManager" not in messages and "Slow operation" not in messages
    out = parse_output(messages)
    assert out.summary_ms["count"] == 1071 and out.summary_ms["median"] == pytest.approx(0.917)
    assert out.init_ms == pytest.approx(15.214)


# ---------------------------------------------------------------- command lines and options
def test_flags_follow_the_timing_options():
    flags = tool_flags(TimingOptions(threads=4, warmup_runs=3, min_secs=2, max_secs=30, runs=100), "/m.tflite",
                       delegate="gpu", op_profiling=True, peak_memory=True)
    # A fixed --runs means exactly that many: benchmark_model would otherwise also run until min_secs.
    assert flags == ["--graph=/m.tflite", "--num_threads=4", "--warmup_runs=3", "--min_secs=0", "--max_secs=30",
                     "--use_xnnpack=false", "--num_runs=100", "--use_gpu=true", "--enable_op_profiling=true",
                     "--report_peak_memory_footprint=true"]
    assert "--min_secs=2" in tool_flags(TimingOptions(min_secs=2), "/m")  # adaptive: the minimum holds
    assert "--use_nnapi=true" in tool_flags(TimingOptions(), "/m", delegate="nnapi")
    assert "--use_xnnpack=true" in tool_flags(TimingOptions(), "/m", delegate="xnnpack")


def test_taskset_mask_and_bad_options():
    runner = BenchmarkModelRunner(TimingOptions(), cpu_mask="0xF0")
    assert runner.command("/bm", "/m")[:3] == ["taskset", "f0", "/bm"]
    with pytest.raises(InvalidInput, match="non-zero hex bit mask"):
        BenchmarkModelRunner(TimingOptions(), cpu_mask="big")
    with pytest.raises(InvalidInput, match="not one of: cpu, xnnpack, gpu, nnapi"):
        BenchmarkModelRunner(TimingOptions(), delegate="hexagon")
    assert BenchmarkModelRunner(TimingOptions(xnnpack=False)).delegate == "cpu"


def test_app_start_command_passes_all_flags_as_one_argument():
    runner = BenchmarkAppRunner(TimingOptions(threads=4))
    argv = runner.start_command("/data/local/tmp/mbdeploy/m.tflite")
    assert argv[:8] == ["am", "start", "-S", "-W", "-n", ACTIVITY, "--es", "args"]
    assert argv[8].startswith("--graph=/data/local/tmp/mbdeploy/m.tflite --num_threads=4 ") and len(argv) == 9


# ---------------------------------------------------------------- the cached download
@pytest.fixture
def release_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *a, **k: None
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/latest"
    httpd.shutdown()


def test_download_once_record_sha256_and_refuse_a_changed_file(release_server, tmp_path):
    served, base = release_server
    (served / "latest").mkdir()
    (served / "latest/android_aarch64_benchmark_model").write_bytes(b"\x7fELF version one")
    cache = tmp_path / "cache"
    first = fetch_release("arm64-v8a", cache=cache, base_url=base)
    assert first.read_bytes() == b"\x7fELF version one" and first.stat().st_mode & 0o111
    recorded = (cache / "android_aarch64_benchmark_model.sha256").read_text().split()[0]
    assert recorded == hashlib.sha256(b"\x7fELF version one").hexdigest()
    (served / "latest/android_aarch64_benchmark_model").write_bytes(b"\x7fELF version two")
    assert fetch_release("arm64-v8a", cache=cache, base_url=base).read_bytes() == b"\x7fELF version one"  # once
    first.unlink()
    with pytest.raises(RunnerError, match="refusing a changed file"):
        fetch_release("arm64-v8a", cache=cache, base_url=base)
    assert not first.exists()
    first.write_bytes(b"tampered")
    with pytest.raises(RunnerError, match="delete it to download again"):
        fetch_release("arm64-v8a", cache=cache, base_url=base)


def test_download_pinned_hash_and_errors(release_server, tmp_path):
    served, base = release_server
    (served / "latest").mkdir()
    (served / "latest/android_arm_benchmark_model.apk").write_bytes(b"PK apk")
    with pytest.raises(RunnerError, match="expected 0+"):
        fetch_release("armeabi-v7a", apk=True, cache=tmp_path / "c1", base_url=base, sha256="0" * 64)
    good = hashlib.sha256(b"PK apk").hexdigest()
    assert fetch_release("armeabi-v7a", apk=True, cache=tmp_path / "c2", base_url=base, sha256=good).exists()
    with pytest.raises(RunnerError, match="could not download .*--benchmark-binary"):
        fetch_release("x86_64", cache=tmp_path / "c3", base_url=base)
    with pytest.raises(InvalidInput, match="no official benchmark_model build for ABI 'mips'"):
        fetch_release("mips", cache=tmp_path / "c4", base_url=base)


# ---------------------------------------------------------------- both runners through the real adb server
def _connect(server, tmp_path, tools=None):
    from mbdeploy.devices import android
    from mbdeploy.testing.adb_device import AdbTestDevice

    phone = AdbTestDevice(tmp_path / "phone", tools=tools)
    phone.start()
    server.connect(phone)
    return phone, android.resolve(phone.serial, server.address)


def test_benchmark_model_runner_over_adb_with_a_hostile_model_name(server, tmp_path):
    argv_log = tmp_path / "argv.txt"
    stand_in = tmp_path / "benchmark_model"
    stand_in.write_text(
        "#!/bin/sh\n"
        f"for a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{argv_log}'\n"
        f"cat '{TRANSCRIPTS / 'litert_xnnpack_percentiles.txt'}' >&2\n"
    )
    stand_in.chmod(0o755)
    phone, device = _connect(server, tmp_path)
    try:
        model = tmp_path / NASTY
        model.write_bytes(b"TFL3")
        remote = f"{device.workdir}/{NASTY}"
        device.push(model, remote)
        runner = BenchmarkModelRunner(TimingOptions(threads=2, runs=10), binary=stand_in, cpu_mask="1")
        runner.prepare(device)
        out = runner.run(device, remote)
        assert out.summary_ms["count"] == 2133 and runner.config()["binary_sha256"]
        received = argv_log.read_text().splitlines()
        assert received[0] == f"--graph={phone.root}{remote}" and "--num_threads=2" in received
        assert not list(phone.root.rglob("pwned")) and not list(tmp_path.rglob("pwned"))
    finally:
        device.close()
        phone.close()


def test_benchmark_app_runner_over_adb(server, tmp_path):
    am_log = tmp_path / "am_argv.txt"
    tools = {
        # The app itself cannot run here: `am` records its argv and "logs" a transcript as the app would.
        "am": f"for a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{am_log}'\n"
              f"cp '{TRANSCRIPTS / 'benchmark_app_logcat.txt'}' \"$TD_STATE/logcat.txt\"\n"
              "echo 'Status: ok'\n",
        "pm": 'echo "pm $*" >> "$TD_STATE/cmd.log"\ncase "$1" in path) exit 1 ;; install) echo Success ;; esac\n',
    }
    phone, device = _connect(server, tmp_path, tools=tools)
    try:
        apk = tmp_path / "benchmark.apk"
        apk.write_bytes(b"PK fake apk")
        model = tmp_path / NASTY
        model.write_bytes(b"TFL3")
        remote = f"{device.workdir}/{NASTY}"
        device.push(model, remote)
        runner = BenchmarkAppRunner(TimingOptions(threads=4), apk=apk, poll_s=0.05)
        runner.prepare(device)
        assert any(line.startswith("pm install -r -t -g ") for line in phone.command_log())
        out = runner.run(device, remote)
        assert out.summary_ms["count"] == 1071
        received = am_log.read_text().splitlines()
        assert received[:8] == ["start", "-S", "-W", "-n", ACTIVITY, "--es", "args",
                                f"--graph={phone.root}/data/local/tmp/mbdeploy/benchmark_app_model.tflite --num_threads=4 "
                                "--warmup_runs=5 --min_secs=1 --max_secs=10 --use_xnnpack=true"]
        assert not list(phone.root.rglob("pwned"))
    finally:
        device.close()
        phone.close()


def test_config_key_is_the_same_before_and_after_prepare_records_the_binary_hash(tmp_path):
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    runner = BenchmarkModelRunner(TimingOptions(), binary=binary)
    before = runner.config_key()
    runner.binary_sha256 = hashlib.sha256(b"\x7fELF").hexdigest()  # what prepare() records
    assert runner.config_key() == before and runner.config()["binary_sha256"] == runner.binary_sha256
    assert BenchmarkModelRunner(TimingOptions(threads=4), binary=binary).config_key() != before
