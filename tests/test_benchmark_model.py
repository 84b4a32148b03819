"""benchmark_model / benchmark APK: parser on transcripts, command lines, the cached download, and both runners
driven through the real adb server against the adb test device.

The official tool is an Android (bionic) binary and cannot run here: the runner tests stand a small shell
script in for it that prints a transcript and records the argv it received."""

from __future__ import annotations

import functools
import hashlib
import http.server
import sys
import threading
from pathlib import Path

import pytest

from mbdeploy.errors import InvalidInput, RunnerError
from mbdeploy.runners.base import TimingOptions
from mbdeploy.runners.benchmark_app import ACTIVITY, APP_PROFILE, BenchmarkAppRunner
from mbdeploy.runners.benchmark_model import BenchmarkModelRunner, choose_flavour, tool_flags
from mbdeploy.runners.benchmark_output import logcat_messages, parse_output, parse_stat
from mbdeploy.runners.benchmark_release import Release, fetch, release_for

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
    # Builds of that era print no "First inference": it is the warm-up phase's first= run.
    assert out.init_ms == pytest.approx(3.418) and out.first_inference_ms == pytest.approx(6.871)
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
    assert flags == ["--graph=/m.tflite", "--num_threads=4", "--warmup_runs=3", "--warmup_min_secs=0", "--min_secs=0",
                     "--max_secs=30", "--use_xnnpack=false", "--num_runs=100", "--use_gpu=true",
                     "--enable_op_profiling=true", "--report_peak_memory_footprint=true"]
    assert "--min_secs=2" in tool_flags(TimingOptions(min_secs=2), "/m")  # adaptive: the minimum holds
    assert "--use_nnapi=true" in tool_flags(TimingOptions(), "/m", delegate="nnapi")
    assert "--use_xnnpack=true" in tool_flags(TimingOptions(), "/m", delegate="xnnpack")
    # The LiteRT 2.x tool has no --use_xnnpack (its CPU path is XNNPACK); the NPU gets the vendor's libraries.
    litert = tool_flags(TimingOptions(), "/m", delegate="npu", flavour="litert", dispatch_path="/d", plugin_path="/p")
    assert not any(f.startswith("--use_xnnpack") for f in litert)
    assert litert[-3:] == ["--use_npu=true", "--dispatch_library_path=/d", "--compiler_plugin_library_path=/p"]
    profiled = tool_flags(TimingOptions(), "/m", op_profiling=True, op_profile_file="/w/op.pb")
    assert profiled[-3:] == ["--enable_op_profiling=true", "--op_profiling_output_mode=proto",
                             "--op_profiling_output_file=/w/op.pb"]


def test_taskset_mask_and_bad_options(tmp_path):
    runner = BenchmarkModelRunner(TimingOptions(), cpu_mask="0xF0")
    assert runner.command("/bm", "/m")[:3] == ["taskset", "f0", "/bm"]
    with pytest.raises(InvalidInput, match="non-zero hex bit mask"):
        BenchmarkModelRunner(TimingOptions(), cpu_mask="big")
    with pytest.raises(InvalidInput, match="not one of: cpu, xnnpack, gpu, nnapi, npu"):
        BenchmarkModelRunner(TimingOptions(), delegate="hexagon")
    assert BenchmarkModelRunner(TimingOptions(xnnpack=False), release="nightly").delegate == "cpu"


def test_the_request_picks_the_flavour_and_the_classic_tool_is_an_explicit_opt_in(tmp_path):
    assert choose_flavour("xnnpack", False) == "litert" and choose_flavour("gpu", False) == "litert"
    assert choose_flavour("nnapi", False) == choose_flavour("cpu", False) == choose_flavour("xnnpack", True) == "tflite"
    with pytest.raises(InvalidInput, match="op profiling to a file needs the classic TFLite"):
        choose_flavour("xnnpack", True, flavour="litert")
    with pytest.raises(InvalidInput, match="needs the LiteRT 2.x benchmark_model"):
        choose_flavour("npu", False, flavour="tflite")
    with pytest.raises(InvalidInput, match="only in the unpinned nightly folder: pass --benchmark-binary PATH"):
        BenchmarkModelRunner(TimingOptions(), op_profiling=True)
    with pytest.raises(InvalidInput, match="--delegate npu needs the vendor's dispatch library folder"):
        BenchmarkModelRunner(TimingOptions(), delegate="npu")
    libs = tmp_path / "dispatch"
    libs.mkdir()
    (libs / "libLiteRtDispatch_Qualcomm.so").write_bytes(b"\x7fELF")
    runner = BenchmarkModelRunner(TimingOptions(), delegate="npu", dispatch_library=libs)
    assert runner.flavour == "litert" and runner.config()["flavour"] == "litert"


