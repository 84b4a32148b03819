"""iPhones and iPads: the host side of the Core ML benchmark app (`ios_harness/`).

An iPhone has no shell to run a benchmark binary in, so the device side is an
app that only loads, times and writes JSON (STYLE.md section 6). The host:

1. writes a plan (`mbdeploy-plan.json`: runs, warm-up, compute units, and the
   artifact block of each model from its manifest) and copies it with the
   models into the app's Documents folder;
2. launches the app, which benchmarks every `.mlpackage`/`.mlmodelc` it finds
   there and writes `mbdeploy-results.json`, then `mbdeploy-done`;
3. copies the results back once the marker names this run, and validates
   every record against the schema before anyone stores it: what comes off
   a device is untrusted.

Two tools drive a phone: `xcrun devicectl` (Xcode 15+, macOS) and
`pymobiledevice3` (Linux or macOS; iOS 17+ needs its tunnel for launching,
see the README). Every command is built by a pure function returning an argv
list, so the tests check them without a phone; nothing passes through a shell.
"""

from __future__ import annotations

import importlib.util
import json
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from mbdeploy.atomic import write_json
from mbdeploy.devices.base import Device, DeviceInfo, SensorReading, ShellResult, device_name_key, quote_argv
from mbdeploy.errors import DeviceError, InvalidInput, ResultsError

BUNDLE_ID = "org.mbdeploy.bench"  # ios_harness/project.yml
APP_SCHEMA = "mbdeploy.coreml_app/1"
RUNNER_NAME = "coreml_app"
COMPUTE_UNITS = ("cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine", "all")

DOCUMENTS = "Documents"
PLAN_FILE = "mbdeploy-plan.json"
RESULTS_FILE = "mbdeploy-results.json"
DONE_FILE = "mbdeploy-done"  # the run id, written after the results: a half-written file is never read

DEVICECTL = "devicectl"
PYMOBILEDEVICE3 = "pymobiledevice3"

Run = Callable[..., subprocess.CompletedProcess]


# --- which tool ----------------------------------------------------------------
def available_tool() -> str | None:
    """`devicectl` on a Mac with Xcode 15+, else `pymobiledevice3` when installed, else None."""
    if sys.platform == "darwin" and shutil.which("xcrun"):
        found = subprocess.run(["xcrun", "--find", "devicectl"], capture_output=True, text=True)
        if found.returncode == 0:
            return DEVICECTL
    if shutil.which(PYMOBILEDEVICE3) or importlib.util.find_spec("pymobiledevice3") is not None:
        return PYMOBILEDEVICE3
    return None


def _pymobiledevice3() -> list[str]:
    # The console script when it is on PATH, else the module of this interpreter.
    return [PYMOBILEDEVICE3] if shutil.which(PYMOBILEDEVICE3) else [sys.executable, "-m", "pymobiledevice3"]


# --- commands: devicectl (macOS) -------------------------------------------------
def devicectl_list(json_output: Path) -> list[str]:
    return ["xcrun", "devicectl", "list", "devices", "--json-output", str(json_output)]


def devicectl_install(udid: str, app: Path) -> list[str]:
    return ["xcrun", "devicectl", "device", "install", "app", "--device", udid, str(app)]


def devicectl_launch(udid: str, bundle_id: str = BUNDLE_ID, arguments: Sequence[str] = ()) -> list[str]:
    argv = ["xcrun", "devicectl", "device", "process", "launch", "--device", udid, "--terminate-existing", bundle_id]
    return argv + ["--", *arguments] if arguments else argv


def _container(udid: str, bundle_id: str) -> list[str]:
    return ["--device", udid, "--domain-type", "appDataContainer", "--domain-identifier", bundle_id]


def devicectl_copy_to(udid: str, local: Path, remote: str, bundle_id: str = BUNDLE_ID) -> list[str]:
    return ["xcrun", "devicectl", "device", "copy", "to", *_container(udid, bundle_id),
            "--source", str(local), "--destination", remote]


def devicectl_copy_from(udid: str, remote: str, local: Path, bundle_id: str = BUNDLE_ID) -> list[str]:
    return ["xcrun", "devicectl", "device", "copy", "from", *_container(udid, bundle_id),
            "--source", remote, "--destination", str(local)]


