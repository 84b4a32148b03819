"""A stand-in iPhone behind the real pymobiledevice3 command line.

Installed on PATH as `pymobiledevice3` by the tests. Each call:

1. is parsed by the real pymobiledevice3's own command objects
   (`pmd3_command`): an option or argument the real CLI would refuse exits 2
   with click's message, as the real tool does;
2. `apps push/pull/rm` then run the package's real AFC code
   (`AfcService.push/pull/rm`) against the folder standing in for the app's
   data container ($FAKE_IOS_CONTAINER, see afc_folder.py), so files and
   folders land exactly where the real tool puts them;
3. `usbmux list` prints $FAKE_IOS_USBMUX (lockdown short info, one entry
   per connection); `developer dvt launch` checks the path fits the phone's
   iOS version (lockdown needs the developer disk image, $FAKE_IOS_DDI=1;
   `--tunnel` needs a tunnel daemon, $FAKE_IOS_TUNNELD=1, and iOS 17;
   `--userspace` needs iOS 17.4) and then plays the app: it follows the plan
   as ios_harness does and writes the results and the done marker.

Importing pymobiledevice3 takes seconds, so the `pymobiledevice3` on PATH
is a small client (`client_main`) that hands its argv, working folder and
FAKE_IOS_* environment to a `PhoneServer` thread over a UNIX socket
($FAKE_IOS_SOCKET); the server does all of the above and sends back the
exit status and output.

The app's timings are $FAKE_IOS_SAMPLES (or, for a model whose file name
is a key of $FAKE_IOS_MODEL_SAMPLES, that key's list) and its thermal states
$FAKE_IOS_THERMAL: stand-in figures, never measurements. The document and
the order of its entries follow Benchmark.swift and Results.swift: model by
model for schedule one_by_one, compute unit by compute unit (every model in
plan order, no probes) for round_robin. Every call is
appended to $FAKE_IOS_LOG (JSON lines); every plan the app read to
$FAKE_IOS_LOG with `-plans` before `.jsonl`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import os
import shlex
import socket
import struct
import sys
import threading
from pathlib import Path

APP_SCHEMA = "mbdeploy.coreml_app/3"  # as ios_harness/Sources/CoreMLBench/Plan.swift
BUNDLE_ID = "org.mbdeploy.bench"


def pmd3_command(argv: list[str]) -> tuple[list[str], dict]:
    """(subcommand path, parsed parameters) of a pymobiledevice3 command line, by the real CLI's parser.

    Resolves each group's subcommand and calls `make_context` on the rest,
    which raises click's UsageError for an unknown option, a missing
    argument or a bad value, exactly where the real tool would exit 2.
    """
    import typer
    from pymobiledevice3.__main__ import app
    from typer.core import TyperGroup

    command = typer.main.get_command(app)
    context = command.make_context("pymobiledevice3", list(argv))
    path: list[str] = []
    while isinstance(command, TyperGroup):
        name, command, rest = command.resolve_command(context, [*context._protected_args, *context.args])
        path.append(name)
        context = command.make_context(name, rest, parent=context)
    return path, dict(context.params)


def _version(env: dict, udid: str | None) -> tuple[int, ...]:
    entries = json.loads(Path(env["FAKE_IOS_USBMUX"]).read_text())
    for entry in entries:
        if entry.get("UniqueDeviceID") == udid:
            return tuple(int(part) for part in entry["ProductVersion"].split("."))
    return ()


def _launch_refusal(env: dict, params: dict) -> str | None:
    """Why the real tool would fail to reach developer services this way, or None."""
    version = _version(env, params["tunnel"].split(":")[0] if params["tunnel"] else params["udid"])
    if not version:
        return f"ERROR Device not found: {params['tunnel'] or params['udid']}"
    if params["tunnel"] is not None:
        if env.get("FAKE_IOS_TUNNELD") != "1":
            return "ERROR Unable to connect to tunneld. Start one with `sudo python3 -m pymobiledevice3 remote tunneld`."
        if version < (17,):
            return f"ERROR Device not found: tunneld (127.0.0.1:49151) serves no tunnel for udid {params['tunnel']}"
        return None
    if params["userspace"]:
        return "ERROR The no-root userspace tunnel cannot serve this device." if version < (17, 4) else None
    if version >= (17,):
        return None  # the real CLI retries over its userspace tunnel (17.4+) by itself
    return None if env.get("FAKE_IOS_DDI") == "1" else (
        "ERROR Failed to start service. Make sure the DeveloperDiskImage is mounted: pymobiledevice3 mounter auto-mount")


def _find_models(documents: Path) -> list[str]:
    found = []
    for path in sorted(documents.rglob("*")):
        if path.suffix in (".mlpackage", ".mlmodelc") and not any(p.suffix in (".mlpackage", ".mlmodelc")
                                                                   for p in path.relative_to(documents).parents):
            found.append(path.relative_to(documents).as_posix())
    return found


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _probes_entry_ok(entry: dict) -> bool:
    """Plan.swift's check of a plan's probes (the app refuses the whole plan otherwise)."""
    def whole(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    path, count, shape, size = entry.get("path"), entry.get("count"), entry.get("shape"), entry.get("bytes")
    return (isinstance(path, str) and not path.startswith("/") and ".." not in path.split("/")
            and whole(count) and count > 0 and isinstance(shape, list) and bool(shape)
            and all(whole(d) and d > 0 for d in shape) and whole(size) and size == count * math.prod(shape) * 4)


def _probe_outputs(documents: Path, probes: dict, model: Path, env: dict) -> list[list[float]]:
    """The app's scores on the plan's probes, as ios_harness computes them (Inputs.swift), by the host's
    Core ML reference executor instead of Core ML. $FAKE_IOS_APP=wrong_outputs: a unit computing wrong answers."""
    import numpy as np

    from mbdeploy.export.coreml import reference_predictor

    data = (documents / probes["path"]).read_bytes()
    if len(data) != probes["bytes"]:
        raise ValueError(f"model arrived incomplete: {len(data)} of {probes['bytes']} bytes")
    inputs = np.frombuffer(data, "<f4").reshape(probes["count"], *probes["shape"])
    predict = reference_predictor(model)
    outputs = [predict(x) for x in inputs]
    if env.get("FAKE_IOS_APP") == "wrong_outputs":
        outputs = [y[::-1] for y in outputs]
    return [[float(v) for v in y] for y in outputs]


def play_app(env: dict, documents: Path) -> None:
    """What ios_harness does at launch, minus Core ML: follow the plan, write raw results, then the marker."""
    (documents / "mbdeploy-done").unlink(missing_ok=True)
    plan = json.loads((documents / "mbdeploy-plan.json").read_text())
    with open(env["FAKE_IOS_LOG"].replace(".jsonl", "-plans.jsonl"), "a") as log:
        log.write(json.dumps(plan) + "\n")
    if env.get("FAKE_IOS_APP") == "hang":
        return  # launched, but the app never finishes
    device = {"model": "iPhone15,2", "os": "iOS 17.5.1", "cores": 6}
    schedule = plan.get("schedule", "one_by_one")
    refusal = (f"bad plan: schema {APP_SCHEMA} expected" if plan.get("schema") != APP_SCHEMA else
               f"bad plan: unknown schedule {schedule}" if schedule not in ("one_by_one", "round_robin") else
               "bad plan: probes need a relative path, count, shape and bytes = count x shape x 4"
               if isinstance(plan.get("probes"), dict) and not _probes_entry_ok(plan["probes"]) else None)
    if refusal:  # Plan.load throws; the app writes the error document (Results.write with error:)
        document = {"schema": APP_SCHEMA, "run_id": plan.get("run_id", ""), "runs": [], "device": device,
                    "error": refusal}
        (documents / "mbdeploy-results.json").write_text(json.dumps(document, indent=2, sort_keys=True))
        (documents / "mbdeploy-done").write_text(f"{plan.get('run_id', '')}\n")
        return
    samples = json.loads(env.get("FAKE_IOS_SAMPLES", "[1.0]"))
    by_model = json.loads(env.get("FAKE_IOS_MODEL_SAMPLES", "{}"))
    states = json.loads(env.get("FAKE_IOS_THERMAL", '["nominal"]'))
    models = plan.get("models") or [{"path": path, "bytes": None} for path in _find_models(documents)]
    errors = {}
    for model in models:
        path = documents / model["path"]
        error = None
        if not path.exists():
            error = f"no model at Documents/{model['path']}"
        elif model.get("bytes") is not None and _bytes(path) != model["bytes"]:
            error = f"model arrived incomplete: {_bytes(path)} of {model['bytes']} bytes"
        elif path.suffix == ".mlpackage" and not (path / "Manifest.json").is_file():
            error = "compile failed: the .mlpackage has no Manifest.json (stand-in for Core ML's refusal)"
        errors[model["path"]] = error

    def entry(model: dict, unit: str, probes: dict | None) -> dict:
        run = {"model": model["path"], "compute_units": unit, "status": "failed"}
        error = errors[model["path"]]
        if error:
            run.update(error=error, thermal_states=states[:1])
            return run
        mine = by_model.get(model["path"].rsplit("/", 1)[-1], samples)
        run.update(status="ok", compile_ms=40.0, load_ms=12.0, first_inference_ms=3.0, thermal_states=states,
                   samples_ms=[mine[i % len(mine)] for i in range(plan["runs"])])
        if probes:
            try:
                run["probe_outputs"] = _probe_outputs(documents, probes, documents / model["path"], env)
            except ValueError as exc:
                run.update(status="failed", error=str(exc))
        return run

    if schedule == "round_robin":  # Benchmark.runRoundRobin: per unit, every model in plan order; no probes
        runs = [entry(model, unit, None) for unit in plan["compute_units"] for model in models]
    else:  # Benchmark.run: per model, every unit
        runs = [entry(model, unit, plan.get("probes")) for model in models for unit in plan["compute_units"]]
    document = {"schema": APP_SCHEMA, "run_id": plan["run_id"], "schedule": schedule, "runs": runs, "device": device}
    text = json.dumps(document, indent=2, sort_keys=True)
    if env.get("FAKE_IOS_APP") == "killed":
        text = text[: len(text) // 2]  # the app was killed mid-write (the real one writes atomically)
    (documents / "mbdeploy-results.json").write_text(text)
    (documents / "mbdeploy-done").write_text(plan["run_id"] + "\n")


async def _afc(path: list[str], params: dict, container: Path) -> None:
    from mbdeploy.testing.afc_folder import folder_afc

    afc = folder_afc(container)
    try:
        if path == ["apps", "push"]:
            await afc.push(str(params["local_file"]), params["remote_file"], progress_bar=False)
        elif path == ["apps", "pull"]:
            await afc.pull(params["remote_file"], str(params["local_file"]), progress_bar=False)
        else:
            await afc.rm(params["remote_file"])
    finally:
        await afc.close()


def handle(argv: list[str], env: dict, cwd: str) -> int:
    """One pymobiledevice3 call, as the real tool would end it; prints what it would print."""
    from typer._click.exceptions import UsageError

    with open(env["FAKE_IOS_LOG"], "a") as log:
        log.write(json.dumps(argv) + "\n")
    try:
        path, params = pmd3_command(argv)
    except UsageError as exc:
        print(f"Usage error: {exc.format_message()}", file=sys.stderr)
        return 2
    container = Path(env["FAKE_IOS_CONTAINER"])
    if path == ["usbmux", "list"]:
        print(Path(env["FAKE_IOS_USBMUX"]).read_text())
        return 0
    if path[:1] == ["apps"] and path[1] in ("push", "pull", "rm"):
        if params["bundle_id"] != BUNDLE_ID:
            print(f"ERROR InstallationLookupFailed: {params['bundle_id']}", file=sys.stderr)
            return 1
        if "local_file" in params:
            params["local_file"] = Path(cwd) / params["local_file"]
        try:
            asyncio.run(_afc(path, params, container))
        except Exception as exc:  # noqa: BLE001 - the real CLI reports and exits 1
            print(f"ERROR {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        return 0
    if path == ["developer", "dvt", "launch"]:
        refusal = _launch_refusal(env, params)
        if refusal:
            print(refusal, file=sys.stderr)
            return 1
        words = shlex.split(params["arguments"])  # what the real tool does with its one argument
        if words[:1] != [BUNDLE_ID]:
            print(f"ERROR no app {words[:1]}", file=sys.stderr)
            return 1
        play_app(env, container / "Documents")
        print("Process launched with pid 4242")
        return 0
    print(f"ERROR the stand-in phone does not play `{' '.join(path)}`", file=sys.stderr)
    return 1


class PhoneServer:
    """Serves `handle` on a UNIX socket, one call at a time, in a thread of this process."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-iphone", daemon=True)

    def __enter__(self) -> "PhoneServer":
        pmd3_command(["usbmux", "list"])  # import the real CLI once, before the first call
        self._server.bind(str(self.path))
        self._server.listen(4)
        self._server.settimeout(0.2)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)
        self._server.close()
        self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            with conn:
                request = json.loads(_read_frame(conn))
                out, err = io.StringIO(), io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    try:
                        code = handle(request["argv"], request["env"], request["cwd"])
                    except Exception as exc:  # noqa: BLE001 - a stand-in bug must show, not hang the client
                        print(f"stand-in phone crashed: {type(exc).__name__}: {exc}", file=sys.stderr)
                        code = 70
                _write_frame(conn, json.dumps({"code": code, "out": out.getvalue(), "err": err.getvalue()}))


def _read_frame(conn: socket.socket) -> str:
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data[4:].decode()


def _write_frame(conn: socket.socket, text: str) -> None:
    payload = text.encode()
    conn.sendall(struct.pack(">I", len(payload)) + payload)


def client_main(argv: list[str] | None = None) -> int:
    """The `pymobiledevice3` on PATH: one call handed to the PhoneServer at $FAKE_IOS_SOCKET."""
    env = {key: value for key, value in os.environ.items() if key.startswith("FAKE_IOS_")}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(os.environ["FAKE_IOS_SOCKET"])
        _write_frame(conn, json.dumps({"argv": list(sys.argv[1:] if argv is None else argv), "env": env,
                                       "cwd": os.getcwd()}))
        answer = json.loads(_read_frame(conn))
    sys.stdout.write(answer["out"])
    sys.stderr.write(answer["err"])
    return answer["code"]


if __name__ == "__main__":
    sys.exit(client_main())