def test_the_apk_for_an_x86_64_emulator_is_the_arm64_one_its_app_translation_runs():
    from mbdeploy.runners.benchmark_app import app_abi

    emulator = {"ro.product.cpu.abi": "x86_64", "ro.product.cpu.abilist": "x86_64,x86,arm64-v8a,armeabi-v7a,armeabi"}
    assert app_abi(emulator) == "arm64-v8a"
    assert app_abi({"ro.product.cpu.abi": "x86_64", "ro.product.cpu.abilist": "x86_64,x86"}) == "x86_64"  # refused later
    assert app_abi({"ro.product.cpu.abi": "arm64-v8a", "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a"}) == "arm64-v8a"


def test_release_urls_are_the_published_ones_and_x86_is_refused_in_one_line():
    release = release_for("litert", "arm64-v8a", version="2.3.0")
    assert release.url == "https://storage.googleapis.com/litert/binaries/2.3.0/android_arm64/benchmark_model"
    import importlib.metadata

    assert release_for("litert", "arm64-v8a").version == importlib.metadata.version("ai-edge-litert")  # pinned
    assert release_for("tflite", "armeabi-v7a", apk=True).url.endswith("/nightly/latest/android_arm_benchmark_model.apk")
    for flavour in ("litert", "tflite"):
        for abi in ("x86_64", "x86"):
            with pytest.raises(InvalidInput, match=f"not this {abi} device; pass --benchmark-binary PATH") as caught:
                release_for(flavour, abi)
            assert "\n" not in str(caught.value)


def test_app_start_command_passes_all_flags_as_one_argument():
    runner = BenchmarkAppRunner(TimingOptions(threads=4))
    argv = runner.start_command("/data/local/tmp/mbdeploy/m.tflite")
    assert argv[:8] == ["am", "start", "-S", "-W", "-n", ACTIVITY, "--es", "args"]
    assert argv[8].startswith("--graph=/data/local/tmp/mbdeploy/m.tflite --num_threads=4 ") and len(argv) == 9
    assert "--use_xnnpack=true" in argv[8]  # the APK is the classic tool


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
    (served / "latest/2.3.0/android_arm64").mkdir(parents=True)
    (served / "latest/2.3.0/android_arm64/benchmark_model").write_bytes(b"\x7fELF version one")
    cache = tmp_path / "cache"
    release = release_for("litert", "arm64-v8a", version="2.3.0", litert_base=base)
    first = fetch(release, cache=cache)
    assert first.read_bytes() == b"\x7fELF version one" and first.stat().st_mode & 0o111
    recorded = (cache / "benchmark_model.sha256").read_text().split()
    assert recorded[0] == hashlib.sha256(b"\x7fELF version one").hexdigest() and recorded[2] == release.url
    (served / "latest/2.3.0/android_arm64/benchmark_model").write_bytes(b"\x7fELF version two")
    assert fetch(release, cache=cache).read_bytes() == b"\x7fELF version one"  # once
    first.unlink()
    with pytest.raises(RunnerError, match="refusing a changed file"):
        fetch(release, cache=cache)
    assert not first.exists()
    first.write_bytes(b"tampered")
    with pytest.raises(RunnerError, match="delete it to download again"):
        fetch(release, cache=cache)