# --- commands: pymobiledevice3 (Linux or macOS) --------------------------------------
def pmd_list(base: Sequence[str] = (PYMOBILEDEVICE3,)) -> list[str]:
    return [*base, "usbmux", "list", "--no-color"]


def pmd_install(udid: str, app: Path, base: Sequence[str] = (PYMOBILEDEVICE3,)) -> list[str]:
    return [*base, "apps", "install", "--udid", udid, str(app)]


def pmd_launch(udid: str, bundle_id: str = BUNDLE_ID, arguments: Sequence[str] = (),
               base: Sequence[str] = (PYMOBILEDEVICE3,)) -> list[str]:
    # `dvt launch` takes one string and splits it with shlex; quote each word
    # so an argument can never become two. Developer services on iOS 17+ go
    # through the tunnel (`remote tunneld`, run as root, see the README).
    return [*base, "developer", "dvt", "launch", "--tunnel", udid, "--kill-existing",
            quote_argv([bundle_id, *arguments])]


def pmd_push(udid: str, local: Path, remote: str, bundle_id: str = BUNDLE_ID,
             base: Sequence[str] = (PYMOBILEDEVICE3,)) -> list[str]:
    # The whole container is vended (a development-signed app allows it), so
    # remote paths start at its root, like devicectl's: `Documents/...`.
    return [*base, "apps", "push", "--udid", udid, bundle_id, str(local), "/" + remote.lstrip("/")]


def pmd_pull(udid: str, remote: str, local: Path, bundle_id: str = BUNDLE_ID,
             base: Sequence[str] = (PYMOBILEDEVICE3,)) -> list[str]:
    return [*base, "apps", "pull", "--udid", udid, bundle_id, "/" + remote.lstrip("/"), str(local)]


def pmd_remove(udid: str, remote: str, bundle_id: str = BUNDLE_ID,
               base: Sequence[str] = (PYMOBILEDEVICE3,)) -> list[str]:
    # `apps rm` (pymobiledevice3 11.x) removes folders recursively, so an .mlpackage goes whole.
    return [*base, "apps", "rm", "--udid", udid, bundle_id, "/" + remote.lstrip("/")]


# --- device lists ----------------------------------------------------------------
def parse_devicectl_devices(data: dict) -> list[DeviceInfo]:
    """Physical iOS devices from `devicectl list devices --json-output`."""
    try:
        devices = data["result"]["devices"]
    except (KeyError, TypeError):
        raise DeviceError("devicectl printed no result.devices list; is Xcode 15 or later selected?") from None
    infos = []
    for entry in devices:
        hardware = entry.get("hardwareProperties") or {}
        properties = entry.get("deviceProperties") or {}
        connection = entry.get("connectionProperties") or {}
        if hardware.get("platform") != "iOS" or hardware.get("reality", "physical") != "physical":
            continue
        udid = hardware.get("udid") or entry.get("identifier")
        if not udid:
            continue
        paired = connection.get("pairingState") in (None, "paired")
        connected = connection.get("tunnelState") in (None, "connected")
        infos.append(DeviceInfo(
            kind="ios", id=udid, model=hardware.get("marketingName") or hardware.get("productType"),
            soc=hardware.get("productType"), abi=(hardware.get("cpuType") or {}).get("name"),
            os=f"iOS {properties['osVersionNumber']}" if properties.get("osVersionNumber") else None,
            state="online" if paired and connected else ("unpaired" if not paired else "offline"),
            extra={"name": properties.get("name"), "tool": DEVICECTL, "devicectl_id": entry.get("identifier"),
                   "developer_mode": properties.get("developerModeStatus")},
        ))
    return infos


def parse_usbmux_devices(data: list) -> list[DeviceInfo]:
    """Devices from `pymobiledevice3 usbmux list` (lockdown short info, one dict each)."""
    if not isinstance(data, list):
        raise DeviceError("pymobiledevice3 usbmux list did not print a JSON list")
    infos = []
    for entry in data:
        if not isinstance(entry, dict):
            continue
        udid = entry.get("UniqueDeviceID") or entry.get("Identifier")
        if not udid or entry.get("DeviceClass") not in (None, "iPhone", "iPad", "iPod"):
            continue
        infos.append(DeviceInfo(
            kind="ios", id=udid, model=entry.get("ProductType"), soc=entry.get("ProductType"), abi="arm64",
            os=f"iOS {entry['ProductVersion']}" if entry.get("ProductVersion") else None,
            extra={"name": entry.get("DeviceName"), "tool": PYMOBILEDEVICE3,
                   "connection": entry.get("ConnectionType"), "build": entry.get("BuildVersion")},
        ))
    return infos


