"""The host side of iOS benchmarking: command construction and the app's output.

No iPhone or Mac here. What runs: every argv list the host builds, the
parsing of device lists and of the app's JSON (fixtures under
tests/fixtures/ios/, in the formats the tools and ios_harness write), and the
whole bench path (copy models and plan, launch, wait, copy back, validate)
through real subprocesses against a stand-in `pymobiledevice3` that keeps an
app container in a folder and plays the app's part by writing the fixture.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import stat
import sys
from pathlib import Path

import pytest

from mbdeploy.devices import ios
from mbdeploy.devices.base import DeviceInfo
from mbdeploy.errors import DeviceError, InvalidInput, ResultsError
from mbdeploy.records.stats import summarize

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ios"
UDID = "00008120-001A2B3C4D5E601E"
NASTY = "a b; touch pwned 'x.tflite"


def app_results() -> str:
    return (FIXTURES / "app-results.json").read_text()


# --- command construction --------------------------------------------------------
def test_devicectl_commands():
    assert ios.devicectl_list(Path("/tmp/d.json")) == [
        "xcrun", "devicectl", "list", "devices", "--json-output", "/tmp/d.json"]
    assert ios.devicectl_install(UDID, Path("build/MBBench.app")) == [
        "xcrun", "devicectl", "device", "install", "app", "--device", UDID, "build/MBBench.app"]
    assert ios.devicectl_launch(UDID) == [
        "xcrun", "devicectl", "device", "process", "launch", "--device", UDID, "--terminate-existing",
        "org.mbdeploy.bench"]
    container = ["--device", UDID, "--domain-type", "appDataContainer", "--domain-identifier", "org.mbdeploy.bench"]
    assert ios.devicectl_copy_to(UDID, Path("m/x.mlpackage"), "Documents/x.mlpackage") == [
        "xcrun", "devicectl", "device", "copy", "to", *container,
        "--source", "m/x.mlpackage", "--destination", "Documents/x.mlpackage"]
    assert ios.devicectl_copy_from(UDID, "Documents/mbdeploy-results.json", Path("out/r.json")) == [
        "xcrun", "devicectl", "device", "copy", "from", *container,
        "--source", "Documents/mbdeploy-results.json", "--destination", "out/r.json"]


def test_pymobiledevice3_commands():
    assert ios.pmd_list() == ["pymobiledevice3", "usbmux", "list", "--no-color"]
    assert ios.pmd_install(UDID, Path("MBBench.ipa")) == [
        "pymobiledevice3", "apps", "install", "--udid", UDID, "MBBench.ipa"]
    assert ios.pmd_push(UDID, Path("m/x.mlpackage"), "Documents/x.mlpackage") == [
        "pymobiledevice3", "apps", "push", "--udid", UDID, "org.mbdeploy.bench", "m/x.mlpackage",
        "/Documents/x.mlpackage"]
    assert ios.pmd_pull(UDID, "Documents/mbdeploy-done", Path("d")) == [
        "pymobiledevice3", "apps", "pull", "--udid", UDID, "org.mbdeploy.bench", "/Documents/mbdeploy-done", "d"]
    assert ios.pmd_remove(UDID, "Documents/models/x.mlpackage") == [
        "pymobiledevice3", "apps", "rm", "--udid", UDID, "org.mbdeploy.bench", "/Documents/models/x.mlpackage"]
    # Launching goes through the iOS 17+ tunnel (tunneld), named by UDID.
    assert ios.pmd_launch(UDID) == [
        "pymobiledevice3", "developer", "dvt", "launch", "--tunnel", UDID, "--kill-existing", "org.mbdeploy.bench"]


def test_launch_arguments_stay_single_words():
    # devicectl passes argv through; `dvt launch` splits one string with shlex,
    # so the host quotes every word and a hostile name stays one argument.
    assert ios.devicectl_launch(UDID, arguments=[NASTY])[-2:] == ["--", NASTY]
    words = shlex.split(ios.pmd_launch(UDID, arguments=[NASTY, "--runs", "5"])[-1])
    assert words == ["org.mbdeploy.bench", NASTY, "--runs", "5"]


def test_device_picks_the_commands_of_its_tool():
    info = DeviceInfo(kind="ios", id=UDID, model="iPhone 14 Pro")
    mac = ios.IosDevice(info, ios.DEVICECTL)
    assert mac.push_argv(Path("p.json"), "Documents/p.json") == ios.devicectl_copy_to(UDID, Path("p.json"),
                                                                                       "Documents/p.json")
    linux = ios.IosDevice(info, ios.PYMOBILEDEVICE3)
    assert linux.pull_argv("Documents/r.json", Path("r.json"))[-6:] == [
        "pull", "--udid", UDID, "org.mbdeploy.bench", "/Documents/r.json", "r.json"]
    with pytest.raises(InvalidInput, match="unknown iOS tool 'adb'"):
        ios.IosDevice(info, "adb")


@pytest.mark.parametrize("name, matched", [
    ("iphone", True), ("iPhone", True), ("iPhone 15 Pro", True), ("iphone_15_pro", True), ("iPhone16,1", True),
    ("Lab iPhone", True), (UDID.lower(), True), ("ipad", False), ("iphone 14", False), ("pixel", False),
])
def test_an_iphone_answers_to_its_family_model_product_type_and_name(name, matched):
    device = ios.IosDevice(DeviceInfo(kind="ios", id=UDID, model="iPhone 15 Pro", soc="iPhone16,1",
                                      extra={"name": "Lab iPhone"}), ios.DEVICECTL)
    assert device.matches(name) is matched
    # pymobiledevice3 names the model by product type only; the family still matches.
    [listed] = ios.parse_usbmux_devices(json.loads((FIXTURES / "usbmux-list.json").read_text()))
    assert ios.IosDevice(listed, ios.PYMOBILEDEVICE3).matches("iphone")


def test_only_pymobiledevice3_can_remove_files_from_the_app():
    info = DeviceInfo(kind="ios", id=UDID)
    assert ios.IosDevice(info, ios.DEVICECTL).remove_argv("Documents/m.mlpackage") is None
    assert ios.IosDevice(info, ios.DEVICECTL).remove("Documents/m.mlpackage") is False
    assert ios.IosDevice(info, ios.PYMOBILEDEVICE3).remove_argv("Documents/m.mlpackage")[-5:] == [
        "rm", "--udid", UDID, "org.mbdeploy.bench", "/Documents/m.mlpackage"]
    # A hostile name stays one argument (no shell anywhere on the way).
    assert ios.IosDevice(info, ios.PYMOBILEDEVICE3).remove_argv(f"Documents/{NASTY}")[-1] == f"/Documents/{NASTY}"


def test_an_iphone_has_no_shell():
    device = ios.IosDevice(DeviceInfo(kind="ios", id=UDID), ios.DEVICECTL)
    with pytest.raises(DeviceError, match="no shell"):
        device.shell(["ls"])
    assert device.workdir == "Documents"
    assert device.sensors().temperatures_c == {}


# --- device lists ----------------------------------------------------------------
def test_parse_devicectl_devices():
    infos = ios.parse_devicectl_devices(json.loads((FIXTURES / "devicectl-list-devices.json").read_text()))
    assert [(i.id, i.model, i.os, i.state) for i in infos] == [
        (UDID, "iPhone 14 Pro", "iOS 17.5.1", "online"),
        ("00008030-000A1B2C3D4E5F60", "iPad (9th generation)", "iOS 16.7.8", "offline"),
    ]  # the watch is skipped
    assert infos[0].soc == "iPhone15,2" and infos[0].extra["name"] == "Lab iPhone"
    with pytest.raises(DeviceError, match="no result.devices"):
        ios.parse_devicectl_devices({"info": {}})


def test_parse_usbmux_devices():
    infos = ios.parse_usbmux_devices(json.loads((FIXTURES / "usbmux-list.json").read_text()))
    assert [(i.kind, i.id, i.model, i.os) for i in infos] == [("ios", UDID, "iPhone15,2", "iOS 17.5.1")]
    with pytest.raises(DeviceError, match="JSON list"):
        ios.parse_usbmux_devices({"not": "a list"})


# --- the app's output ------------------------------------------------------------
def test_parse_app_results_fixture():
    host = DeviceInfo(kind="ios", id=UDID, model="iPhone 14 Pro")
    records = ios.parse_app_results(app_results(), host)
    assert [(r["status"], r["runner"]["compute_units"]) for r in records] == [
        ("ok", "cpuOnly"), ("ok", "cpuAndNeuralEngine"), ("failed", "all")]
    for record in records:
        assert record["device"]["id"] == UDID and record["device"]["kind"] == "ios"
        assert record["runner"]["name"] == "coreml_app" and record["artifact"]["format"] == "coreml"
    # The host recomputes the statistics from the raw samples.
    first = records[0]
    assert first["latency_ms"] == summarize(first["samples_ms"])
    assert first["latency_ms"]["p90"] is not None  # the app does not write percentiles; the host does
    assert records[2]["error"] == "model arrived incomplete: 917504 of 1835008 bytes"
    assert records[2]["latency_ms"] is None


def _mutated(change) -> str:
    document = json.loads(app_results())
    change(document)
    return json.dumps(document)


@pytest.mark.parametrize("text, message", [
    ("{\"schema\": \"mbdeploy.coreml_app/1\", \"records\": [", "not JSON"),
    (json.dumps({"schema": "something/else", "records": []}), "not the benchmark app's output"),
    (json.dumps({"schema": "mbdeploy.coreml_app/1"}), "no records list"),
    (json.dumps({"schema": "mbdeploy.coreml_app/1", "records": [], "error": "bad plan: unknown compute units"}),
     "could not run: bad plan"),
    (_mutated(lambda d: d["records"][0].pop("artifact")), "record 0: artifact format must be coreml"),
    (_mutated(lambda d: d["records"][0]["artifact"].update(sha256="abc")), "record 0: record rejected by the schema at artifact/sha256"),
    (_mutated(lambda d: d["records"][1].pop("started_at")), "record 1: record rejected by the schema"),
    (_mutated(lambda d: d["records"][0]["runner"].update(name="benchmark_model")), "expected 'coreml_app'"),
    (_mutated(lambda d: d["records"][0].update(samples_ms=[])), "status ok but no samples_ms"),
    (_mutated(lambda d: d["records"][0].update(samples_ms=[1.0, -2.0])), "non-negative numbers"),
    (_mutated(lambda d: d["records"][0].update(status="maybe")), "record 0: record rejected by the schema at status"),
])
def test_invalid_app_output_is_rejected_clearly(text, message):
    with pytest.raises(ResultsError, match=message.replace("(", r"\(")):
        ios.parse_app_results(text)


def test_build_plan():
    artifact = {"name": "mobilenet_v1_0.25_128", "format": "coreml", "precision": "fp16"}
    plan = ios.build_plan("run-1", {"m.mlpackage": artifact}, runs=10, warmup=2, compute_units=["cpuOnly"])
    assert plan == {"schema": "mbdeploy.coreml_app/1", "run_id": "run-1", "runs": 10, "warmup": 2,
                    "compute_units": ["cpuOnly"], "artifacts": {"m.mlpackage": artifact}}
    with pytest.raises(InvalidInput, match="allowed: cpuOnly, cpuAndGPU, cpuAndNeuralEngine, all"):
        ios.build_plan("r", {}, compute_units=["npu"])
    with pytest.raises(InvalidInput, match="only coreml artifacts"):
        ios.build_plan("r", {"m.tflite": {"format": "tflite"}})
    with pytest.raises(InvalidInput, match="runs must be >= 1"):
        ios.build_plan("r", {}, runs=0)


# --- discovery and the bench path through real subprocesses ------------------------
def test_discover_is_empty_without_devicectl_or_pymobiledevice3(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no xcrun, no pymobiledevice3
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pymobiledevice3" else real_find_spec(name, *a))
    assert ios.available_tool() is None
    assert ios.discover() == []


FAKE_TOOL = r'''#!PYTHON
"""Stand-in for pymobiledevice3: an app container in a folder, and an "app" that writes the fixture.