def test_download_pinned_hash_and_errors(release_server, tmp_path):
    served, base = release_server
    (served / "latest").mkdir()
    (served / "latest/android_arm_benchmark_model.apk").write_bytes(b"PK apk")
    release = release_for("tflite", "armeabi-v7a", apk=True, nightly_base=base)
    with pytest.raises(RunnerError, match="expected 0+"):
        fetch(release, cache=tmp_path / "c1", sha256="0" * 64)
    good = hashlib.sha256(b"PK apk").hexdigest()
    assert fetch(release, cache=tmp_path / "c2", sha256=good).exists()
    with pytest.raises(RunnerError, match="could not download .*--benchmark-binary"):
        fetch(Release("tflite", "nightly-latest", f"{base}/missing"), cache=tmp_path / "c3")


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
        assert runner.config()["flavour"] == "litert" and runner.config()["binary_version"] == "user-supplied"
        received = argv_log.read_text().splitlines()
        assert received[0] == f"--graph={phone.root}{remote}" and "--num_threads=2" in received
        assert "--warmup_min_secs=0" in received and not any(a.startswith("--use_xnnpack") for a in received)
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
        assert runner.config()["flavour"] == "tflite"
        runner.prepare(device)
        assert any(line.startswith("pm install -r -t -g ") for line in phone.command_log())
        out = runner.run(device, remote)
        assert out.summary_ms["count"] == 1071
        received = am_log.read_text().splitlines()
        assert received[:8] == ["start", "-S", "-W", "-n", ACTIVITY, "--es", "args",
                                f"--graph={phone.root}/data/local/tmp/mbdeploy/benchmark_app_model.tflite --num_threads=4 "
                                "--warmup_runs=5 --warmup_min_secs=0 --min_secs=1 --max_secs=10 --use_xnnpack=true"]
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


# ---------------------------------------------------------------- every output format users see (issue 11, section 2)
@pytest.mark.parametrize("line", ["count=600 f", "INFO: count=600 first=1 curr=2 min=1 max=3 avg=2",
                                  "count=5 curr=12", "count=9 first=3 curr=2 min=1 max=3 avg=2.1 std=0 p5=1 median="])
def test_a_cut_or_bent_stats_line_is_a_runner_error_naming_it(line):
    with pytest.raises(RunnerError, match="malformed stats line.*" + line.split()[-1][:6]):
        parse_stat(line)
    with pytest.raises(RunnerError, match="malformed stats line"):
        parse_output(f"INFO: STARTING!\nINFO: count=5 first=1 curr=1 min=1 max=1 avg=1 std=0\n{line}\n")


def test_scientific_notation_indent_and_mixed_prefixes_still_parse():
    text = ("  VERBOSE: some delegate chatter\nnot a benchmark line\n"
            "WARNING: count=2 first=3e+06 curr=2.9e+06 min=2.9e+06 max=3e+06 avg=2.95e+06 std=5e+04\n"
            "    INFO: count=3 first=2.9e+06 curr=2.95034e+06 min=2.9e+06 max=3.0e+06 avg=2.95034e+06 std=4.1e+04\n")
    out = parse_output(text)
    assert out.summary_ms["count"] == 3 and out.summary_ms["mean"] == pytest.approx(2950.34)
    assert out.first_inference_ms == pytest.approx(3000.0)


def test_litert2_binary_output_uses_the_stats_lines_and_the_block_adds_memory():
    out = parse_output(transcript("litert2_cpu.txt"), TimingOptions(threads=4, min_secs=1, max_secs=10))
    assert out.summary_ms["count"] == 561 and out.summary_ms["median"] == pytest.approx(1.76)
    assert out.init_ms == pytest.approx(21.402) and out.first_inference_ms == pytest.approx(2.415)
    assert out.peak_memory_mb == pytest.approx(12.34)
    assert out.extra["memory_footprint_mb"] == {"init": 4.21, "overall": 9.87}


def test_litert2_results_block_alone_is_a_whole_result():
    out = parse_output(logcat_messages(transcript("litert2_block_logcat.txt")))
    s = out.summary_ms
    assert (s["count"], s["mean"], s["min"], s["max"], s["std"]) == (338, 2.95, 2.71, 4.02, 0.16)
    assert s["median"] is None and out.init_ms == 35.12 and out.first_inference_ms == 4.90
    assert out.extra["source"] == "BENCHMARK RESULTS block"
    cut = "\n".join(line for line in logcat_messages(transcript("litert2_block_logcat.txt")).splitlines()
                    if "Inference (std)" not in line)
    with pytest.raises(RunnerError, match=r"block ends before its 'Inference \(std\)' line"):
        parse_output(cut)