# --- the plan and the app's results ---------------------------------------------------
def build_plan(run_id: str, artifacts: dict[str, dict], runs: int = 50, warmup: int = 5,
               compute_units: Sequence[str] = COMPUTE_UNITS) -> dict:
    """What the app reads: how long to run, and each model file's artifact block (from its manifest)."""
    unknown = [unit for unit in compute_units if unit not in COMPUTE_UNITS]
    if unknown or not compute_units:
        raise InvalidInput(f"unknown compute units {unknown or '(none)'}; allowed: {', '.join(COMPUTE_UNITS)}")
    if runs < 1 or warmup < 0:
        raise InvalidInput(f"runs must be >= 1 and warm-up >= 0, got runs={runs}, warmup={warmup}")
    for name, artifact in artifacts.items():
        if artifact.get("format") != "coreml":
            raise InvalidInput(f"{name} is {artifact.get('format')!r}; the iOS app runs only coreml artifacts")
    return {"schema": APP_SCHEMA, "run_id": run_id, "runs": runs, "warmup": warmup,
            "compute_units": list(compute_units), "artifacts": artifacts}


def parse_app_results(text: str, device: DeviceInfo | None = None, source: str = RESULTS_FILE) -> list[dict]:
    """Records from the app's JSON, each validated against the record schema.

    The host keeps the app's raw samples and recomputes `latency_ms` from them
    with the same statistics as every other runner; the device's id is the
    host's (the app cannot read its UDID).
    """
    from mbdeploy.records.schema import validate_record
    from mbdeploy.records.stats import summarize

    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{source} is not JSON ({exc.msg} at line {exc.lineno}); the app may have been killed") from None
    if not isinstance(document, dict) or document.get("schema") != APP_SCHEMA:
        raise ResultsError(f"{source} is not the benchmark app's output (schema {APP_SCHEMA} expected)")
    if document.get("error"):
        raise ResultsError(f"the benchmark app could not run: {document['error']}")
    records = document.get("records")
    if not isinstance(records, list):
        raise ResultsError(f"{source} has no records list")
    parsed = []
    for index, record in enumerate(records):
        where = f"{source} record {index}"
        if not isinstance(record, dict):
            raise ResultsError(f"{where} is not an object")
        if device is not None:
            record["device"] = {**(record.get("device") or {}), "kind": "ios", "id": device.id,
                                "model": device.model or (record.get("device") or {}).get("model")}
        if (record.get("runner") or {}).get("name") != RUNNER_NAME:
            raise ResultsError(f"{where}: runner {(record.get('runner') or {}).get('name')!r}, expected {RUNNER_NAME!r}")
        if (record.get("artifact") or {}).get("format") != "coreml":
            raise ResultsError(f"{where}: artifact format must be coreml")
        if record.get("status") == "ok":
            samples = record.get("samples_ms")
            if not isinstance(samples, list) or not samples:
                raise ResultsError(f"{where}: status ok but no samples_ms")
            if not all(isinstance(s, (int, float)) and not isinstance(s, bool) and s >= 0 for s in samples):
                raise ResultsError(f"{where}: samples_ms must be non-negative numbers")
            record["latency_ms"] = summarize(samples)
        try:
            validate_record(record)
        except ResultsError as exc:
            raise ResultsError(f"{where}: {exc.message}") from None
        parsed.append(record)
    return parsed


def _pushed_artifact(name: str, local: Path) -> dict:
    """The plan's artifact block for a model the host copied: the app checks `bytes` on arrival."""
    from mbdeploy.manifest import artifact_digest

    size, digest = artifact_digest(local)
    return {"name": Path(name).stem, "format": "coreml", "precision": "unknown", "sha256": digest, "bytes": size,
            "macs": None, "params": None}


