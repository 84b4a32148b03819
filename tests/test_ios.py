"""iPhones: the transport (devices/ios.py), the coreml_app runner, and the Swift app's sources.

No iPhone or Mac here. What runs:
- every pymobiledevice3 command line mbdeploy builds, parsed by the real,
  pinned pymobiledevice3's own command objects (the `ios` extra);
- `mbdeploy devices` with the real pymobiledevice3 talking to a stand-in
  usbmuxd socket (mbdeploy/testing/usbmuxd.py);
- the package's real AFC push/pull/rm code against a folder standing in for
  the app's container (mbdeploy/testing/afc_folder.py), and the pushed
  .mlpackage opened by coremltools where the app will look;
- the sweep end to end through a stand-in `pymobiledevice3` on PATH
  (mbdeploy/testing/ios_phone.py) that parses every call with the real CLI,
  copies with the real AFC code and plays the app from its plan;
- the Swift sources parsed by tree-sitter, with a check for identifiers used
  out of scope (no Swift compiler installs here; macos.yml compiles them).
devicectl (macOS) is checked against fixtures in its published JSON shape.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mbdeploy.architecture import ModelSpec
from mbdeploy.devices import ios
from mbdeploy.devices.base import DeviceInfo
from mbdeploy.errors import DeviceError, InvalidInput, ResultsError, RunnerError
from mbdeploy.records.stats import summarize
from mbdeploy.runners import coreml_app
from support.paths import ROOT

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ios"
UDID = "00008120-001A2B3C4D5E601E"
NASTY = "a b; touch pwned 'x.tflite"
SAMPLES = [2.5, 2.25, 2.75, 2.4, 3.1]  # what the stand-in app reports; stand-in figures, not measurements

def app_results() -> str:
    return (FIXTURES / "app-results.json").read_text()


def real_cli(argv: list[str]) -> tuple[list[str], dict]:
    """What the real pymobiledevice3 makes of this command line (raises click's UsageError where it would exit 2)."""
    from mbdeploy.testing.ios_phone import pmd3_command

    assert argv[0] == "pymobiledevice3"
    return pmd3_command(argv[1:])


# --- command lines ------------------------------------------------------------------
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


@pytest.mark.parametrize("version, path", [
    ("iOS 16.7.8", ios.LOCKDOWN), ("16.0", ios.LOCKDOWN), ("iOS 17.0", ios.TUNNELD), ("iOS 17.3.1", ios.TUNNELD),
    ("iOS 17.4", ios.USERSPACE), ("iOS 18.2", ios.USERSPACE), (None, ios.USERSPACE),
])
def test_the_launch_path_follows_the_ios_version(version, path):
    assert ios.launch_path(version) == path


def _every_pmd3_command(tmp_path: Path) -> list[list[str]]:
    """Every pymobiledevice3 command line mbdeploy builds, with each option combination it uses."""
    app = tmp_path / "MBBench.ipa"
    app.write_bytes(b"ipa")
    package = tmp_path / "m.mlpackage"
    package.mkdir()
    plan = tmp_path / "plan.json"
    plan.write_text("{}")
    commands = [ios.pmd_list(), ios.pmd_install(UDID, app), ios.pmd_mount_ddi(UDID), ios.pmd_tunneld()[1:],
                ios.pmd_push(UDID, package, "Documents/models/0a1b/m.mlpackage"),
                ios.pmd_push(UDID, plan, "Documents/mbdeploy-plan.json"),
                ios.pmd_pull(UDID, "Documents/mbdeploy-done", tmp_path / "done"),
                ios.pmd_remove(UDID, "Documents/models/0a1b/m.mlpackage"),
                ios.pmd_remove(UDID, f"Documents/{NASTY}")]
    for path in (ios.LOCKDOWN, ios.TUNNELD, ios.USERSPACE):
        commands += [ios.pmd_launch(UDID, path=path), ios.pmd_launch(UDID, arguments=[NASTY, "--runs", "5"], path=path)]
    return commands


def test_every_command_line_is_accepted_by_the_real_pymobiledevice3(tmp_path):
    parsed = {" ".join(argv[1:3]): real_cli(argv) for argv in _every_pmd3_command(tmp_path)}
    assert parsed["usbmux list"][0] == ["usbmux", "list"]
    path, params = real_cli(ios.pmd_push(UDID, tmp_path / "m.mlpackage", "Documents/models/0a1b/m.mlpackage"))
    assert (path, params["udid"], params["bundle_id"], params["remote_file"]) == (
        ["apps", "push"], UDID, "org.mbdeploy.bench", "/Documents/models/0a1b")  # a folder goes into the parent
    for launch_path, flags in ((ios.LOCKDOWN, {"udid": UDID, "tunnel": None, "userspace": False}),
                               (ios.TUNNELD, {"udid": None, "tunnel": UDID, "userspace": False}),
                               (ios.USERSPACE, {"udid": UDID, "tunnel": None, "userspace": True})):
        path, params = real_cli(ios.pmd_launch(UDID, arguments=[NASTY], path=launch_path))
        assert path == ["developer", "dvt", "launch"] and params["kill_existing"] is True
        assert {key: params[key] for key in flags} == flags
        # `dvt launch` splits its one argument with shlex: a hostile name stays one word.
        assert shlex.split(params["arguments"]) == ["org.mbdeploy.bench", NASTY]


def test_the_real_cli_check_catches_what_the_real_tool_refuses(tmp_path):
    from typer._click.exceptions import UsageError

    for argv, message in ((["pymobiledevice3", "usbmux", "list", "--no-color"], "No such option: --no-color"),
                          (["pymobiledevice3", "apps", "push", "--udid", UDID, "org.mbdeploy.bench", str(tmp_path)],
                           "remote_file"),
                          (["pymobiledevice3", "apps", "install", "--udid", UDID, str(tmp_path / "none.ipa")],
                           "does not exist")):
        with pytest.raises(UsageError, match=message):
            real_cli(argv)


def test_a_folder_keeps_its_name_on_the_phone(tmp_path):
    (tmp_path / "m.mlpackage").mkdir()
    with pytest.raises(InvalidInput, match="must end in m.mlpackage"):
        ios.pmd_push(UDID, tmp_path / "m.mlpackage", "Documents/other.mlpackage")


def test_device_picks_the_commands_of_its_tool_and_phone():
    mac = ios.IosDevice(DeviceInfo(kind="ios", id=UDID, model="iPhone 14 Pro"), ios.DEVICECTL)
    assert mac.push_argv(Path("p.json"), "Documents/p.json") == ios.devicectl_copy_to(UDID, Path("p.json"),
                                                                                       "Documents/p.json")
    assert mac.remove_argv("Documents/m.mlpackage") is None and mac.remove("Documents/m.mlpackage") is False
    old = ios.IosDevice(DeviceInfo(kind="ios", id=UDID, os="iOS 16.7.8"), ios.PYMOBILEDEVICE3)
    assert old.launch_argv()[-5:-1] == ["launch", "--udid", UDID, "--kill-existing"]
    assert "mounter auto-mount --udid" in old.launch_help()
    tunnel = ios.IosDevice(DeviceInfo(kind="ios", id=UDID, os="iOS 17.2"), ios.PYMOBILEDEVICE3)
    assert tunnel.launch_argv()[-5:-1] == ["launch", "--tunnel", UDID, "--kill-existing"]
    assert "sudo" in tunnel.launch_help() and "remote tunneld" in tunnel.launch_help()
    with pytest.raises(InvalidInput, match="unknown iOS tool 'adb'"):
        ios.IosDevice(DeviceInfo(kind="ios", id=UDID), "adb")


@pytest.mark.parametrize("name, matched", [
    ("iphone", True), ("iPhone", True), ("iPhone 15 Pro", True), ("iphone_15_pro", True), ("iPhone16,1", True),
    ("Lab iPhone", True), (UDID.lower(), True), ("ipad", False), ("iphone 14", False), ("pixel", False),
])
def test_an_iphone_answers_to_its_family_model_product_type_and_name(name, matched):
    device = ios.IosDevice(DeviceInfo(kind="ios", id=UDID, model="iPhone 15 Pro", soc="iPhone16,1",
                                      extra={"name": "Lab iPhone"}), ios.DEVICECTL)
    assert device.matches(name) is matched


def test_an_iphone_has_no_shell():
    device = ios.IosDevice(DeviceInfo(kind="ios", id=UDID), ios.DEVICECTL)
    with pytest.raises(DeviceError, match="no shell"):
        device.shell(["ls"])
    assert device.workdir == "Documents" and device.sensors().temperatures_c == {}


# --- device lists ----------------------------------------------------------------
def test_devicectl_availability_fields():
    infos = ios.parse_devicectl_devices(json.loads((FIXTURES / "devicectl-list-devices.json").read_text()))
    # An idle wired phone (tunnel "disconnected" until devicectl needs it) is online; "unavailable" is not.
    assert [(i.id, i.model, i.os, i.state) for i in infos] == [
        (UDID, "iPhone 14 Pro", "iOS 17.5.1", "online"),
        ("00008030-000A1B2C3D4E5F60", "iPad (9th generation)", "iOS 16.7.8", "offline"),
    ]  # the watch is skipped
    assert (infos[0].extra["connection"], infos[0].extra["ddi_services"]) == ("wired", True)
    assert ios.devicectl_state({"pairingState": "unpaired"}, {}) == "unpaired"
    assert ios.devicectl_state({"pairingState": "paired"}, {"bootState": "shutdown"}) == "offline"
    with pytest.raises(DeviceError, match="no result.devices"):
        ios.parse_devicectl_devices({"info": {}})


def test_a_phone_on_usb_and_wifi_is_listed_once_over_usb():
    infos = ios.parse_usbmux_devices(json.loads((FIXTURES / "usbmux-list.json").read_text()))
    assert [(i.kind, i.id, i.model, i.os, i.extra["connection"]) for i in infos] == [
        ("ios", UDID, "iPhone15,2", "iOS 17.5.1", "USB")]  # the Wi-Fi entry folded in, the watch skipped
    assert ios.IosDevice(infos[0], ios.PYMOBILEDEVICE3).matches("iphone")
    with pytest.raises(DeviceError, match="JSON list"):
        ios.parse_usbmux_devices({"not": "a list"})


# --- `mbdeploy devices` with the real pymobiledevice3 and a stand-in usbmuxd ---------------
def _devices(tmp_path: Path, socket_path: Path) -> subprocess.CompletedProcess:
    from support.cli import harness_env, mbdeploy

    env = {**harness_env(tmp_path), "USBMUXD_SOCKET_ADDRESS": str(socket_path), "HOME": str(tmp_path / "home")}
    bin_dir = Path(sys.executable).parent  # the venv's real pymobiledevice3 console script
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return mbdeploy(["devices", "--json", "--adb-host", "192.0.2.1:5037"], cwd=tmp_path, env=env)


def test_devices_lists_a_phone_that_usbmuxd_reports(tmp_path):
    from mbdeploy.testing.usbmuxd import FakeUsbmuxd, Phone

    phone = Phone(udid=UDID, product_type="iPhone15,2", version="16.7.8", name="Lab iPhone")
    with FakeUsbmuxd(tmp_path / "usbmuxd.sock", [phone, phone.over_wifi()]) as usbmuxd:
        result = _devices(tmp_path, usbmuxd.path)
    assert result.returncode == 0, result.stderr
    assert "ios devices" not in result.stderr
    phones = [row for row in json.loads(result.stdout) if row["kind"] == "ios"]
    assert [(p["id"], p["model"], p["os"], p["state"], p["extra"]["connection"]) for p in phones] == [
        (UDID, "iPhone15,2", "iOS 16.7.8", "online", "USB")]
    assert {"ListDevices", "Connect", "QueryType", "GetValue"} <= set(usbmuxd.requests)  # the real client asked


@pytest.mark.parametrize("usbmuxd_running", [False, True])
def test_devices_prints_no_warning_without_a_phone(tmp_path, usbmuxd_running):
    from mbdeploy.testing.usbmuxd import FakeUsbmuxd

    if usbmuxd_running:
        with FakeUsbmuxd(tmp_path / "usbmuxd.sock", []) as usbmuxd:
            result = _devices(tmp_path, usbmuxd.path)
    else:
        # Something at the socket's path that is no usbmuxd: the real tool fails to connect, as on a Linux
        # machine with no phone plugged in (a missing socket is not even asked).
        (tmp_path / "not-usbmuxd").write_text("")
        result = _devices(tmp_path, tmp_path / "not-usbmuxd")
    assert result.returncode == 0, result.stderr
    assert "ios devices" not in result.stderr  # (the adb warning is for the documentation address given)
    assert [row for row in json.loads(result.stdout) if row["kind"] == "ios"] == []


# --- the real AFC push against a folder standing in for the app container --------------
@pytest.fixture(scope="module")
def mlpackage(tmp_path_factory) -> Path:
    """mobilenet_v1_0.25_128 as an fp16 .mlpackage, converted once for this module."""
    pytest.importorskip("coremltools", reason="coremltools is not installed")
    from mbdeploy.convert import ConvertRequest, convert_model

    out = tmp_path_factory.mktemp("coreml-models")
    convert_model(ConvertRequest(0.25, 128, out_dir=out, formats=["coreml"], precisions=["fp16"]))
    return out


def test_the_pushed_mlpackage_opens_where_the_app_reads_it(tmp_path, mlpackage):
    import asyncio

    import coremltools as ct

    from mbdeploy.testing.afc_folder import folder_afc
    from mbdeploy.testing.ios_phone import pmd3_command

    [package] = mlpackage.rglob("*.mlpackage")
    container = tmp_path / "container"
    (container / "Documents").mkdir(parents=True)
    remote = f"Documents/models/0a1b2c3d/{package.name}"
    path, params = pmd3_command(ios.pmd_push(UDID, package, remote)[1:])
    plan = coreml_app.build_plan("r", {remote.removeprefix("Documents/"): 1})

    async def push(destination: str) -> None:
        afc = folder_afc(container)
        await afc.push(str(params["local_file"]), destination, progress_bar=False)  # the package's own push

    asyncio.run(push(params["remote_file"]))
    where_the_app_looks = container / "Documents" / plan["models"][0]["path"]
    model = ct.models.MLModel(str(where_the_app_looks), skip_model_load=True)
    assert model.get_spec().description.input[0].name
    assert (where_the_app_looks / "Manifest.json").is_file()
    # Naming the folder in the destination (what mbdeploy did before) nests it one level too deep.
    asyncio.run(push("/Documents/old/" + package.name))
    assert (container / "Documents/old" / package.name / package.name / "Manifest.json").is_file()
    assert not (container / "Documents/old" / package.name / "Manifest.json").exists()


# --- the plan and the app's results ------------------------------------------------------
def test_build_plan_names_exact_files():
    plan = coreml_app.build_plan("run-1", {"models/0a1b/m.mlpackage": 1234}, runs=10, warmup=2,
                                 compute_units=["cpuOnly"])
    assert plan == {"schema": "mbdeploy.coreml_app/3", "run_id": "run-1", "runs": 10, "warmup": 2,
                    "schedule": "one_by_one",
                    "compute_units": ["cpuOnly"], "models": [{"path": "models/0a1b/m.mlpackage", "bytes": 1234}]}
    with pytest.raises(InvalidInput, match="allowed: cpuOnly, cpuAndGPU, cpuAndNeuralEngine, all"):
        coreml_app.build_plan("r", {}, compute_units=["npu"])
    with pytest.raises(InvalidInput, match="not a Core ML model"):
        coreml_app.build_plan("r", {"m.tflite": 1})
    with pytest.raises(InvalidInput, match="relative to the app's Documents"):
        coreml_app.build_plan("r", {"../x.mlpackage": 1})
    with pytest.raises(InvalidInput, match="runs must be >= 1"):
        coreml_app.build_plan("r", {}, runs=0)
    with pytest.raises(InvalidInput, match="unknown schedule 'interleaved'; allowed: one_by_one, round_robin"):
        coreml_app.build_plan("r", {}, schedule="interleaved")


def test_parse_app_results_fixture():
    results = coreml_app.parse_app_results(app_results())
    assert [(r.status, r.compute_units) for r in results.runs] == [
        ("ok", "cpuOnly"), ("ok", "cpuAndNeuralEngine"), ("failed", "all")]
    assert results.device["model"] == "iPhone15,2"
    ok = coreml_app.outcome_from_run(results.runs[0], results.device)
    assert ok.samples_ms == [1.25, 1.21, 1.15, 1.31, 1.17] and ok.init_ms == 88.2 and ok.throttle_reasons == []
    assert ok.extra["compile_ms"] == 412.5 and ok.extra["thermal_states"] == ["nominal"]
    hot = coreml_app.outcome_from_run(results.runs[1])
    assert hot.throttle_reasons == ["the app saw thermal state serious"]
    with pytest.raises(RunnerError, match="failed with all: model arrived incomplete: 917504 of 1835008"):
        coreml_app.outcome_from_run(results.runs[2])


def _mutated(change) -> str:
    document = json.loads(app_results())
    change(document)
    return json.dumps(document)


@pytest.mark.parametrize("text, message", [
    ('{"schema": "mbdeploy.coreml_app/3", "runs": [', "not JSON"),
    (json.dumps({"schema": "mbdeploy.coreml_app/2", "runs": []}), "not the benchmark app's output"),
    (json.dumps({"schema": "mbdeploy.coreml_app/3"}), "no runs list"),
    (json.dumps({"schema": "mbdeploy.coreml_app/3", "runs": [], "error": "bad plan: unknown compute units"}),
     "could not run: bad plan"),
    (_mutated(lambda d: d.pop("schedule")), "schedule must be one of one_by_one, round_robin, got None"),
    (_mutated(lambda d: d["runs"][0].pop("model")), "run 0: needs a model path"),
    (_mutated(lambda d: d["runs"][0].update(compute_units="npu")), "run 0: needs a model path and compute_units"),
    (_mutated(lambda d: d["runs"][1].update(status="maybe")), "run 1: status must be ok or failed"),
    (_mutated(lambda d: d["runs"][0].update(samples_ms=[])), "status ok but no samples_ms"),
    (_mutated(lambda d: d["runs"][0].update(samples_ms=[1.0, -2.0])), "non-negative numbers"),
    (_mutated(lambda d: d["runs"][0].update(load_ms="fast")), "load_ms and first_inference_ms"),
    (_mutated(lambda d: d["runs"][0].update(thermal_states=["hot"])), "thermal_states must be a list of"),
])
def test_invalid_app_output_is_rejected_clearly(text, message):
    with pytest.raises(ResultsError, match=message):
        coreml_app.parse_app_results(text)


def test_coreml_app_runner_config_and_device_kind(tmp_path):
    from mbdeploy.devices.local import LocalDevice
    from mbdeploy.runners.base import TimingOptions

    runner = coreml_app.CoreMLAppRunner(TimingOptions(runs=None, warmup_runs=3), compute_units="cpuAndGPU")
    assert runner.config() == {"name": "coreml_app", "compute_units": "cpuAndGPU", "delegate": "cpuAndGPU",
                               "threads": None, "warmup_runs": 3, "runs": 50}
    with pytest.raises(RunnerError, match="needs an iPhone or iPad; local is a local device"):
        runner.prepare(LocalDevice(workdir=tmp_path / "wd"))
    with pytest.raises(InvalidInput, match="takes no delegate option"):
        coreml_app.CoreMLAppRunner(TimingOptions(), delegate="gpu")


# --- the stand-in phone: real CLI parsing, real AFC copies, the app played from its plan -----
def _write_usbmux(path: Path, version: str) -> Path:
    entries = json.loads((FIXTURES / "usbmux-list.json").read_text())
    for entry in entries:
        if entry["UniqueDeviceID"] == UDID:
            entry["ProductVersion"] = version
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture
def fake_phone(tmp_path, monkeypatch):
    from mbdeploy.testing.ios_phone import PhoneServer

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "pymobiledevice3"
    tool.write_text(f"#!{sys.executable}\nimport sys\nfrom mbdeploy.testing.ios_phone import client_main\n"
                    "sys.exit(client_main())\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    container = tmp_path / "container"
    (container / "Documents").mkdir(parents=True)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("FAKE_IOS_CONTAINER", str(container))
    monkeypatch.setenv("FAKE_IOS_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("FAKE_IOS_USBMUX", str(_write_usbmux(tmp_path / "usbmux.json", "17.5.1")))
    monkeypatch.setenv("FAKE_IOS_SAMPLES", json.dumps(SAMPLES))
    monkeypatch.setenv("MBDEPLOY_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.chdir(tmp_path)
    with PhoneServer(tmp_path / "phone.sock") as server:
        monkeypatch.setenv("FAKE_IOS_SOCKET", str(server.path))
        monkeypatch.setenv("USBMUXD_SOCKET_ADDRESS", str(server.path))  # a socket is there: discovery asks the tool
        yield tmp_path


def _calls(folder: Path) -> list[list[str]]:
    return [json.loads(line) for line in (folder / "calls.jsonl").read_text().splitlines()]


def _plans(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "calls-plans.jsonl").read_text().splitlines()]


def _sweep(fake_phone: Path, models: Path, compute_units=("all",), runs: int = 3, check_outputs: bool = False) -> list[dict]:
    from mbdeploy.bench import BenchOptions, collect_artifacts, run_sweep
    from mbdeploy.records.store import RunFolder
    from mbdeploy.runners.base import TimingOptions

    artifacts = collect_artifacts([models], formats=["coreml"])
    [device] = ios.discover(tool=ios.PYMOBILEDEVICE3)
    folder = RunFolder.create(fake_phone / "results", {})
    options = BenchOptions(timing=TimingOptions(runs=runs, warmup_runs=1), check_outputs=check_outputs,
                           runner_options={"poll_s": 0.05, "compute_units": list(compute_units)})
    return run_sweep([device], [device.info().to_dict()], artifacts, folder, options)


def test_an_app_that_saw_serious_is_a_throttled_record(fake_phone, mlpackage, monkeypatch):
    from mbdeploy.records.store import read_records

    monkeypatch.setenv("FAKE_IOS_THERMAL", json.dumps(["nominal", "fair", "serious"]))
    [record] = _sweep(fake_phone, mlpackage)
    [run] = (fake_phone / "results").iterdir()
    [stored] = read_records(run / "results.jsonl")
    assert stored == record and stored["status"] == "ok"
    assert stored["throttled"] is True
    assert stored["thermal"]["throttle_reasons"] == ["the app saw thermal state serious"]
    assert stored["runner_extra"]["thermal_states"] == ["nominal", "fair", "serious"]
    # The host computes the statistics once, from the app's raw samples.
    assert stored["samples_ms"] == [2.5, 2.25, 2.75] and stored["latency_ms"] == summarize([2.5, 2.25, 2.75])


def test_a_cool_run_is_not_throttled_and_the_plan_names_the_pushed_package(fake_phone, mlpackage):
    records = _sweep(fake_phone, mlpackage, compute_units=("cpuOnly", "cpuAndNeuralEngine"))
    assert [(r["runner"]["compute_units"], r["status"], r["throttled"]) for r in records] == [
        ("cpuOnly", "ok", False), ("cpuAndNeuralEngine", "ok", False)]
    plans = _plans(fake_phone)
    assert [p["compute_units"] for p in plans] == [["cpuOnly"], ["cpuAndNeuralEngine"]]
    [package] = mlpackage.rglob("*.mlpackage")
    [model] = plans[0]["models"]  # exactly the file to time, by its content-named folder
    assert model["path"] == f"models/{records[0]['artifact']['sha256'][:16]}/{package.name}"
    assert model["bytes"] == records[0]["artifact"]["bytes"]
    pushes = [c for c in _calls(fake_phone) if c[:2] == ["apps", "push"] and c[-2] == str(package)]
    assert pushes and all(c[-1] == "/Documents/" + model["path"].rsplit("/", 1)[0] for c in pushes)  # the parent
    documents = fake_phone / "container" / "Documents"
    assert not list((documents / "models").rglob("*.mlpackage"))  # removed after each run


def test_check_outputs_runs_the_plans_probes_in_the_app_and_wrong_scores_fail(fake_phone, mlpackage, monkeypatch):
    # The stand-in app computes the scores with the host's Core ML reference executor (Core ML is macOS/iOS only).
    [record] = _sweep(fake_phone, mlpackage, compute_units=("cpuAndNeuralEngine",), check_outputs=True)
    numerics = record["numerics"]
    assert record["status"] == "ok" and numerics["passed"] is True and numerics["probes"] == 8, numerics["notes"]
    probing, timing = _plans(fake_phone)
    assert probing["probes"]["count"] == 8 and probing["probes"]["shape"] == [128, 128, 3]
    assert probing["probes"]["bytes"] == 8 * 128 * 128 * 3 * 4 and probing["compute_units"] == ["cpuAndNeuralEngine"]
    assert "probes" not in timing and timing["runs"] == 3  # the timed launch runs no probes
    documents = fake_phone / "container" / "Documents"
    assert not list(documents.rglob("*.f32")) and not list(documents.rglob("*.npy"))  # nothing left on the phone

    monkeypatch.setenv("FAKE_IOS_APP", "wrong_outputs")  # a compute unit computing wrong answers fast
    [record] = _sweep(fake_phone, mlpackage, check_outputs=True)
    assert record["status"] == "ok" and record["latency_ms"] is not None  # the timing is kept
    assert record["numerics"]["passed"] is False and record["numerics"]["top1_agreement"] < 1.0
    assert record["numerics"]["failures"] and record["numerics"]["cosine"] < 0.99


def test_a_model_that_arrives_incomplete_is_a_failed_record(fake_phone, mlpackage, monkeypatch):
    real_push = ios.IosDevice.push

    def push_then_lose_a_file(self, local, remote):  # the copy is cut short on the way to the phone
        real_push(self, local, remote)
        if remote.endswith(".mlpackage"):
            next(p for p in (fake_phone / "container" / remote).rglob("*") if p.is_file()).unlink()

    monkeypatch.setattr(ios.IosDevice, "push", push_then_lose_a_file)
    [record] = _sweep(fake_phone, mlpackage)
    assert record["status"] == "failed" and "model arrived incomplete" in record["error"]
    assert record["runner"]["name"] == "coreml_app" and record["latency_ms"] is None


def _phone(version: str = "17.5.1") -> ios.IosDevice:
    return ios.IosDevice(DeviceInfo(kind="ios", id=UDID, os=f"iOS {version}"), ios.PYMOBILEDEVICE3)


def _run_app(device: ios.IosDevice, timeout: float = 5) -> coreml_app.AppResults:
    return coreml_app.run_app(device, coreml_app.build_plan("run-9", {}), timeout=timeout, poll_s=0.05)


@pytest.mark.parametrize("version, env, message", [
    ("16.7.8", {}, "launches over lockdown: .*mounter auto-mount --udid"),
    ("17.2", {}, "start `sudo .*remote tunneld` in another terminal"),
])
def test_a_launch_that_cannot_reach_the_phone_says_what_to_start(fake_phone, monkeypatch, version, env, message):
    monkeypatch.setenv("FAKE_IOS_USBMUX", str(_write_usbmux(fake_phone / "usbmux.json", version)))
    with pytest.raises(DeviceError, match=message):
        _run_app(_phone(version))


@pytest.mark.parametrize("version, env", [("16.7.8", {"FAKE_IOS_DDI": "1"}), ("17.2", {"FAKE_IOS_TUNNELD": "1"}),
                                          ("17.5.1", {})])
def test_each_ios_version_launches_over_its_path(fake_phone, monkeypatch, version, env):
    monkeypatch.setenv("FAKE_IOS_USBMUX", str(_write_usbmux(fake_phone / "usbmux.json", version)))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert _run_app(_phone(version)).run_id == "run-9"


def test_an_app_that_never_finishes_and_a_stale_marker(fake_phone, monkeypatch):
    monkeypatch.setenv("FAKE_IOS_APP", "hang")
    # An earlier run's marker and results are still in the container: not taken for this run's.
    documents = fake_phone / "container" / "Documents"
    (documents / "mbdeploy-done").write_text("an-earlier-run\n")
    (documents / "mbdeploy-results.json").write_text(app_results())
    with pytest.raises(DeviceError, match="did not finish in 0 s"):
        _run_app(_phone(), timeout=0.2)


def test_a_results_file_cut_short_is_rejected(fake_phone, monkeypatch):
    monkeypatch.setenv("FAKE_IOS_APP", "killed")
    with pytest.raises(ResultsError, match="mbdeploy-results.json is not JSON"):
        _run_app(_phone())


def test_cli_bench_iphone_times_the_mlpackage_in_the_app(fake_phone, mlpackage):
    from support.cli import harness_env, mbdeploy

    from mbdeploy.manifest import load_manifest

    env = {**harness_env(fake_phone), **{k: v for k, v in os.environ.items() if k.startswith("FAKE_IOS_")},
           "PATH": os.environ["PATH"]}
    args = ["bench", "--device", "iphone", "--models", str(mlpackage), "--runs", "7", "--warmup", "1",
            "--compute-units", "cpuOnly,all", "--json", "--adb-host", "192.0.2.1:5037"]
    result = mbdeploy(args, cwd=fake_phone, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["failed"] == 0
    [manifest_dir] = mlpackage.iterdir()
    [entry] = [a for a in load_manifest(manifest_dir)["artifacts"] if a["format"] == "coreml"]
    [run] = (fake_phone / "results").iterdir()
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert sorted(r["runner"]["compute_units"] for r in records) == ["all", "cpuOnly"]
    for record in records:
        assert (record["device"]["kind"], record["device"]["id"]) == ("ios", UDID)
        assert (record["artifact"]["sha256"], record["artifact"]["bytes"]) == (entry["sha256"], entry["bytes"])
        assert record["samples_ms"] == [SAMPLES[i % len(SAMPLES)] for i in range(7)]
    bad = mbdeploy([*args[:-5], "--compute-units", "npu", "--adb-host", "192.0.2.1:5037"], cwd=fake_phone, env=env)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1] == (
        "Error: unknown compute units 'npu'; allowed: cpuOnly, cpuAndGPU, cpuAndNeuralEngine, all")


def test_cli_profile_iphone_times_each_layer_in_the_app_round_robin(fake_phone, mlpackage, small_models):
    from support.cli import harness_env, mbdeploy

    from mbdeploy.layer_accounting import profile_layers
    from mbdeploy.records.schema import validate_layer_record

    layers = profile_layers(ModelSpec(0.25, 128))
    env = {**harness_env(fake_phone), **{k: v for k, v in os.environ.items() if k.startswith("FAKE_IOS_")},
           "PATH": os.environ["PATH"], "FAKE_IOS_MODEL_SAMPLES": json.dumps({"12_Conv2d_6_pointwise.mlpackage": [7.5]})}
    args = ["profile", "--device", "iphone", "--models", str(mlpackage), "--runs", "4", "--warmup", "1",
            "--compute-units", "cpuOnly", "--json", "--adb-host", "192.0.2.1:5037"]
    result = mbdeploy(args, cwd=fake_phone, env=env)
    assert result.returncode == 0, result.stderr
    [summary] = json.loads(result.stdout)["profiles"]
    assert (summary["method"], summary["format"], summary["precision"]) == ("single_layer", "coreml", "fp16")
    assert [layer["name"] for layer in summary["layers"]] == [layer.name for layer in layers]
    assert summary["whole_ms"]["median"] == summarize(SAMPLES[:4])["median"]
    # The second launch's plan lists every single-layer package, in layer order, to be timed round robin.
    whole_plan, layer_plan = _plans(fake_phone)
    assert whole_plan["schedule"] == "one_by_one" and len(whole_plan["models"]) == 1
    assert layer_plan["schedule"] == "round_robin" and layer_plan["compute_units"] == ["cpuOnly"]
    assert [m["path"].rsplit("/", 1)[1] for m in layer_plan["models"]] == [
        f"{layer.index:02d}_{layer.name}.mlpackage" for layer in layers]
    [run] = (fake_phone / "results").iterdir()
    records = [json.loads(line) for line in (run / "layers.jsonl").read_text().splitlines()]
    for record, layer, planned in zip(records, layers, layer_plan["models"]):
        validate_layer_record(record)
        assert (record["method"], record["schedule"], record["artifact"]["format"]) == (
            "single_layer", "round_robin", "coreml")
        assert record["layer"]["name"] == layer.name and record["model"]["bytes"] == planned["bytes"]
        assert record["model"]["inputs"][0]["dtype"] == "fp16"
        # Each layer's figure is its own package's entry in the app's results.
        wanted = [7.5] * 4 if layer.name == "Conv2d_6_pointwise" else SAMPLES[:4]
        assert record["latency_ms"]["median"] == summarize(wanted)["median"] and record["latency_ms"]["count"] == 4
    assert len(records) == len(layers)
    assert not list((fake_phone / "container" / "Documents" / "models").rglob("*.mlpackage"))  # all removed after
    # What it cannot profile: one line naming the formats it profiles on which device kinds.
    allowed = ("it profiles tflite (any precision) on local, ssh and Android devices and AI Hub; "
               "coreml (fp32, fp16) on iOS devices, through the app")
    for device, models, what in [("iphone", small_models, "tflite dynamic, tflite fp16, tflite fp32, tflite int8 "
                                  "on ios devices"), ("local", mlpackage, "coreml fp16 on local devices")]:
        bad = mbdeploy(["profile", "--device", device, "--models", str(models), "--adb-host", "192.0.2.1:5037"],
                       cwd=fake_phone, env=env)
        assert bad.returncode != 0 and "Traceback" not in bad.stderr, bad.stderr
        assert bad.stderr.strip().splitlines()[-1] == f"Error: profile cannot time the layers of {what}; {allowed}"


def test_profile_passes_over_core_ml_precisions_it_cannot_cut(tmp_path):
    from mbdeploy.bench.artifacts import Artifact
    from mbdeploy.devices.base import DeviceInfo
    from mbdeploy.profile.sweep import ProfileOptions, profilable

    phone = ios.IosDevice(DeviceInfo(kind="ios", id=UDID), ios.PYMOBILEDEVICE3)
    made = {p: Artifact(f"m_{p}", "coreml", p, tmp_path / f"m_{p}.mlpackage", "0" * 64, 1) for p in
            ("fp16", "int8", "w8a8")}
    with pytest.warns(UserWarning, match=r"passes over 2 artifact\(s\) \(coreml int8, coreml w8a8\)"):
        assert profilable(list(made.values()), [phone], ProfileOptions()) == [made["fp16"]]
    with pytest.raises(InvalidInput, match="cannot time the layers of coreml int8 on ios devices; it profiles"):
        profilable([made["int8"]], [phone], ProfileOptions())


def test_missing_app_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidInput, match="no app at .*build ios_harness"):
        ios.IosDevice(DeviceInfo(kind="ios", id=UDID), ios.DEVICECTL).install_app(tmp_path / "MBBench.app")


# --- the Swift harness: parsed, scope-checked, and in step with the host ------------------
HARNESS = ROOT / "ios_harness"
SWIFT_FILES = sorted(HARNESS.rglob("*.swift"))


def _swift_parser():
    tree_sitter = pytest.importorskip("tree_sitter", reason="tree-sitter is not installed (test extra)")
    swift = pytest.importorskip("tree_sitter_swift", reason="tree-sitter-swift is not installed (test extra)")
    return tree_sitter.Parser(tree_sitter.Language(swift.language()))


def _walk(node):
    yield node
    for child in node.children:
        yield from _walk(child)


def _swift_syntax_errors(source: bytes) -> list[str]:
    return [f"line {n.start_point[0] + 1}: {'missing ' + n.type if n.is_missing else 'syntax error'}"
            for n in _walk(_swift_parser().parse(source).root_node) if n.type == "ERROR" or n.is_missing]


@pytest.mark.parametrize("path", SWIFT_FILES, ids=lambda p: str(p.relative_to(HARNESS)))
def test_swift_sources_parse(path):
    assert _swift_syntax_errors(path.read_bytes()) == []


def test_swift_syntax_check_is_live():
    assert _swift_syntax_errors(b"func f() {\n  let x = [1, 2\n}\n")


# A name is in scope when it is bound in an enclosing function, closure, block or case (anywhere in
# it: declaration order is not checked), is a member of the enclosing type (or its extensions),
# a top-level declaration, or one of the lower-case globals below that Swift, Foundation and
# CoreVideo give every file. Capitalised names (types, framework constants) are not checked.
SCOPES = ("function_declaration", "init_declaration", "lambda_literal", "computed_property", "catch_block",
          "for_statement", "if_statement", "guard_statement", "statements", "switch_entry")
GLOBALS = {"print", "exit", "sin", "memset", "uname", "sysctlbyname", "max", "min", "abs", "zip", "stride",
           "withUnsafeBytes", "fatalError", "precondition", "assert", "type", "kCFAllocatorDefault",
           "kCVReturnSuccess", "utsname", "_", "error", "newValue", "oldValue"}
NOT_REFERENCES = ("navigation_suffix", "value_argument_label", "parameter", "lambda_parameter", "function_declaration",
                  "enum_entry", "enum_type_parameters", "pattern", "class_declaration", "identifier", "directive",
                  "type_identifier")


def _fields(node, field):
    return [c for i, c in enumerate(node.children) if node.field_name_for_child(i) == field]


def _bound(node) -> list[str]:
    """Names one node binds: parameters, let/var patterns, if/guard let, for items, closure and case bindings."""
    names = []
    if node.type in ("parameter", "lambda_parameter"):
        named = [c for c in _fields(node, "name") if c.type == "simple_identifier"]
        names += [named[-1].text.decode()] if named else []  # the internal name
    names += [c.text.decode() for c in _fields(node, "bound_identifier")]
    patterns = {"for_statement": _fields(node, "item"), "property_declaration": _fields(node, "name"),
                "switch_pattern": [node]}.get(node.type, [])
    for pattern in patterns:
        names += [n.text.decode() for n in _walk(pattern) if n.type == "simple_identifier"]
    return names


def swift_out_of_scope(sources: dict[str, bytes]) -> list[str]:
    """`file:line: name` for every lower-case identifier used where no declaration of it is visible."""
    parser = _swift_parser()
    trees = {name: parser.parse(source) for name, source in sources.items()}
    members: dict[str, set[str]] = {}
    module = set(GLOBALS)
    for tree in trees.values():
        for node in _walk(tree.root_node):
            if node.type == "class_declaration":  # struct, class, enum and extension alike
                found = members.setdefault(_fields(node, "name")[0].text.decode(), set())
                for body in _fields(node, "body"):
                    for member in body.children:
                        if member.type in ("function_declaration", "class_declaration", "enum_entry"):
                            found |= {c.text.decode() for c in _fields(member, "name")}
                        found |= set(_bound(member))
        module |= {c.text.decode() for node in tree.root_node.children if node.type == "function_declaration"
                   for c in _fields(node, "name")}
    problems = []
    for file, tree in trees.items():
        top = {name for node in tree.root_node.children for name in _bound(node)}
        for node in _walk(tree.root_node):
            name, parent = node.text.decode(), node.parent
            if node.type != "simple_identifier" or name[:1].isupper() or name.startswith("$"):
                continue
            if parent.type in NOT_REFERENCES or (parent.type == "prefix_expression" and parent.children[0].text == b"."):
                continue  # a label, a declaration, a member after a dot, or an implicit member (.cpuOnly)
            if any(c.id == node.id for field in ("bound_identifier", "name") for c in _fields(parent, field)):
                continue
            visible, ancestor = module | top, parent
            while ancestor is not None:
                if ancestor.type in SCOPES:
                    visible |= {bound for inner in _walk(ancestor) for bound in _bound(inner)}
                if ancestor.type == "class_declaration":
                    visible |= members.get(_fields(ancestor, "name")[0].text.decode(), set())
                ancestor = ancestor.parent
            if name not in visible:
                problems.append(f"{file}:{node.start_point[0] + 1}: {name}")
    return problems


def test_swift_has_no_identifier_used_out_of_scope():
    sources = {str(path.relative_to(HARNESS)): path.read_bytes() for path in SWIFT_FILES}
    assert swift_out_of_scope(sources) == []


def test_swift_scope_check_is_live():
    # The app's bug of issue 12: `models.count` in a static function with no `models` in scope.
    app = (HARNESS / "App" / "MBBenchApp.swift").read_text()
    broken = app.replace("over \\(models.count) model(s)", "over \\(planned.count) model(s)")
    assert broken != app
    sources = {str(path.relative_to(HARNESS)): path.read_bytes() for path in SWIFT_FILES}
    sources["App/MBBenchApp.swift"] = broken.encode()
    assert [problem.rsplit(": ", 1)[1] for problem in swift_out_of_scope(sources)] == ["planned"]
    assert swift_out_of_scope({"a.swift": b"struct A {\n  static func f() -> Int { let n = 1\n return n + m }\n}\n"}) \
        == ["a.swift:3: m"]


def test_harness_and_host_agree_on_names():
    # The app writes what the host waits for and reads; a rename on one side must fail here.
    sources = "\n".join(path.read_text() for path in SWIFT_FILES)
    for name in (coreml_app.APP_SCHEMA, coreml_app.RESULTS_FILE, coreml_app.DONE_FILE, coreml_app.PLAN_FILE,
                 *coreml_app.COMPUTE_UNITS, *coreml_app.THERMAL_STATES[:4]):
        assert f'"{name}"' in sources, f"{name} is not in the Swift harness"
    for name in coreml_app.SCHEDULES:
        assert f'"{name}"' in sources, f"the schedule {name} is not in the Swift harness"
    for key in ("model", "compute_units", "status", "error", "compile_ms", "load_ms", "first_inference_ms",
                "samples_ms", "thermal_states", "runs", "run_id", "device", "path", "bytes", "models", "warmup",
                "probes", "count", "shape", "probe_outputs", "schedule"):
        assert f'"{key}"' in sources, f"the Swift harness does not use the key {key}"
    assert f"PRODUCT_BUNDLE_IDENTIFIER: {ios.BUNDLE_ID}" in (HARNESS / "project.yml").read_text()


def test_the_app_declares_file_sharing_in_its_info_plist():
    import plistlib

    # Xcode does not carry INFOPLIST_KEY_UIFileSharingEnabled into a generated Info.plist: it is in the file.
    info = plistlib.loads((HARNESS / "Info.plist").read_bytes())
    assert info["UIFileSharingEnabled"] is True and info["LSSupportsOpeningDocumentsInPlace"] is True
    project = (HARNESS / "project.yml").read_text()
    assert "INFOPLIST_FILE: Info.plist" in project and "INFOPLIST_KEY_UIFileSharingEnabled:" not in project


def test_the_stand_in_app_refuses_a_probes_entry_the_harness_refuses(tmp_path):
    # Plan.swift throws badPlan for these, and the app writes only the error document; a stand-in that
    # ran them would let a host-side mistake in the plan's probes pass the tests.
    from mbdeploy.testing.ios_phone import play_app

    documents = tmp_path / "Documents"
    documents.mkdir()
    env = {"FAKE_IOS_LOG": str(tmp_path / "calls.jsonl")}
    good = {"path": "models/p.f32", "count": 2, "shape": [4, 4, 3], "bytes": 2 * 4 * 4 * 3 * 4}
    for change in ({"path": "/tmp/p.f32"}, {"path": "models/../../p.f32"}, {"count": 0}, {"shape": []},
                   {"shape": [4, 4, 0]}, {"bytes": good["bytes"] - 4}, {"count": "2"}):
        plan = {"schema": coreml_app.APP_SCHEMA, "run_id": "r", "runs": 1, "warmup": 0, "compute_units": ["all"],
                "models": [{"path": "models/m.mlpackage", "bytes": None}], "probes": good | change}
        (documents / "mbdeploy-plan.json").write_text(json.dumps(plan))
        play_app(env, documents)
        document = json.loads((documents / "mbdeploy-results.json").read_text())
        assert document["runs"] == [] and "probes need a relative path" in document["error"], change