def test_2018_builds_no_stats_first_inference_and_headerless_space_aligned_op_table():
    out = parse_output(transcript("tf2018_no_stats.txt"))
    assert out.summary_ms["count"] == 50 and out.summary_ms["mean"] == pytest.approx(6.07436)
    assert out.first_inference_ms == pytest.approx(9.874)  # the single warm-up run's curr=
    assert out.init_ms == pytest.approx(2.183) and out.extra["timings_us"]["no stats"] == pytest.approx(6074.36)
    table = out.extra["op_profile_by_type"]
    assert [r["node_type"] for r in table] == ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "SOFTMAX", "RESHAPE"]
    assert table[1] == {"node_type": "DEPTHWISE_CONV_2D", "count": 13, "avg_ms": 1.822, "avg_percent": 29.997,
                        "cdf_percent": 98.668, "mem_kb": 0.0, "times_called": 13}


def test_partial_delegation_shown_only_by_the_replacing_line_warns():
    out = parse_output(transcript("replacing_partial.txt"))
    assert out.extra["delegations"] == [{"delegate": "TfLiteGpuDelegateV2", "nodes": 28, "of": 31, "partitions": 2}]
    assert out.extra["delegate_warning"] == "TfLiteGpuDelegateV2 replaces 28 of 31 nodes (2 partitions)"
    whole = transcript("replacing_partial.txt").replace("28 out of 31", "31 out of 31").replace("2 partitions", "1 partitions")
    assert "delegate_warning" not in parse_output(whole).extra


def test_unconsumed_flags_fail_the_run_with_the_tools_line():
    with pytest.raises(RunnerError, match="ignored flags it does not know: Unconsumed cmdline flags: --use_xnnpak=true"):
        parse_output(transcript("unconsumed_flags.txt"))


def test_several_runs_in_one_text_take_the_last_and_say_so():
    out = parse_output(transcript("tf2_3_cpu.txt") + "\n" + transcript("litert_xnnpack_percentiles.txt"))
    assert out.summary_ms["count"] == 2133 and out.extra["runs_in_output"] == 2
    assert "the last one is recorded" in out.extra["output_note"]


def test_logcat_time_and_android_studio_layouts():
    text = transcript("logcat_time_and_studio.txt")
    messages = logcat_messages(text)
    assert "Slow operation" not in messages and messages.count("STARTING!") == 2
    time_layout, studio = messages.split("STARTING!")[1:]
    assert parse_output("STARTING!" + time_layout).summary_ms["count"] == 1071
    out = parse_output(messages)  # two runs: the Android Studio one is last
    assert out.summary_ms["count"] == 1049 and out.extra["runs_in_output"] == 2 and out.init_ms == 14.9