# --- the device ------------------------------------------------------------------
class IosDevice(Device):
    """An iPhone or iPad reached with devicectl or pymobiledevice3; the app does the timing."""

    kind = "ios"
    default_runner = "coreml_app"
    default_formats = ("coreml",)

    def __init__(self, info: DeviceInfo, tool: str, run: Run = subprocess.run) -> None:
        if tool not in (DEVICECTL, PYMOBILEDEVICE3):
            raise InvalidInput(f"unknown iOS tool {tool!r}; allowed: {DEVICECTL}, {PYMOBILEDEVICE3}")
        self._info = info
        self.tool = tool
        self._run = run
        self._pushed: dict[str, Path] = {}  # remote path -> the local file or folder copied there

    @property
    def id(self) -> str:
        return self._info.id

    def info(self) -> DeviceInfo:
        return self._info

    @property
    def workdir(self) -> str:
        return DOCUMENTS

    # Commands for this device, as argv lists.
    def install_argv(self, app: Path) -> list[str]:
        if self.tool == DEVICECTL:
            return devicectl_install(self.id, app)
        return pmd_install(self.id, app, base=_pymobiledevice3())

    def launch_argv(self, arguments: Sequence[str] = ()) -> list[str]:
        if self.tool == DEVICECTL:
            return devicectl_launch(self.id, BUNDLE_ID, arguments)
        return pmd_launch(self.id, BUNDLE_ID, arguments, base=_pymobiledevice3())

    def push_argv(self, local: Path, remote: str) -> list[str]:
        if self.tool == DEVICECTL:
            return devicectl_copy_to(self.id, local, remote)
        return pmd_push(self.id, local, remote, base=_pymobiledevice3())

    def pull_argv(self, remote: str, local: Path) -> list[str]:
        if self.tool == DEVICECTL:
            return devicectl_copy_from(self.id, remote, local)
        return pmd_pull(self.id, remote, local, base=_pymobiledevice3())

    def remove_argv(self, remote: str) -> list[str] | None:
        # devicectl has no documented way to delete a file in an app container: None.
        return pmd_remove(self.id, remote, base=_pymobiledevice3()) if self.tool == PYMOBILEDEVICE3 else None

    def match_keys(self) -> list[str]:
        """Names `--device` accepts: UDID, model, product type, the phone's name, and its family ('iphone')."""
        info = self._info
        keys = [info.id, info.model or "", info.soc or "", str(info.extra.get("name") or "")]
        # "iPhone 15 Pro" and "iPhone16,1" both belong to the family "iphone".
        keys += [match.group(0) for key in (info.model or "", info.soc or "")
                 if (match := re.match(r"i(Phone|Pad|Pod)", key, flags=re.IGNORECASE))]
        return list(dict.fromkeys(device_name_key(key) for key in keys if key))

    def matches(self, name: str) -> bool:
        return device_name_key(name) in self.match_keys()

    def _call(self, argv: list[str], what: str, timeout: float = 300) -> subprocess.CompletedProcess:
        try:
            done = self._run(argv, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise DeviceError(f"{argv[0]} is not installed; {what} needs it") from None
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{what} on {self.id} did not finish in {timeout:.0f} s") from None
        if done.returncode != 0:
            detail = (done.stderr or done.stdout or "").strip().splitlines()
            raise DeviceError(f"{what} on {self.id} failed: {detail[-1] if detail else f'exit {done.returncode}'}")
        return done

    # The Device interface.
    def push(self, local: Path, remote: str) -> None:
        # Whole arrival is checked on the device: the plan carries each model's
        # byte count and the app fails that model's record on a mismatch.
        self._call(self.push_argv(Path(local), remote), f"copying {Path(local).name} to the app")
        self._pushed[remote] = Path(local)

    def remove(self, remote: str) -> bool:
        """Delete a file or folder from the app's container; False when the tool cannot."""
        argv = self.remove_argv(remote)
        if argv is None:
            return False
        self._call(argv, f"removing {remote} from the app")
        self._pushed.pop(remote, None)
        return True

    def pull(self, remote: str, local: Path) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        self._call(self.pull_argv(remote, Path(local)), f"copying {remote} from the app")

    def shell(self, argv: list[str], timeout: float | None = None) -> ShellResult:
        raise DeviceError("iOS devices have no shell; mbdeploy drives the benchmark app (ios_harness) instead")

    def properties(self) -> dict[str, str]:
        info = self._info
        return {key: str(value) for key, value in
                {"model": info.model, "product_type": info.soc, "os": info.os, **info.extra}.items()
                if value is not None}

    def sensors(self) -> SensorReading:
        return SensorReading()  # iOS gives apps only a coarse thermal state; the app records it per run

    # The bench path.
    def install_app(self, app: Path) -> None:
        if not Path(app).exists():
            raise InvalidInput(f"no app at {app}; build ios_harness (see ios_harness/README.md)")
        self._call(self.install_argv(Path(app)), "installing the benchmark app", timeout=600)

    def bench(self, models: dict[str, Path], plan: dict, timeout: float = 1800, poll_s: float = 5.0) -> list[dict]:
        """Copy models and plan, launch the app, wait for it to finish, return validated records.

        `models` maps the file name the app will see to the local model
        (`.mlpackage` folder or `.mlmodelc`); `plan` comes from `build_plan`.
        """
        for name, path in models.items():
            if "/" in name or name in ("", ".", ".."):
                raise InvalidInput(f"model name {name!r} must be a plain file name")
            self.push(path, f"{DOCUMENTS}/{name}")
        with tempfile.TemporaryDirectory(prefix="mbdeploy-ios-") as scratch:
            scratch_dir = Path(scratch)
            write_json(scratch_dir / PLAN_FILE, plan)
            self.push(scratch_dir / PLAN_FILE, f"{DOCUMENTS}/{PLAN_FILE}")
            self._call(self.launch_argv(), "launching the benchmark app", timeout=120)
            # The marker holds the run id: one left by an earlier run is not this run's end.
            deadline = time.monotonic() + timeout
            while not self._finished(plan["run_id"], scratch_dir / DONE_FILE):
                if time.monotonic() > deadline:
                    raise DeviceError(f"the benchmark app on {self.id} did not finish in {timeout:.0f} s")
                time.sleep(poll_s)
            self.pull(f"{DOCUMENTS}/{RESULTS_FILE}", scratch_dir / RESULTS_FILE)
            return parse_app_results((scratch_dir / RESULTS_FILE).read_text(), self._info)

    def bench_pushed(self, remote: str, run_id: str, runs: int, warmup: int, compute_units: Sequence[str],
                     timeout: float = 1800, poll_s: float = 5.0) -> list[dict]:
        """Time one model that `push` copied to `remote`; return its validated records, one per compute unit.

        The app times every model in its Documents folder, so the model is
        removed afterwards (pymobiledevice3) and only its own records are
        kept: those carrying the digest of the file this host pushed.
        """
        local = self._pushed.get(remote)
        if local is None:
            raise DeviceError(f"{remote} was not copied to {self.id} in this session; push it before benching it")
        name = posixpath.basename(remote)
        artifact = _pushed_artifact(name, local)
        plan = build_plan(run_id, {name: artifact}, runs=runs, warmup=warmup, compute_units=compute_units)
        try:
            records = self.bench({}, plan, timeout=timeout, poll_s=poll_s)
        finally:
            try:
                self.remove(remote)  # the next launch must not time this model again
            except DeviceError:
                pass  # best effort: a leftover costs time, not correctness (its records are filtered out)
        return [record for record in records if record["artifact"].get("sha256") == artifact["sha256"]]


    def _finished(self, run_id: str, local: Path) -> bool:
        try:
            self.pull(f"{DOCUMENTS}/{DONE_FILE}", local)
        except DeviceError:
            return False
        return local.read_text().strip() == run_id


def discover(run: Run = subprocess.run, tool: str | None = None) -> list[IosDevice]:
    """Connected iPhones and iPads; [] when neither devicectl nor pymobiledevice3 is available."""
    tool = tool or available_tool()
    if tool is None:
        return []
    if tool == DEVICECTL:
        with tempfile.TemporaryDirectory(prefix="mbdeploy-devicectl-") as scratch:
            output = Path(scratch) / "devices.json"
            done = run(devicectl_list(output), capture_output=True, text=True, timeout=60)
            if done.returncode != 0 or not output.exists():
                raise DeviceError(f"xcrun devicectl list devices failed: {(done.stderr or '').strip()[-200:]}")
            infos = parse_devicectl_devices(json.loads(output.read_text()))
    else:
        done = run(pmd_list(_pymobiledevice3()), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise DeviceError(f"pymobiledevice3 usbmux list failed (is usbmuxd running?): "
                              f"{(done.stderr or '').strip()[-200:]}")
        try:
            infos = parse_usbmux_devices(json.loads(done.stdout or "[]"))
        except json.JSONDecodeError:
            raise DeviceError("pymobiledevice3 usbmux list printed something that is not JSON") from None
    return [IosDevice(info, tool, run) for info in infos]

