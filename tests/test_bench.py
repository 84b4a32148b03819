"""Sweeps on the local host: artifacts, records, failures, the CLI, crash safety and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.cli import PYTHON, harness_env, mbdeploy
from support.injection import INJECTION_NAME, no_new_pwned
from support.tiny_model import tiny_tflite
from mbdeploy import bench
from mbdeploy.manifest import artifact_digest
from mbdeploy.runners import registry
from mbdeploy.atomic import sha256_file
from mbdeploy.devices.base import SensorReading
from mbdeploy.devices.local import LocalDevice
from mbdeploy.errors import InvalidInput, ManifestError
from mbdeploy.manifest import SCHEMA, save_manifest
from mbdeploy.devices.lock import DeviceLock
from mbdeploy.records.schema import validate_record
from mbdeploy.records.store import RunFolder, read_records
from mbdeploy.runners.base import TimingOptions

QUICK = ["--min-secs", "0.2", "--max-secs", "0.5", "--warmup", "2"]


def _manifest(folder: Path, name: str, artifacts: list[tuple[str, str, Path]]) -> Path:
    entries = [{"format": fmt, "precision": precision, "path": path.name, "bytes": path.stat().st_size,
                "sha256": sha256_file(path), "macs": 1_000_000, "params": 1000} for fmt, precision, path in artifacts]
    return save_manifest(folder, {"schema": SCHEMA, "name": name, "spec": {"alpha": 0.25, "resolution": 64},
                                  "weights": {"source": "random"}, "artifacts": entries})


def test_collect_artifacts_reads_manifests_and_plain_files(tmp_path):
    models = tmp_path / "models"
    fp32 = tiny_tflite(models / "tiny" / "tiny_fp32.tflite", channels=8)
    other = tiny_tflite(models / "tiny" / "tiny_fp16.tflite", channels=16)
    onnx = models / "tiny" / "tiny.onnx"
    onnx.write_bytes(b"not really onnx")
    _manifest(models / "tiny", "tiny_net", [("tflite", "fp32", fp32), ("tflite", "fp16", other), ("onnx", "fp32", onnx)])
    tiny_tflite(models / "loose" / "plain.tflite", channels=4)

    found = bench.collect_artifacts([models])
    # A plain file's precision is read from the file itself.
    assert [(a.name, a.precision) for a in found] == [("plain", "fp32"), ("tiny_net", "fp16"), ("tiny_net", "fp32")]
    listed = [a for a in found if a.name == "tiny_net"]
    assert all(a.macs == 1_000_000 and a.alpha == 0.25 and a.weights_source == "random" for a in listed)
    assert [(a.name, a.precision) for a in bench.collect_artifacts([models], precisions=["fp32"])] == [
        ("plain", "fp32"), ("tiny_net", "fp32")]
    assert [a.format for a in bench.collect_artifacts([models], formats=["onnx"])] == ["onnx"]
    # Naming one file listed in a manifest gives just its entry, with the manifest's metadata.
    [single] = bench.collect_artifacts([fp32])
    assert single.name == "tiny_net" and single.precision == "fp32" and single.manifest
    with pytest.raises(InvalidInput, match="unknown format"):
        bench.collect_artifacts([models], formats=["pt"])
    with pytest.raises(InvalidInput, match="does not exist"):
        bench.collect_artifacts([tmp_path / "nothing"])
    fp32.write_bytes(fp32.read_bytes() + b"\0")
    with pytest.raises(ManifestError, match="changed since"):
        bench.collect_artifacts([models])


def test_a_folder_artifact_is_collected_with_the_digest_convert_gave_it(tmp_path):
    # An .mlpackage is a folder; convert hashes its files in order and sums their sizes.
    from mbdeploy.manifest import artifact_digest

    package = tmp_path / "tiny" / "tiny_fp16.mlpackage"
    (package / "Data" / "com.apple.CoreML" / "weights").mkdir(parents=True)
    (package / "Manifest.json").write_text("{}")
    (package / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(b"\x01" * 40)
    (package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").write_bytes(b"\x02" * 100)
    size, digest = artifact_digest(package)
    save_manifest(tmp_path / "tiny", {"schema": SCHEMA, "name": "tiny_net", "spec": {"alpha": 0.25, "resolution": 64},
                                      "artifacts": [{"format": "coreml", "precision": "fp16", "path": package.name,
                                                     "bytes": size, "sha256": digest}]})
    [artifact] = bench.collect_artifacts([tmp_path], formats=["coreml"])
    assert (artifact.path, artifact.bytes, artifact.sha256) == (package, 142, digest)
    assert artifact_digest(package) == (142, digest)
    (package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").write_bytes(b"\x03" * 100)
    with pytest.raises(ManifestError, match="changed since"):
        bench.collect_artifacts([tmp_path], formats=["coreml"])


def test_list_valued_runner_options_give_one_config_each():
    assert registry.runner_option_sets({}) == [{}]
    assert registry.runner_option_sets({"binary": "b", "compute_units": ("cpuOnly", "all")}) == [
        {"binary": "b", "compute_units": "cpuOnly"}, {"binary": "b", "compute_units": "all"}]
    runners = registry.make_runners("coreml_app", TimingOptions(), {"compute_units": ("cpuOnly", "all")})
    assert [r.config()["compute_units"] for r in runners] == ["cpuOnly", "all"]
    assert runners[0].config_key() != runners[1].config_key()


def test_a_sweep_records_every_model_and_survives_a_broken_one(tmp_path, monkeypatch):
    monkeypatch.setenv("MBDEPLOY_LOCK_DIR", str(tmp_path / "locks"))  # other sessions may bench `local` meanwhile
    models = tmp_path / "models"
    tiny_tflite(models / "good_a.tflite", channels=8)
    tiny_tflite(models / "good_b.tflite", channels=16)
    (models / "broken.tflite").write_bytes(b"TFL3 but not a flatbuffer" * 10)
    device = LocalDevice(workdir=tmp_path / "wd")
    artifacts = bench.collect_artifacts([models])
    options = bench.BenchOptions(timing=TimingOptions(threads=1, min_secs=0.2, max_secs=0.5, warmup_runs=2),
                                 cooldown_s=0.05, wait_for_lock=False)
    info = device.info().to_dict()
    folder = bench.start_run(tmp_path / "results", options, [models], [info])
    events = []
    records = bench.run_sweep([device], [info], artifacts, folder, options, emit=lambda k, d: events.append(k))

    assert [r["artifact"]["name"] for r in records] == ["broken", "good_a", "good_b"]
    broken, good_a, good_b = records
    assert broken["status"] == "failed" and "litert runner failed" in broken["error"] and broken["latency_ms"] is None
    for record in (good_a, good_b):
        validate_record(record)
        assert record["status"] == "ok" and record["stop_reason"] in ("target_ci", "max_secs")
        latency = record["latency_ms"]
        assert latency["count"] == len(record["samples_ms"]) and latency["count"] >= 6
        assert latency["min"] <= latency["ci95_low"] <= latency["median"] <= latency["ci95_high"] <= latency["max"]
        assert record["power"]["status"] == "unavailable" and record["power"]["reason"]
        assert record["thermal"]["cooldown"]["waited_s"] >= 0.05
        assert record["phases_ms"]["run"] > 0 and record["runner"]["name"] == "litert"
    assert folder.records() == records
    assert events.count("record") == 3
    rows = bench.summary_rows(records)
    assert rows[1]["median_ms"] == good_a["latency_ms"]["median"]
    macs = good_a["artifact"]["macs"]  # from `inspect` for a file without a manifest, when available
    expected = macs / (rows[1]["median_ms"] / 1e3) / 1e9 if macs else None
    assert rows[1]["gmacs_per_s"] == (pytest.approx(expected) if macs else None)


def test_throttle_flags():
    cool = SensorReading({"cpu": 40.0}, {"cpu0": 1_800_000, "cpu1": 1_800_000})
    hot = SensorReading({"cpu": 47.0}, {"cpu0": 1_800_000, "cpu1": 1_200_000})
    reasons = bench.throttle_reasons(cool, hot, freq_drop=0.10, temp_rise_c=5.0)
    assert reasons == ["cpu1 frequency fell 1800000 -> 1200000 kHz", "temperature rose 40.0 -> 47.0 C"]
    assert bench.throttle_reasons(cool, cool, 0.10, 5.0) == []
    assert bench.throttle_reasons(SensorReading(), SensorReading(), 0.10, 5.0) == []


def test_cooldown_waits_for_a_temperature_when_a_sensor_exists(tmp_path):
    zone = tmp_path / "root" / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu")
    (zone / "temp").write_text("45000")
    device = LocalDevice(workdir=tmp_path / "wd", root=tmp_path / "root")
    assert bench.cool_down(device, 99.0, below_c=50.0, max_s=5.0)["reached"] is True
    started = time.monotonic()
    waited = bench.cool_down(device, 0.0, below_c=40.0, max_s=1.2)
    assert waited["reached"] is False and time.monotonic() - started >= 1.2
    no_sensor = LocalDevice(workdir=tmp_path / "wd", root=tmp_path / "empty")
    assert bench.cool_down(no_sensor, 0.1, below_c=40.0, max_s=5.0)["until"] == "0.1 s"


def test_runner_registry():
    assert set(registry.RUNNERS) == {"litert", "benchmark_model", "benchmark_app", "coreml_app", "aihub"}
    with pytest.raises(InvalidInput, match="unknown runner 'perf'; allowed: litert, benchmark_model"):
        registry.make_runner("perf", TimingOptions())
    assert LocalDevice().default_runner == "litert"
    from mbdeploy.devices.base import DeviceInfo
    from mbdeploy.devices.ios import IosDevice

    iphone = IosDevice(DeviceInfo(kind="ios", id="00008120-001A2B3C4D5E601E"), "devicectl")
    assert iphone.default_runner == "coreml_app"
    assert bench.default_formats([iphone]) == ("coreml",)
    assert bench.default_formats([LocalDevice()]) == bench.default_formats([iphone, LocalDevice()]) == ("tflite",)
    with pytest.raises(InvalidInput, match="unknown compute units 'npu'; allowed: cpuOnly, cpuAndGPU"):
        registry.make_runner("coreml_app", TimingOptions(), compute_units="npu")


def test_cli_bench_local_with_a_hostile_file_name(tmp_path):
    models = tmp_path / "models"
    tiny_tflite(models / INJECTION_NAME, channels=8)
    env = harness_env(tmp_path)
    workdir = tmp_path / "cache" / "mbdeploy" / "local-device"
    with no_new_pwned(tmp_path, models, workdir, Path.cwd()):
        result = mbdeploy(["bench", "--device", "local", "--models", "models", "--label", "commit 1a2b3c", *QUICK],
                          cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "Benchmark summary" in result.stdout and "Run folder: results/" in result.stdout
    [run] = (tmp_path / "results").iterdir()
    [record] = read_records(run / "results.jsonl")
    assert record["status"] == "ok" and record["artifact"]["name"] == INJECTION_NAME.removesuffix(".tflite")
    meta = json.loads((run / "run.json").read_text())
    assert meta["devices"][0]["id"] == "local" and meta["options"]["timing"]["min_secs"] == 0.2
    assert meta["label"] == "commit 1a2b3c"  # bench --label, shown in the report's history


# A documentation address (RFC 5737): no adb server answers there, and none is started for it.
NO_ADB = "192.0.2.1:5037"


@pytest.mark.parametrize("args, message", [
    # Without --adb-host, looking for phones would start an adb server on 5037 that outlives the test.
    (["--device", "nowhere", "--adb-host", NO_ADB], "Error: no device matches 'nowhere'; candidates: local"),
    (["--device", "local", "--runner", "perf"], "Error: unknown runner 'perf'"),
    (["--device", "local", "--precisions", "int4"], "Error: no artifacts to bench"),
    (["--device", "local", "--min-secs", "5", "--max-secs", "1"], "Error: --min-secs (5.0) must not exceed"),
    (["--device", "local", "--resume", "nope"], "Error: no run 'nope'"),
    (["--device", "local", "--cpu-mask", "f0"], "Error: the litert runner takes no cpu_mask option"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    tiny_tflite(tmp_path / "models" / "m.tflite", channels=8)
    result = mbdeploy(["bench", "--models", "models", *args], cwd=tmp_path, env=harness_env(tmp_path))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()  # nothing half-started


def test_cli_no_wait_fails_while_another_bench_holds_the_device(tmp_path):
    tiny_tflite(tmp_path / "models" / "m.tflite", channels=8)
    env = harness_env(tmp_path)
    with DeviceLock("local", wait=False, directory=tmp_path / "cache" / "mbdeploy" / "locks"):
        result = mbdeploy(["bench", "--device", "local", "--models", "models", "--no-wait", *QUICK],
                          cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "Error: device local is busy" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())  # no empty run left


def test_devices_command_lists_local_even_without_adb(tmp_path):
    result = mbdeploy(["devices", "--json", "--adb-host", NO_ADB], cwd=tmp_path, env=harness_env(tmp_path))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows[0]["kind"] == "local" and rows[0]["state"] == "online" and rows[0]["cores"]
    assert "Warning: android devices skipped" in result.stderr
    table = mbdeploy(["devices", "--adb-host", NO_ADB], cwd=tmp_path, env=harness_env(tmp_path))
    assert table.returncode == 0 and "local" in table.stdout


def test_cli_bench_all_devices(tmp_path):
    tiny_tflite(tmp_path / "models" / "m.tflite", channels=8)
    result = mbdeploy(["bench", "--device", "all", "--adb-host", NO_ADB, "--models", "models", *QUICK, "--json"],
                      cwd=tmp_path, env=harness_env(tmp_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [row["device"] for row in summary["summary"]] == ["local"] and summary["failed"] == 0


def test_killed_mid_sweep_then_resume_finishes_without_duplicates(tmp_path):
    models = tmp_path / "models"
    for channels in (4, 8, 12, 16):
        tiny_tflite(models / f"m{channels}.tflite", channels=channels)
    env = harness_env(tmp_path)
    args = ["-m", "mbdeploy", "bench", "--device", "local", "--models", "models", "--out", "results",
            "--min-secs", "0.7", "--max-secs", "0.7", "--warmup", "1"]
    process = subprocess.Popen([PYTHON, *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    records_file = None
    while time.monotonic() < deadline and process.poll() is None:
        found = list((tmp_path / "results").glob("*/results.jsonl"))
        if found and found[0].read_bytes().count(b"\n") >= 1:
            records_file = found[0]
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert records_file is not None, "the bench never wrote its first record"

    before = read_records(records_file)
    assert 1 <= len(before) < 4
    for record in before:
        validate_record(record)

    run_id = records_file.parent.name
    # The run's own models and options come back from its run.json.
    resumed = mbdeploy(["bench", "--device", "local", "--out", "results", "--resume", run_id, "--json"],
                       cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["skipped"] == len(before) and summary["records"] == 4 - len(before)

    final = RunFolder.open(tmp_path / "results", run_id)
    records = final.records()
    keys = [(r["device"]["id"], r["artifact"]["sha256"], r["config_key"]) for r in records]
    assert len(records) == 4 and len(set(keys)) == 4
    assert records[: len(before)] == before
    for line in final.records_file.read_bytes().split(b"\n")[:-1]:
        if line.strip():
            json.loads(line)  # every whole line parses
    assert final.meta()["resumed_at"]


def test_convert_then_bench_end_to_end(tmp_path):
    from mbdeploy.convert import ConvertRequest, convert_model

    converted = convert_model(ConvertRequest(alpha=0.25, resolution=128, out_dir=tmp_path / "models",
                                             formats=["tflite"], precisions=["fp32"]))
    result = mbdeploy(["bench", "--device", "local", "--models", "models", "--precisions", "fp32", *QUICK, "--json"],
                      cwd=tmp_path, env=harness_env(tmp_path))
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)["summary"]
    manifest = converted.manifest
    assert row["model"] == "mobilenet_v1_0.25_128" == manifest["name"] and row["precision"] == "fp32"
    assert row["macs"] == manifest["artifacts"][0].get("macs", manifest.get("macs")) and row["gmacs_per_s"] > 0
    [run] = (tmp_path / "results").iterdir()
    [record] = read_records(run / "results.jsonl")
    assert record["artifact"]["sha256"] == manifest["artifacts"][0]["sha256"]
    assert record["artifact"]["manifest"].endswith("manifest.json")


def test_cli_exits_non_zero_when_a_model_failed_and_resume_finishes(tmp_path):
    models = tmp_path / "models"
    tiny_tflite(models / "good.tflite", channels=8)
    broken = models / "later.tflite"
    broken.write_bytes(b"not a model")
    env = harness_env(tmp_path)
    first = mbdeploy(["bench", "--device", "local", "--models", "models", *QUICK, "--json"], cwd=tmp_path, env=env)
    assert first.returncode == 1
    summary = json.loads(first.stdout)  # the summary is still printed in full
    assert summary["records"] == 2 and summary["failed"] == 1
    assert "1 of 2 benchmarks failed (first: later on local" in first.stderr
    assert f"--resume {summary['run_id']}" in first.stderr

    tiny_tflite(broken, channels=12)  # fixed in place (same path, new bytes: a new artifact)
    again = mbdeploy(["bench", "--device", "local", "--models", "models", *QUICK, "--resume", summary["run_id"],
                      "--json"], cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["skipped"] == 1
    records = read_records(tmp_path / summary["run_dir"] / "results.jsonl")
    assert [(r["artifact"]["name"], r["status"]) for r in records] == [("good", "ok"), ("later", "failed"),
                                                                        ("later", "ok")]


def test_a_device_python_without_litert_gives_a_failed_record_with_the_fix(tmp_path, monkeypatch):
    import venv

    monkeypatch.setenv("MBDEPLOY_LOCK_DIR", str(tmp_path / "locks"))
    venv.create(tmp_path / "bare-python", with_pip=False)  # a real interpreter with no numpy, no LiteRT
    device = LocalDevice(workdir=tmp_path / "wd", python=str(tmp_path / "bare-python" / "bin" / "python"))
    artifacts = bench.collect_artifacts([tiny_tflite(tmp_path / "m.tflite", channels=8)])
    options = bench.BenchOptions(timing=TimingOptions(runs=5))
    info = device.info().to_dict()
    folder = bench.start_run(tmp_path / "results", options, [tmp_path / "m.tflite"], [info])
    [record] = bench.run_sweep([device], [info], artifacts, folder, options)
    assert record["status"] == "failed" and "No module named" in record["error"]
    assert "pip install ai-edge-litert" in record["error"]
    assert folder.records() == [record]

    # Fixed (the device's Python now has LiteRT): resuming retries the same (device, sha, config) key.
    fixed = LocalDevice(workdir=tmp_path / "wd")
    [retried] = bench.run_sweep([fixed], [info], artifacts, folder, options)
    assert retried["status"] == "ok" and bench_key(retried) == bench_key(record)
    assert [r["status"] for r in folder.records()] == ["failed", "ok"]
    assert bench.run_sweep([fixed], [info], artifacts, folder, options) == []  # now done: nothing re-run


def bench_key(record: dict) -> tuple:
    return record["device"]["id"], record["artifact"]["sha256"], record["config_key"]


def test_energy_is_read_on_the_device_around_the_timed_loop(tmp_path, monkeypatch):
    """A fake RAPL counter advanced at 2 W by a thread: the record's power comes from the loop window."""
    import threading

    monkeypatch.setenv("MBDEPLOY_LOCK_DIR", str(tmp_path / "locks"))
    zone = tmp_path / "root" / "sys/class/powercap/intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    counter = zone / "energy_uj"
    counter.write_text("0\n")
    stop = threading.Event()

    def two_watts() -> None:
        started = time.monotonic()
        while not stop.wait(0.005):
            # Renamed into place like a sysfs read sees it: never a half-written number.
            (zone / "next").write_text(f"{int(2.0e6 * (time.monotonic() - started))}\n")  # 2 W = 2e6 uJ/s
            (zone / "next").replace(counter)

    device = LocalDevice(workdir=tmp_path / "wd", root=tmp_path / "root")
    artifacts = bench.collect_artifacts([tiny_tflite(tmp_path / "m.tflite", channels=8)])
    options = bench.BenchOptions(timing=TimingOptions(min_secs=0.6, max_secs=0.6, target_ci=1e-9), idle_power_s=0,
                                 runner_options={"sysfs_root": str(tmp_path / "root")})
    info = device.info().to_dict()
    folder = bench.start_run(tmp_path / "results", options, [tmp_path / "m.tflite"], [info])
    writer = threading.Thread(target=two_watts)
    writer.start()
    try:
        [record] = bench.run_sweep([device], [info], artifacts, folder, options)
    finally:
        stop.set()
        writer.join()
    power = record["power"]
    assert record["status"] == "ok" and power["status"] == "ok", record
    assert "around the timed loop" in power["source"] and "package-0" in power["source"]
    assert power["avg_power_mw"] == pytest.approx(2000.0, rel=0.15)
    assert power["energy_mj"] == pytest.approx(power["avg_power_mw"] * record["latency_ms"]["median"] / 1000.0)
    assert power["quality"].startswith("timed loop only")


