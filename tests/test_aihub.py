"""Hosted phones on Qualcomm AI Hub, through the real, pinned `qai-hub` client.

The far end is `mbdeploy.testing.aihub_server`, a stand-in that speaks the
client's HTTP API (see its docstring for the client version and sources);
the client's own HTTP, protobuf, upload, retry and job code runs unchanged.
No test reaches the internet: the client's config names the stand-in.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("qai_hub", reason="the qai-hub client is not installed (pip install 'mbdeploy[aihub]')")

TOKEN = "stand-in-token-7f3a"
S24 = "aihub:Samsung Galaxy S24"


class HubServer:
    """The stand-in AI Hub as a subprocess on a free port; state kept in a file across restarts."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.state = folder / "hub-state.json"
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self, *extra: str) -> "HubServer":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mbdeploy.testing.aihub_server", "--port", str(self.port or 0), "--token", TOKEN,
             "--state-file", str(self.state), *extra],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        line = self.process.stdout.readline()
        assert line.startswith("listening on "), line
        self.port = int(line.split()[-1])
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def saved(self) -> dict:
        return json.loads(self.state.read_text())


@pytest.fixture
def hub(tmp_path):
    server = HubServer(tmp_path).start()
    yield server
    server.stop()


def client_env(tmp_path: Path, hub: HubServer, token: str = TOKEN) -> dict:
    ini = tmp_path / "client.ini"
    ini.write_text(f"[api]\napi_token = {token}\napi_url = http://127.0.0.1:{hub.port}\n"
                   f"web_url = http://127.0.0.1:{hub.port}\nverbose = False\n")
    return {**os.environ, "QAIHUB_CLIENT_INI": str(ini), "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "MBDEPLOY_LOCK_DIR": str(tmp_path / "locks"), "MBDEPLOY_AIHUB_POLL_S": "0.05",
            "MBDEPLOY_AIHUB_BACKOFF_S": "0.1", "PYTHONPATH": os.pathsep.join(sys.path),
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def cli(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mbdeploy", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def fp32_model(small_models: Path) -> Path:
    return small_models / "mobilenet_v1_0.25_128"


def records_of(run_dir: Path) -> list[dict]:
    from mbdeploy.records.store import read_records

    return read_records(run_dir / "results.jsonl")


def test_devices_hosted_lists_the_hub_and_caches_it_for_a_day(tmp_path, hub):
    env = client_env(tmp_path, hub)
    done = cli("devices", "--hosted", "--json", env=env)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    names = [row["name"] for row in listed]
    assert "Samsung Galaxy S24" in names and "Google Pixel 8" in names
    elite = next(row for row in listed if row["name"] == "Snapdragon 8 Elite QRD")
    assert elite["chipset"] == "qualcomm-snapdragon-8-elite" and elite["os"] == "15"
    hub.stop()  # cached: no request needed within the day
    assert json.loads(cli("devices", "--hosted", "--json", env=env).stdout) == listed
    refreshed = cli("devices", "--hosted", "--refresh", env=env)
    assert refreshed.returncode != 0
    assert refreshed.stderr.startswith("Error: AI Hub failed while listing its devices")
    assert "Traceback" not in refreshed.stderr and len(refreshed.stderr.strip().splitlines()) == 1


def test_a_missing_or_rejected_token_is_one_line_saying_how_to_configure(tmp_path, hub):
    env = client_env(tmp_path, hub)
    missing = cli("devices", "--hosted", env={**env, "QAIHUB_CLIENT_INI": str(tmp_path / "nothing.ini")})
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith("Error: AI Hub is not configured")
    assert "qai-hub configure --api_token" in missing.stderr
    (tmp_path / "garbled.ini").write_text("api_token = no section header\n")
    garbled = cli("devices", "--hosted", env={**env, "QAIHUB_CLIENT_INI": str(tmp_path / "garbled.ini")})
    assert garbled.returncode != 0 and "Traceback" not in garbled.stderr, garbled.stderr
    assert garbled.stderr.startswith("Error: AI Hub is not configured (File contains no section headers")
    rejected = cli("devices", "--hosted", env=client_env(tmp_path, hub, token="wrong"))
    assert rejected.stderr.startswith("Error: AI Hub rejected the API token") and "wrong" not in rejected.stderr
    assert len(rejected.stderr.strip().splitlines()) == 1


def test_bench_a_desk_device_and_a_hosted_phone_in_one_command_then_report(tmp_path, hub, small_models):
    env = client_env(tmp_path, hub)
    out = tmp_path / "results"
    done = cli("bench", "--device", "local", "--device", S24, "--models", str(fp32_model(small_models)),
               "--precisions", "fp32", "--out", str(out), "--max-secs", "1", "--min-secs", "0.2", "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    by_kind = {r["device"]["kind"]: r for r in records_of(run_dir)}
    assert set(by_kind) == {"local", "aihub"} and result["records"] == 2
    hosted = by_kind["aihub"]
    assert hosted["status"] == "ok" and hosted["device"]["id"] == S24
    assert hosted["device"]["model"] == "Samsung Galaxy S24" and hosted["device"]["soc"] == "qualcomm-snapdragon-8gen3"
    extra = hosted["runner_extra"]
    assert extra["source"] == "hosted" and extra["provider"] == "Qualcomm AI Hub"
    assert extra["job_url"].endswith(extra["job_id"]) or extra["job_id"] in extra["job_url"]
    # The hub's raw per-inference times went through our own statistics.
    assert hosted["latency_ms"]["count"] == len(hosted["samples_ms"]) == 100
    assert min(hosted["samples_ms"]) <= hosted["latency_ms"]["median"] <= max(hosted["samples_ms"])
    assert hosted["init_ms"] > 0 and hosted["peak_memory_mb"] > 0
    assert sum(extra["compute_units"].values()) == len(extra["layers"]) > 0
    assert {layer["compute_unit"] for layer in extra["layers"]} <= {"NPU", "GPU", "CPU"}
    assert hosted["power"]["status"] == "unavailable" and "hosted" in hosted["power"]["reason"]
    assert extra["thermal"].startswith("unavailable")
    # The job id was saved in the run folder before the runner waited on it.
    journal = [json.loads(line) for line in (run_dir / "aihub-jobs.jsonl").read_text().splitlines()]
    assert [entry["job_id"] for entry in journal] == [extra["job_id"]]

    report = cli("report", str(out), "--out", str(tmp_path / "report"), "--json", env=env)
    assert report.returncode == 0, report.stderr
    with open(tmp_path / "report" / "results.csv") as handle:
        devices = {row["device_id"] for row in csv.DictReader(handle)}
    assert devices == {"local", S24}


def test_a_rerun_reuses_the_uploaded_model_and_a_rate_limited_submit_is_retried(tmp_path, small_models):
    hub = HubServer(tmp_path).start("--rate-limit", "2")
    try:
        env = client_env(tmp_path, hub)
        for run in ("first", "second"):
            done = cli("bench", "--device", S24, "--models", str(fp32_model(small_models)), "--precisions", "fp32",
                       "--out", str(tmp_path / run), "--json", env=env)
            assert done.returncode == 0, done.stderr
        saved = hub.saved()
        assert len(saved["models"]) == 1  # keyed by sha256: uploaded once
        assert saved["submissions"] == 2  # one job per bench; the two 429s were retried, not doubled
    finally:
        hub.stop()


def test_a_failed_hub_job_is_a_failed_record_with_the_hubs_message(tmp_path, hub, small_models):
    env = client_env(tmp_path, hub)
    out = tmp_path / "results"
    done = cli("bench", "--device", "aihub:Failing Phone (stand-in)", "--models", str(fp32_model(small_models)),
               "--precisions", "fp32", "--out", str(out), env=env)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    [record] = records_of(next(out.iterdir()))
    assert record["status"] == "failed"
    assert "ran out of memory while loading it" in record["error"]
    assert "ran out of memory" in done.stderr


def test_an_unknown_hosted_device_or_option_fails_before_any_upload(tmp_path, hub, small_models):
    env = client_env(tmp_path, hub)
    unknown = cli("bench", "--device", "aihub:Nokia 3310", "--models", str(fp32_model(small_models)),
                  "--out", str(tmp_path / "r"), env=env)
    assert unknown.returncode != 0 and "AI Hub offers no device matching aihub:Nokia 3310" in unknown.stderr
    foreign = cli("bench", "--device", "local", "--compute-unit", "npu", "--models", str(fp32_model(small_models)),
                  "--out", str(tmp_path / "r"), env=env)
    assert foreign.returncode != 0 and "the litert runner takes no compute_unit option" in foreign.stderr
    # Two devices with their own runners: each takes its own options; one neither takes is refused.
    neither = cli("bench", "--device", "local", "--device", S24, "--cpu-mask", "f0",
                  "--models", str(fp32_model(small_models)), "--out", str(tmp_path / "r"), env=env)
    assert neither.returncode != 0 and "no runner of these devices takes the cpu_mask option" in neither.stderr
    assert hub.saved()["models"] == {}


def test_an_interrupted_bench_resumes_by_reattaching_never_resubmitting(tmp_path, small_models):
    hub = HubServer(tmp_path).start("--polls-per-state", "100000")  # the job stays queued
    env = client_env(tmp_path, hub)
    out = tmp_path / "results"
    args = ["bench", "--device", S24, "--models", str(fp32_model(small_models)), "--precisions", "fp32",
            "--out", str(out)]
    bench = subprocess.Popen([sys.executable, "-m", "mbdeploy", *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        journal = None
        while journal is None or not journal.exists() or not journal.read_text().strip():
            assert bench.poll() is None and time.monotonic() < deadline, bench.communicate()
            runs = [p for p in out.iterdir() if p.is_dir()] if out.exists() else []
            journal = runs[0] / "aihub-jobs.jsonl" if runs else None
            time.sleep(0.05)
        bench.send_signal(signal.SIGINT)  # the user gives up waiting
        bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
        hub.stop()
    run_id = journal.parent.name
    assert hub.saved()["submissions"] == 1
    hub.start()  # the hub finishes the job meanwhile (one poll per state now)
    try:
        done = cli(*args, "--resume", run_id, "--json", env=env)
        assert done.returncode == 0, done.stderr
        [record] = [r for r in records_of(journal.parent) if r["status"] == "ok"]
        assert record["runner_extra"]["job_id"] == json.loads(journal.read_text().splitlines()[0])["job_id"]
        assert hub.saved()["submissions"] == 1  # re-attached: the job was not paid for twice
    finally:
        hub.stop()


def test_the_record_schema_knows_every_runner_and_device_kind():
    from mbdeploy.records.schema import record_schema
    from mbdeploy.runners.registry import RUNNERS

    properties = record_schema()["properties"]
    assert properties["runner"]["properties"]["name"]["enum"] == list(RUNNERS)
    assert "aihub" in properties["device"]["properties"]["kind"]["enum"]


def test_profile_on_a_hosted_phone_maps_the_hubs_layers_to_the_plan(tmp_path, hub, small_models):
    env = client_env(tmp_path, hub)
    done = cli("profile", "--device", S24, "--models", str(fp32_model(small_models)), "--precisions", "fp32",
               "--out", str(tmp_path / "results"), "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["failed"] == []
    [profile] = result["profiles"]
    assert profile["method"] == "op_profile"
    names = [layer["name"] for layer in profile["layers"]]
    assert names[0] == "Conv2d_0" and "Conv2d_13_pointwise" in names and "Logits" in names
    # Each layer's time is the hub's per-layer figure (an average: no median, no CI), mapped by tensor name.
    timed = [layer for layer in profile["layers"] if layer["mean_ms"]]
    assert len(timed) >= 28 and all(layer["time_basis"] == "mean" for layer in timed)
