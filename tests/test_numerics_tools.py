"""bench --check-outputs through the official tools' tensor files: benchmark_model and the benchmark APK.

The Android tool cannot run here: the "binary" pushed to the adb test device (through the real adb
server) is mbdeploy.testing.benchmark_tool, which reads --input_layer_value_files and writes
--output_filepath as upstream's benchmark_tflite_model.cc does (file and commit in its docstring),
computing with the host's LiteRT. A tool computing wrong answers (its outputs reversed) fails the check
with the figures shown; a tool that predates the flags, and the LiteRT 2.x flavour that has none, are
named in one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from support.cli import harness_env, mbdeploy
from support.skips import needs_adb
from mbdeploy.bench.numerics import REFERENCE
from mbdeploy.errors import RunnerError
from mbdeploy.records.store import read_records
from mbdeploy.runners.tensor_files import TensorSpec, first_output, input_bytes

REPO = Path(__file__).resolve().parents[1]
TRANSCRIPT = Path(__file__).parent / "transcripts" / "litert_xnnpack_percentiles.txt"


def _tool(tmp_path: Path, name: str, **options: object) -> Path:
    """The stand-in tool as an executable the runner pushes as its binary."""
    script = tmp_path / name
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
                      "from mbdeploy.testing.benchmark_tool import main\n"
                      f"sys.exit(main(sys.argv[1:], transcript={str(TRANSCRIPT)!r}, **{options!r}))\n")
    script.chmod(0o755)
    return script


def test_tensor_files_follow_upstreams_layouts():
    # An int8 model's output file as OutputSaver writes it: the int8 tensor's raw bytes, no header.
    spec = TensorSpec((1, 4), "int8", scale=0.5, zero_point=-2)
    assert first_output(np.array([-2, 0, 4, 127], np.int8).tobytes(), [spec]) == [0.0, 1.0, 3.0, 64.5]
    with pytest.raises(RunnerError, match="holds 3 bytes; the model's outputs are 4 bytes"):
        first_output(b"\x00\x01\x02", [spec])
    # An input file holds exactly the tensor's bytes; floats are quantized with the tensor's own scale.
    source = TensorSpec((1, 2, 1, 1), "int8", scale=1 / 128, zero_point=0)
    assert np.frombuffer(input_bytes(np.array([[[1.0]], [[-0.5]]]), source), np.int8).tolist() == [127, -64]
    assert len(input_bytes(np.zeros((2, 1, 1)), TensorSpec((1, 2, 1, 1), "float32"))) == 8


def _bench(tmp_path: Path, server, models: Path, binary: Path, precisions: str) -> tuple[object, list[dict]]:
    tmp_path.mkdir()
    config = tmp_path / "mbdeploy.toml"
    config.write_text("")
    env = dict(harness_env(tmp_path), MBDEPLOY_CONFIG=str(config))
    env.pop("ANDROID_SERIAL", None)
    done = mbdeploy(["bench", "--device", "pixel", "--adb-host", server.address, "--models", str(models),
                     "--runner", "benchmark_model", "--benchmark-binary", str(binary), "--benchmark-flavour", "tflite",
                     "--runs", "5", "--warmup", "1", "--precisions", precisions, "--check-outputs", "--json"],
                    cwd=tmp_path, env=env)
    records = []
    runs = sorted((tmp_path / "results").iterdir()) if (tmp_path / "results").exists() else []
    if runs:
        records = read_records(runs[-1] / "results.jsonl")
    return done, records


@needs_adb
def test_benchmark_model_checks_outputs_on_the_adb_test_device_and_a_wrong_tool_fails(server, phone, small_models,
                                                                                      tmp_path):
    # fp32 here; the int8 path (quantized input files, dequantized output file) in the APK test below.
    done, records = _bench(tmp_path / "right", server, small_models, _tool(tmp_path, "benchmark_model"), "fp32")
    assert done.returncode == 0, done.stderr
    [record] = records
    numerics = record["numerics"]
    assert numerics["passed"] is True and numerics["probes"] == 8 and numerics["reference"] == REFERENCE, numerics
    assert numerics["max_logit_diff"] < 1e-3 and record["latency_ms"]["count"] == 2133  # the transcript's timings

    done, records = _bench(tmp_path / "wrong", server, small_models,
                           _tool(tmp_path, "benchmark_model_wrong", wrong=True), "fp32")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "Error: 1 of 1 records computed wrong outputs on the device" in done.stderr
    assert "max logit diff" in done.stderr  # the figures, in the one error line
    assert json.loads(done.stdout)["numerics_failed"] == 1
    [record] = records
    assert record["numerics"]["passed"] is False and record["numerics"]["top1_agreement"] < 1.0
    assert record["numerics"]["failures"][0].startswith("max logit diff")


@needs_adb
def test_benchmark_app_reads_probe_inputs_and_its_output_file_from_its_own_folder(server, small_models, tmp_path):
    from mbdeploy.bench.artifacts import collect_artifacts
    from mbdeploy.bench.numerics import check_outputs
    from mbdeploy.devices import android
    from mbdeploy.runners.base import TimingOptions
    from mbdeploy.runners.benchmark_app import APP_OUTPUT, BenchmarkAppRunner

    from mbdeploy.testing.adb_device import AdbTestDevice

    tool = _tool(tmp_path, "benchmark_app_tool")
    # The app: its timings to logcat, the tool's file flags (one word of --es args) served by the stand-in tool.
    am = (f"cp '{Path(__file__).parent / 'transcripts' / 'benchmark_app_logcat.txt'}' \"$TD_STATE/logcat.txt\"\n"
          f"mkdir -p \"$TD_ROOT/data/data/org.tensorflow.lite.benchmark\"\n'{tool}' $8 2>/dev/null\necho 'Status: ok'\n")
    phone = AdbTestDevice(tmp_path / "app_phone", tools={"am": am})
    phone.start()
    server.connect(phone)
    device = android.resolve(phone.serial, server.address)
    try:
        [artifact] = collect_artifacts([small_models], precisions=["int8"])
        remote = f"{device.workdir}/m.tflite"
        device.push(artifact.path, remote)
        runner = BenchmarkAppRunner(TimingOptions(threads=2), apk=None, poll_s=0.05)
        numerics = check_outputs(device, runner, artifact, remote)
        assert numerics["passed"] is True and numerics["probes"] == 8, numerics
        assert phone.host_path(APP_OUTPUT).stat().st_size == 1001  # the int8 output, as the app wrote it
    finally:
        device.close()
        phone.close()


@needs_adb
def test_a_tool_without_the_file_flags_and_the_litert_flavour_are_named_in_one_line(server, phone, small_models,
                                                                                    tmp_path):
    from mbdeploy.bench.artifacts import collect_artifacts
    from mbdeploy.bench.numerics import check_outputs
    from mbdeploy.devices import android
    from mbdeploy.runners.base import TimingOptions
    from mbdeploy.runners.benchmark_model import BenchmarkModelRunner

    device = android.resolve(phone.serial, server.address)
    try:
        [artifact] = collect_artifacts([small_models], precisions=["fp32"])
        remote = f"{device.workdir}/m.tflite"
        device.push(artifact.path, remote)
        old = BenchmarkModelRunner(TimingOptions(), binary=_tool(tmp_path, "old_tool", knows_files=False),
                                   flavour="tflite")
        numerics = check_outputs(device, old, artifact, remote)
        assert numerics["passed"] is None
        assert numerics["notes"][0].startswith("not checked: this benchmark_model predates --input_layer_value_files")
        litert = BenchmarkModelRunner(TimingOptions(), binary=_tool(tmp_path, "litert_tool"))
        assert litert.flavour == "litert"
        numerics = check_outputs(device, litert, artifact, remote)
        assert numerics["passed"] is None and "has no --input_layer_value_files or --output_filepath" in numerics["notes"][0]
    finally:
        device.close()


def test_the_stand_in_tool_refuses_the_flag_sets_upstreams_tool_refuses(small_models, tmp_path, capsys):
    # Upstream's ValidateParams/Init (benchmark_tflite_model.cc; see the tool's docstring) reject each of
    # these; a stand-in that ran them anyway would let a runner's wrong flags pass the tests.
    from mbdeploy.bench.artifacts import collect_artifacts
    from mbdeploy.testing.benchmark_tool import main

    [artifact] = collect_artifacts([small_models], precisions=["fp32"])
    probe = tmp_path / "in.bin"
    probe.write_bytes(np.zeros((1, 128, 128, 3), np.float32).tobytes())
    short = tmp_path / "short.bin"
    short.write_bytes(probe.read_bytes()[:-4])
    out = tmp_path / "out.bin"
    graph = [f"--graph={artifact.path}", f"--output_filepath={out}"]
    shape, files = "--input_layer_shape=1,128,128,3", f"--input_layer_value_files=input:{probe}"
    refused = {
        "no shape": ["--input_layer=input", files],
        "a name not in --input_layer": ["--input_layer=input", shape, f"--input_layer_value_files=x:{probe}"],
        "two delimiters": ["--input_layer=input", shape, f"--input_layer_value_files=input:{probe}:x"],
        "no delimiter": ["--input_layer=input", shape, f"--input_layer_value_files={probe}"],
        "wrong rank": ["--input_layer=input", "--input_layer_shape=1,128,128", files],
        "a shape the model cannot take": ["--input_layer=input", "--input_layer_shape=2,128,128,3", files],
        "a file of another size": ["--input_layer=input", shape, f"--input_layer_value_files=input:{short}"],
        "more layers than inputs": ["--input_layer=input,b", f"{shape}:1,2", files],
    }
    for why, flags in refused.items():
        assert main(graph + flags) != 0, why
        assert not out.exists(), why
    assert main(graph + ["--input_layer=input", shape, files]) == 0
    assert out.stat().st_size == 1001 * 4
    # An output path it cannot open: upstream writes nothing and says nothing.
    assert main([f"--graph={artifact.path}", f"--output_filepath={tmp_path}/no/such/dir/o.bin",
                 "--input_layer=input", shape, files]) == 0
    capsys.readouterr()