def test_formats_the_runner_cannot_time_are_refused_or_passed_over(tmp_path):
    from support.cli import run_cli
    from mbdeploy.convert import ConvertRequest, convert_model

    models = tmp_path / "models"
    convert_model(ConvertRequest(0.25, 128, out_dir=models, formats=["tflite", "onnx"], precisions=["fp32"]))
    only_onnx = run_cli("bench", "--device", "local", "--models", models, "--formats", "onnx", "--runs", "3",
                        "--out", tmp_path / "results")
    assert only_onnx.returncode == 2 and "Traceback" not in only_onnx.stderr
    assert "Error: the litert runner on local times tflite models, not onnx" in only_onnx.stderr
    assert not (tmp_path / "results").exists()  # refused before a run folder was made
    mixed = run_cli("bench", "--device", "local", "--models", models, "--formats", "onnx,tflite", "--runs", "3",
                    "--out", tmp_path / "results", "--json")
    assert mixed.returncode == 0, mixed.stderr
    summary = json.loads(mixed.stdout)["summary"]
    assert [(row["model"], row["status"]) for row in summary] == [("mobilenet_v1_0.25_128", "ok")]


def test_unwritable_out_and_formats_filtered_before_hashing(tmp_path):
    from support.cli import run_cli
    from mbdeploy.convert import ConvertRequest, convert_model
    from mbdeploy.manifest import load_manifest, save_manifest

    models = tmp_path / "models"
    convert_model(ConvertRequest(0.25, 128, out_dir=models, formats=["tflite"], precisions=["fp32"]))
    model_dir = models / "mobilenet_v1_0.25_128"
    manifest = load_manifest(model_dir)
    # A stale entry of another format (its file gone) must not block a tflite bench.
    manifest["artifacts"].append(dict(manifest["artifacts"][0], format="onnx", path="gone.onnx"))
    save_manifest(model_dir, manifest)
    blocker = tmp_path / "afile"
    blocker.write_text("")
    bad_out = run_cli("bench", "--device", "local", "--models", models, "--runs", "3", "--out", blocker)
    assert bad_out.returncode != 0 and "Traceback" not in bad_out.stderr
    assert "Error: cannot create run folder" in bad_out.stderr
    ok = run_cli("bench", "--device", "local", "--models", models, "--runs", "3", "--out", tmp_path / "r", "--json")
    assert ok.returncode == 0, ok.stderr


def test_plain_tflite_files_get_their_precision_from_the_file(small_models, tmp_path):
    import shutil

    for precision in ("fp32", "fp16", "dynamic", "int8"):
        source = small_models / "mobilenet_v1_0.25_128" / f"mobilenet_v1_0.25_128_{precision}.tflite"
        shutil.copy(source, tmp_path / f"model_{precision}.tflite")  # no manifest beside them
    found = bench.collect_artifacts([tmp_path], precisions=["int8", "fp16"])
    assert sorted((a.name, a.precision) for a in found) == [("model_fp16", "fp16"), ("model_int8", "int8")]