@pytest.mark.parametrize("name", sorted(p.name for p in TRANSCRIPTS.glob("*.txt") if p.name != "powerstats_delta.txt"))
def test_no_cut_of_any_transcript_raises_anything_but_a_runner_error(name):
    text = transcript(name)
    for end in range(0, len(text), max(1, len(text) // 60)):
        try:
            parse_output(text[:end])
            parse_output(logcat_messages(text[:end]))
        except RunnerError:
            pass


# ---------------------------------------------------------------- the op profile file
def _profile_bytes(nodes: int) -> bytes:
    """A BenchmarkProfilingData message built from the schema ai_edge_litert ships (profiling_info.proto)."""
    from mbdeploy.runners.op_profile import profiling_data_class

    data = profiling_data_class()(model_name="mobilenet_v1_0.25_128")
    graph = data.runtime_profile.subgraph_profiles.add(subgraph_name="main", subgraph_index=0)
    for index in range(nodes):
        op = graph.per_op_profiles.add(node_type="CONV_2D" if index % 2 == 0 else "DEPTHWISE_CONV_2D",
                                       name=f"MobilenetV1/MobilenetV1/Conv2d_{index // 2}/Relu6", run_order=index,
                                       times_called=50)
        stat = op.inference_microseconds
        stat.first, stat.last, stat.avg, stat.min, stat.max = 120 + index, 110, 100 + index, 90, 200
        stat.stddev, stat.count, stat.sum = 4.5, 50, 50 * (100 + index)
    return data.SerializeToString()


def test_parse_op_profile_gives_per_node_rows_and_refuses_junk():
    from mbdeploy.runners.op_profile import by_node_type, parse_op_profile

    rows = parse_op_profile(_profile_bytes(31))
    assert len(rows) == 31 and rows[0]["name"] == "MobilenetV1/MobilenetV1/Conv2d_0/Relu6"
    assert (rows[3]["node_type"], rows[3]["avg_us"], rows[3]["count"], rows[3]["subgraph"]) == ("DEPTHWISE_CONV_2D", 103.0, 50, "main")
    assert {r["node_type"]: r["count"] for r in by_node_type(rows)} == {"CONV_2D": 16, "DEPTHWISE_CONV_2D": 15}
    with pytest.raises(RunnerError, match="not a BenchmarkProfilingData"):
        parse_op_profile(b"\xff\xff\xff not a proto")
    # The schema stays out of protobuf's global pool, where TensorFlow registers the same names on import.
    from google.protobuf import descriptor_pool

    if "tensorflow" not in sys.modules:
        with pytest.raises(KeyError):
            descriptor_pool.Default().FindMessageTypeByName("tflite.profiling.BenchmarkProfilingData")


def test_benchmark_app_op_profile_over_4_kb_arrives_whole_from_the_pulled_file(server, tmp_path):
    profile = tmp_path / "profile.pb"
    profile.write_bytes(_profile_bytes(200))
    assert profile.stat().st_size > 4096  # more than logcat keeps of one message
    tools = {
        # The app: its timings go to logcat, its profile to the file named by --op_profiling_output_file.
        "am": f"cp '{TRANSCRIPTS / 'benchmark_app_logcat.txt'}' \"$TD_STATE/logcat.txt\"\n"
              "for word in $8; do case $word in --op_profiling_output_file=*) "
              f"mkdir -p \"$(dirname \"${{word#*=}}\")\"; cp '{profile}' \"${{word#*=}}\" ;; esac; done\n"
              "echo 'Status: ok'\n",
        "pm": 'case "$1" in path) echo package:/data/app/base.apk ;; esac\n',
    }
    phone, device = _connect(server, tmp_path, tools=tools)
    try:
        model = tmp_path / "m.tflite"
        model.write_bytes(b"TFL3")
        remote = f"{device.workdir}/m.tflite"
        device.push(model, remote)
        runner = BenchmarkAppRunner(TimingOptions(), apk=None, op_profiling=True, poll_s=0.05)
        out = runner.run(device, remote)
        assert len(out.extra["op_profile"]) == 200 and out.extra["op_profile"][-1]["run_order"] == 199
        assert f"--op_profiling_output_file={APP_PROFILE}" in runner.start_command(remote)[8]
    finally:
        device.close()
        phone.close()


def test_benchmark_model_op_profile_over_4_kb_arrives_whole_from_the_pulled_file(server, tmp_path):
    profile = tmp_path / "profile.pb"
    profile.write_bytes(_profile_bytes(200))
    assert profile.stat().st_size > 4096
    stand_in = tmp_path / "benchmark_model"
    stand_in.write_text(  # the classic tool: timings on stderr, the profile into --op_profiling_output_file
        "#!/bin/sh\n"
        "for a in \"$@\"; do case $a in --op_profiling_output_file=*) cp " + f"'{profile}'" + " \"${a#*=}\" ;; esac; done\n"
        f"cat '{TRANSCRIPTS / 'litert_xnnpack_percentiles.txt'}' >&2\n"
    )
    stand_in.chmod(0o755)
    phone, device = _connect(server, tmp_path)
    try:
        model = tmp_path / "m.tflite"
        model.write_bytes(b"TFL3")
        remote = f"{device.workdir}/m.tflite"
        device.push(model, remote)
        runner = BenchmarkModelRunner(TimingOptions(), binary=stand_in, op_profiling=True)
        assert runner.flavour == "tflite"
        out = runner.run(device, remote)
        assert len(out.extra["op_profile"]) == 200 and out.extra["op_profile_by_type"][0]["count"] == 100
        assert "--op_profiling_output_mode=proto" in out.extra["command"]
    finally:
        device.close()
        phone.close()