With FAKE_IOS_APP=plan the "app" follows ios_harness instead: one record
per model found under Documents and compute unit of the plan, the plan's
artifact block, the byte count checked on arrival, and the samples of
FAKE_IOS_SAMPLES (stand-in figures, not measurements) for `runs` runs.
"""
import copy, json, os, shlex, shutil, sys
from pathlib import Path


def find_models(folder):
    found = []
    for path in sorted(folder.iterdir()):
        if path.suffix in (".mlpackage", ".mlmodelc"):
            found.append(path)  # a model is a folder: never look inside it
        elif path.is_dir():
            found += find_models(path)
    return found


def plan_records(documents, plan):
    template = json.loads(Path(os.environ["FAKE_IOS_RESULTS"]).read_text())["records"][0]
    samples = json.loads(os.environ["FAKE_IOS_SAMPLES"])
    records = []
    for model in find_models(documents):
        files = [p for p in model.rglob("*") if p.is_file()] if model.is_dir() else [model]
        size = sum(p.stat().st_size for p in files)
        artifact = plan["artifacts"].get(model.name) or {
            "name": model.stem, "format": "coreml", "precision": "unknown", "sha256": "0" * 64, "bytes": size,
            "macs": None, "params": None}
        for unit in plan["compute_units"]:
            record = copy.deepcopy(template)
            record.update(run_id=plan["run_id"], artifact=artifact,
                          config_key=f"coreml_app/{unit}/runs={plan['runs']}/warmup={plan['warmup']}")
            record["runner"].update(compute_units=unit, delegate=unit, runs=plan["runs"], warmup=plan["warmup"])
            if artifact["bytes"] != size:
                record.update(status="failed", error=f"model arrived incomplete: {size} of {artifact['bytes']} bytes",
                              latency_ms=None, samples_ms=[], init_ms=None, first_inference_ms=None)
            else:
                record["samples_ms"] = [samples[i % len(samples)] for i in range(plan["runs"])]
            records.append(record)
    return records

args = sys.argv[1:]
container = Path(os.environ["FAKE_IOS_CONTAINER"])
with open(os.environ["FAKE_IOS_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
if args[:2] == ["usbmux", "list"]:
    print(Path(os.environ["FAKE_IOS_USBMUX"]).read_text())
elif args[:2] == ["apps", "push"]:
    local, remote = Path(args[-2]), container / args[-1].lstrip("/")
    remote.parent.mkdir(parents=True, exist_ok=True)
    (shutil.copytree if local.is_dir() else shutil.copy)(local, remote)
elif args[:2] == ["apps", "rm"]:
    remote = container / args[-1].lstrip("/")
    if not remote.exists():
        sys.exit("AfcFileNotFoundError: " + args[-1])
    (shutil.rmtree if remote.is_dir() else os.remove)(remote)
elif args[:2] == ["apps", "pull"]:
    remote, local = container / args[-2].lstrip("/"), Path(args[-1])
    if not remote.exists():
        sys.exit("AfcFileNotFoundError: " + args[-2])
    shutil.copy(remote, local)
elif args[:3] == ["developer", "dvt", "launch"]:
    words = shlex.split(args[-1])  # what the real tool does with its one argument
    documents = container / "Documents"
    plan = json.loads((documents / "mbdeploy-plan.json").read_text())
    models = sorted(p.name for p in documents.iterdir() if p.suffix in (".mlpackage", ".mlmodelc"))
    (documents / "seen.json").write_text(json.dumps({"words": words, "plan": plan, "models": models}))
    with open(os.environ["FAKE_IOS_LOG"].replace(".jsonl", "-plans.jsonl"), "a") as log:
        log.write(json.dumps(plan) + "\n")
    if os.environ.get("FAKE_IOS_APP") == "hang":
        sys.exit(0)  # launched, but the app never writes its results
    if os.environ.get("FAKE_IOS_APP") == "plan":
        document = {"schema": "mbdeploy.coreml_app/1", "records": plan_records(documents, plan)}
        (documents / "mbdeploy-results.json").write_text(json.dumps(document))
    else:
        shutil.copy(os.environ["FAKE_IOS_RESULTS"], documents / "mbdeploy-results.json")
    (documents / "mbdeploy-done").write_text(plan["run_id"] + "\n")
else:
    sys.exit("unexpected command: " + " ".join(args))
'''


@pytest.fixture
def fake_phone(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "pymobiledevice3"
    tool.write_text(FAKE_TOOL.replace("PYTHON", sys.executable, 1))
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    container = tmp_path / "container"
    (container / "Documents").mkdir(parents=True)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_IOS_CONTAINER", str(container))
    monkeypatch.setenv("FAKE_IOS_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("FAKE_IOS_USBMUX", str(FIXTURES / "usbmux-list.json"))
    monkeypatch.setenv("FAKE_IOS_RESULTS", str(FIXTURES / "app-results.json"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_discover_through_pymobiledevice3(fake_phone):
    devices = ios.discover(tool=ios.PYMOBILEDEVICE3)
    assert [(d.kind, d.id, d.tool) for d in devices] == [("ios", UDID, "pymobiledevice3")]


def test_bench_path_copies_launches_waits_and_validates(fake_phone):
    model = fake_phone / "models" / "mobilenet_v1_0.25_128.mlpackage"
    (model / "Data").mkdir(parents=True)
    (model / "Data" / "model.mlmodel").write_bytes(b"\x01" * 64)
    (model / "Manifest.json").write_text("{}")
    odd = fake_phone / "models" / NASTY
    odd.write_bytes(b"\x02" * 8)
    device = ios.discover(tool=ios.PYMOBILEDEVICE3)[0]
    plan = ios.build_plan("run-1", {model.name: {"format": "coreml", "name": "mobilenet_v1_0.25_128"}}, runs=5)

    records = device.bench({model.name: model, NASTY: odd}, plan, timeout=30, poll_s=0.05)

    assert [r["status"] for r in records] == ["ok", "ok", "failed"]
    assert all(r["device"]["id"] == UDID for r in records)
    documents = fake_phone / "container" / "Documents"
    seen = json.loads((documents / "seen.json").read_text())
    assert seen["plan"] == plan
    assert seen["words"] == ["org.mbdeploy.bench"]
    assert (documents / model.name / "Data" / "model.mlmodel").read_bytes() == b"\x01" * 64
    assert (documents / NASTY).read_bytes() == b"\x02" * 8  # the odd name arrived as one file
    assert not (fake_phone / "pwned").exists() and not (documents / "pwned").exists()
    calls = [json.loads(line) for line in (fake_phone / "calls.jsonl").read_text().splitlines()]
    assert ["apps", "push", "--udid", UDID, "org.mbdeploy.bench", str(odd), f"/Documents/{NASTY}"] in calls


def test_bench_path_reports_an_app_that_never_finishes(fake_phone, monkeypatch):
    monkeypatch.setenv("FAKE_IOS_APP", "hang")
    # An earlier run's marker and results are still in the container: not taken for this run's.
    documents = fake_phone / "container" / "Documents"
    (documents / "mbdeploy-done").write_text("an-earlier-run\n")
    (documents / "mbdeploy-results.json").write_text(app_results())
    device = ios.IosDevice(DeviceInfo(kind="ios", id=UDID), ios.PYMOBILEDEVICE3)
    with pytest.raises(DeviceError, match="did not finish in 0 s"):
        device.bench({}, ios.build_plan("r", {}), timeout=0.2, poll_s=0.05)


def test_bench_path_reports_a_failed_launch(fake_phone, monkeypatch):
    monkeypatch.setenv("FAKE_IOS_RESULTS", str(fake_phone / "missing.json"))  # the stand-in exits non-zero
    device = ios.IosDevice(DeviceInfo(kind="ios", id=UDID), ios.PYMOBILEDEVICE3)
    with pytest.raises(DeviceError, match="launching the benchmark app on .* failed"):
        device.bench({}, ios.build_plan("r", {}), timeout=5, poll_s=0.05)


def test_bench_path_rejects_a_corrupt_results_file(fake_phone, monkeypatch):
    broken = fake_phone / "broken.json"
    broken.write_text(app_results()[:200])  # the app was killed mid-write
    monkeypatch.setenv("FAKE_IOS_RESULTS", str(broken))
    device = ios.IosDevice(DeviceInfo(kind="ios", id=UDID), ios.PYMOBILEDEVICE3)
    with pytest.raises(ResultsError, match="mbdeploy-results.json is not JSON"):
        device.bench({}, ios.build_plan("r", {}), timeout=5, poll_s=0.05)


def test_missing_app_bundle_is_a_clear_error(tmp_path):
    device = ios.IosDevice(DeviceInfo(kind="ios", id=UDID), ios.DEVICECTL)
    with pytest.raises(InvalidInput, match="no app at .*build ios_harness"):
        device.install_app(tmp_path / "MBBench.app")


# --- the Swift harness: what can be checked without a Swift compiler ------------------
HARNESS = Path(__file__).resolve().parents[1] / "ios_harness"
SWIFT_FILES = sorted(HARNESS.rglob("*.swift"))


def _swift_syntax_errors(source: bytes) -> list[str]:
    tree_sitter = pytest.importorskip("tree_sitter", reason="tree-sitter is not installed (test extra)")
    swift = pytest.importorskip("tree_sitter_swift", reason="tree-sitter-swift is not installed (test extra)")
    parser = tree_sitter.Parser(tree_sitter.Language(swift.language()))
    errors, stack = [], [parser.parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            errors.append(f"line {node.start_point[0] + 1}: {'missing ' + node.type if node.is_missing else 'syntax error'}")
        stack.extend(node.children)
    return errors


@pytest.mark.parametrize("path", SWIFT_FILES, ids=lambda p: str(p.relative_to(HARNESS)))
def test_swift_sources_parse(path):
    # Syntax only: no Swift compiler or Core ML here; macos.yml compiles and runs them.
    assert _swift_syntax_errors(path.read_bytes()) == []


def test_swift_syntax_check_is_live():
    assert _swift_syntax_errors(b"func f() {\n  let x = [1, 2\n}\n")


def test_harness_and_host_agree_on_names():
    # The app writes what the host waits for and reads; a rename on one side must fail here.
    sources = "\n".join(path.read_text() for path in SWIFT_FILES)
    for name in (ios.APP_SCHEMA, ios.RESULTS_FILE, ios.DONE_FILE, ios.PLAN_FILE, ios.RUNNER_NAME, *ios.COMPUTE_UNITS):
        assert f'"{name}"' in sources, f"{name} is not in the Swift harness"
    assert f"PRODUCT_BUNDLE_IDENTIFIER: {ios.BUNDLE_ID}" in (HARNESS / "project.yml").read_text()


# --- `mbdeploy bench --device iphone`: the coreml_app runner through the real CLI ------
SAMPLES = [2.5, 2.25, 2.75, 2.4, 3.1]  # what the stand-in app reports; stand-in figures, not measurements


@pytest.fixture(scope="module")
def coreml_models(tmp_path_factory) -> Path:
    """mobilenet_v1_0.25_128 as an fp16 .mlpackage, converted once for this module."""
    pytest.importorskip("coremltools", reason="coremltools is not installed")
    from mbdeploy.convert import ConvertRequest, convert_model

    out = tmp_path_factory.mktemp("coreml-models")
    convert_model(ConvertRequest(0.25, 128, out_dir=out, formats=["coreml"], precisions=["fp16"]))
    return out


def _cli_env(fake_phone: Path) -> dict:
    from support.cli import harness_env

    env = {**harness_env(fake_phone), "FAKE_IOS_APP": "plan", "FAKE_IOS_SAMPLES": json.dumps(SAMPLES)}
    for key in ("PATH", "FAKE_IOS_CONTAINER", "FAKE_IOS_LOG", "FAKE_IOS_USBMUX", "FAKE_IOS_RESULTS"):
        env[key] = os.environ[key]  # set by the fake_phone fixture
    return env


NO_ADB = ["--adb-host", "192.0.2.1:5037"]  # a documentation address: no adb server there, none started


def _records(out: Path) -> list[dict]:
    from mbdeploy.records.schema import validate_record
    from mbdeploy.records.store import read_records

    [run] = out.iterdir()
    records = read_records(run / "results.jsonl")
    for record in records:
        validate_record(record)
    return records


def test_devices_lists_the_iphone(fake_phone):
    from support.cli import mbdeploy

    result = mbdeploy(["devices", "--json", *NO_ADB], cwd=fake_phone, env=_cli_env(fake_phone))
    assert result.returncode == 0, result.stderr
    [phone] = [row for row in json.loads(result.stdout) if row["kind"] == "ios"]
    assert (phone["id"], phone["model"], phone["os"], phone["state"]) == (UDID, "iPhone15,2", "iOS 17.5.1", "online")


def test_cli_bench_iphone_times_the_mlpackage_in_the_app(fake_phone, coreml_models):
    from support.cli import mbdeploy
    from mbdeploy.manifest import artifact_digest as size_and_digest
    from mbdeploy.manifest import load_manifest

    result = mbdeploy(["bench", "--device", "iphone", "--formats", "coreml", "--models", str(coreml_models),
                       "--runs", "7", "--warmup", "1", "--json", *NO_ADB], cwd=fake_phone, env=_cli_env(fake_phone))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["failed"] == 0

    [record] = _records(fake_phone / "results")
    [manifest_dir] = coreml_models.iterdir()
    [entry] = [a for a in load_manifest(manifest_dir)["artifacts"] if a["format"] == "coreml"]
    assert (record["device"]["kind"], record["device"]["id"]) == ("ios", UDID)
    assert (record["runner"]["name"], record["runner"]["compute_units"]) == ("coreml_app", "all")
    assert (record["artifact"]["format"], record["artifact"]["sha256"]) == ("coreml", entry["sha256"])
    assert record["artifact"]["bytes"] == entry["bytes"] == size_and_digest(manifest_dir / entry["path"])[0]
    assert record["status"] == "ok" and record["stop_reason"] == "runs"
    # The app's raw samples, its load and first-inference times; statistics computed by the host.
    expected = [SAMPLES[i % len(SAMPLES)] for i in range(7)]
    assert record["samples_ms"] == expected
    assert record["latency_ms"] == summarize(expected) and record["latency_ms"]["count"] == 7
    fixture = json.loads(app_results())["records"][0]
    assert (record["init_ms"], record["first_inference_ms"]) == (fixture["init_ms"], fixture["first_inference_ms"])
    assert record["runner_extra"]["compute_units"] == "all"
    assert record["runner_extra"]["compile_ms"] == fixture["compile_ms"]

    # The whole package went over with the manifest's byte count for the app's arrival check, then was removed.
    [plan] = [json.loads(line) for line in (fake_phone / "calls-plans.jsonl").read_text().splitlines()]
    assert (plan["runs"], plan["warmup"], plan["compute_units"]) == (7, 1, ["all"])
    [(name, block)] = plan["artifacts"].items()
    assert name == entry["path"] and (block["bytes"], block["sha256"]) == (entry["bytes"], entry["sha256"])
    calls = [json.loads(line) for line in (fake_phone / "calls.jsonl").read_text().splitlines()]
    assert [c[:2] for c in calls if c[:2] in (["apps", "push"], ["apps", "rm"])] == [
        ["apps", "push"], ["apps", "push"], ["apps", "rm"]]  # the model, the plan, then the model removed
    documents = fake_phone / "container" / "Documents"
    assert not list(documents.rglob("*.mlpackage"))


def test_cli_bench_iphone_one_record_per_compute_unit_and_coreml_by_default(fake_phone, coreml_models):
    from support.cli import mbdeploy

    env = _cli_env(fake_phone)
    # No --formats: an iPhone defaults to coreml (the manifest folder also holds nothing else to pick).
    args = ["bench", "--device", "iPhone15,2", "--models", str(coreml_models), "--runs", "3",
            "--compute-units", "cpuOnly,cpuAndNeuralEngine", "--json", *NO_ADB]
    result = mbdeploy(args, cwd=fake_phone, env=env)
    assert result.returncode == 0, result.stderr
    records = _records(fake_phone / "results")
    assert sorted(r["runner"]["compute_units"] for r in records) == ["cpuAndNeuralEngine", "cpuOnly"]
    assert len({r["config_key"] for r in records}) == 2
    assert all(r["status"] == "ok" and r["artifact"]["format"] == "coreml" for r in records)
    plans = [json.loads(line) for line in (fake_phone / "calls-plans.jsonl").read_text().splitlines()]
    assert [p["compute_units"] for p in plans] == [["cpuOnly"], ["cpuAndNeuralEngine"]]
    assert [row["config"] for row in json.loads(result.stdout)["summary"]] == ["cpuOnly", "cpuAndNeuralEngine"]
    table = mbdeploy([*args[:-3], "--out", "table-results", *NO_ADB], cwd=fake_phone, env=env)
    assert table.returncode == 0, table.stderr
    assert "config" in table.stdout and "cpuAndNeuralEngine" in table.stdout  # the settings side by side

    bad = mbdeploy([*args[:-5], "--compute-units", "npu", *NO_ADB], cwd=fake_phone, env=env)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1] == (
        "Error: unknown compute units 'npu'; allowed: cpuOnly, cpuAndGPU, cpuAndNeuralEngine, all")


def test_a_model_that_arrives_incomplete_is_a_failed_record(fake_phone, coreml_models, monkeypatch):
    from mbdeploy.bench import BenchOptions, collect_artifacts, run_sweep
    from mbdeploy.records.store import RunFolder
    from mbdeploy.runners.base import TimingOptions

    monkeypatch.setenv("FAKE_IOS_APP", "plan")
    monkeypatch.setenv("FAKE_IOS_SAMPLES", json.dumps(SAMPLES))
    monkeypatch.setenv("MBDEPLOY_LOCK_DIR", str(fake_phone / "locks"))
    [artifact] = collect_artifacts([coreml_models], formats=["coreml"])
    [device] = ios.discover(tool=ios.PYMOBILEDEVICE3)
    real_push = device.push

    def push_then_lose_a_file(local, remote):  # the copy is cut short on the way to the phone
        real_push(local, remote)
        if remote.endswith(".mlpackage"):
            (fake_phone / "container" / remote / "Manifest.json").unlink()

    device.push = push_then_lose_a_file
    folder = RunFolder.create(fake_phone / "results", {})
    options = BenchOptions(timing=TimingOptions(runs=3), runner_options={"poll_s": 0.05})
    [record] = run_sweep([device], [device.info().to_dict()], [artifact], folder, options)
    assert record["status"] == "failed" and "model arrived incomplete" in record["error"]
    assert record["runner"]["name"] == "coreml_app" and record["latency_ms"] is None


def test_coreml_app_runner_needs_an_ios_device_and_reports_the_apps_failure(tmp_path):
    from mbdeploy.devices.local import LocalDevice
    from mbdeploy.errors import RunnerError
    from mbdeploy.runners.base import TimingOptions
    from mbdeploy.runners.coreml_app import CoreMLAppRunner, outcome_from_record

    runner = CoreMLAppRunner(TimingOptions(runs=None, warmup_runs=3), compute_units="cpuAndGPU")
    assert runner.config() == {"name": "coreml_app", "compute_units": "cpuAndGPU", "delegate": "cpuAndGPU",
                               "threads": None, "warmup_runs": 3, "runs": 50}
    with pytest.raises(RunnerError, match="needs an iPhone or iPad; local is a local device"):
        runner.prepare(LocalDevice(workdir=tmp_path / "wd"))
    with pytest.raises(InvalidInput, match="takes no delegate option"):
        CoreMLAppRunner(TimingOptions(), delegate="gpu")
    failed = ios.parse_app_results(app_results())[2]
    with pytest.raises(RunnerError, match="failed with all: model arrived incomplete"):
        outcome_from_record(failed)
    ok = outcome_from_record(ios.parse_app_results(app_results())[0])
    assert ok.samples_ms == [1.25, 1.21, 1.15, 1.31, 1.17] and ok.extra["compute_units"] == "cpuOnly"
