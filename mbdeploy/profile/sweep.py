"""The profile sweep: per device and artifact, the whole model, then every layer.

The whole model is measured exactly as `bench` measures it (`measure_one`)
and its record goes to results.jsonl; each layer's record goes to
layers.jsonl, naming that whole-model record. How a layer is timed:

- single_layer: the layer cut out of the artifact as its own model of the
  same format and precision (`slicing` for .tflite, `coreml_layers` for an
  fp32/fp16 .mlpackage), pushed and timed by the same runner with the same
  options as the whole model. Works wherever the runner times the format:
  .tflite on local, ssh boards and phones (litert or benchmark_model), Core
  ML on iPhones (the app times the layers in one round-robin loop).
- op_profile: the runner's own per-node profile of the whole model (Android
  `benchmark_model` and the APK), mapped to layers in node order
  (`op_profile`).
"""

from __future__ import annotations

import posixpath
import tempfile
import threading
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from mbdeploy.architecture import ModelSpec
from mbdeploy.bench.artifacts import Artifact
from mbdeploy.bench.measure import latency_block, measure_one
from mbdeploy.bench.options import BenchOptions
from mbdeploy.bench.sweep import clean_device, each_device
from mbdeploy.devices.base import Device
from mbdeploy.devices.lock import DeviceLock
from mbdeploy.errors import InvalidInput, MbdeployError, ResultsError
from mbdeploy.layer_accounting import ProfileLayer, profile_layers
from mbdeploy.profile.op_profile import map_nodes
from mbdeploy.profile.coreml_layers import PRECISIONS as COREML_PRECISIONS
from mbdeploy.profile.coreml_layers import (build_coreml_layer_models, layer_ops, program_classes, read_program,
                                            spec_from_program)
from mbdeploy.profile.coreml_layers import check_precision as check_coreml_precision
from mbdeploy.profile.slicing import (GraphLayer, build_single_layer_models, graph_classes, map_layers, read_model,
                                      spec_from_graph)
from mbdeploy.records.schema import LAYER_RECORD_SCHEMA, validate_layer_record
from mbdeploy.records.store import RunFolder, record_key, utc_now
from mbdeploy.runners.base import Runner
from mbdeploy.runners.registry import make_runners

METHODS = ("auto", "single_layer", "op_profile")
# Runners whose tool profiles each node of the whole model itself.
OP_PROFILE_RUNNERS = ("benchmark_model", "benchmark_app", "aihub")

Event = Callable[[str, dict], None]  # "start", "record", "layer", "skip", "unsupported", "wait"


@dataclass
class ProfileOptions:
    bench: BenchOptions = field(default_factory=BenchOptions)
    method: str = "auto"
    # single_layer: the budget of the loop that times all of a model's layers (a round-robin
    # runner times them in one loop; a one-by-one runner gives each layer this budget).
    layer_max_secs: float = 20.0


def resolve_method(method: str, runner_name: str) -> str:
    if method not in METHODS:
        raise InvalidInput(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if method == "auto":
        return "op_profile" if runner_name in OP_PROFILE_RUNNERS else "single_layer"
    if method == "op_profile" and runner_name not in OP_PROFILE_RUNNERS:
        raise InvalidInput(f"the {runner_name} runner has no op profile; --method op_profile needs "
                           f"{' or '.join(OP_PROFILE_RUNNERS)} (or use --method single_layer)")
    return method


def profile_runners(device: Device, options: ProfileOptions) -> list[tuple[Runner, str]]:
    """(runner config, method) pairs this device profiles with; an op profile needs the runner's profiler on."""
    name = options.bench.runner or device.default_runner
    method = resolve_method(options.method, name)
    runner_options = dict(options.bench.runner_options)
    if method == "op_profile":
        runner_options["op_profiling"] = True
    return [(runner, method) for runner in make_runners(name, options.bench.timing, runner_options)]


# What `profile` builds single-layer models from: format -> the precisions it carries over faithfully.
SINGLE_LAYER_FORMATS = {"tflite": None, "coreml": COREML_PRECISIONS}  # None: every precision
PROFILABLE = ("tflite (any precision) on local, ssh and Android devices and AI Hub; "
              f"coreml ({', '.join(COREML_PRECISIONS)}) on iOS devices, through the app")


def profilable(artifacts: list[Artifact], devices: list[Device], options: ProfileOptions) -> list[Artifact]:
    """The artifacts profile can time on these devices; none is one line saying what it profiles.

    An artifact is kept when a single-layer builder takes its format and
    precision and some device's runner times its format (with several
    devices each times what its runner takes, as bench does). The rest are
    named in one warning.
    """
    formats = {fmt for device in devices for runner, _ in profile_runners(device, options) for fmt in runner.formats}
    kept, passed = [], []
    for artifact in artifacts:
        allowed = SINGLE_LAYER_FORMATS.get(artifact.format, ())
        ok = artifact.format in formats and (allowed is None or artifact.precision in allowed)
        (kept if ok else passed).append(artifact)
    kinds = ", ".join(sorted({device.kind for device in devices}))
    what = ", ".join(sorted({f"{a.format} {a.precision}" for a in passed}))
    if not kept:
        raise InvalidInput(f"profile cannot time the layers of {what} on {kinds} devices; it profiles {PROFILABLE}")
    if passed:
        warnings.warn(f"profile passes over {len(passed)} artifact(s) ({what}) it cannot time on {kinds} devices; "
                      f"it profiles {PROFILABLE}", stacklevel=2)
    return kept


@dataclass
class ArtifactLayers:
    """The plan's layers as found in one artifact."""

    spec: ModelSpec
    layers: list[ProfileLayer]
    graph_layers: list[GraphLayer] = field(default_factory=list)  # .tflite: where each layer's nodes are (op profiles)


def artifact_spec(artifact: Artifact, model) -> ModelSpec:  # noqa: ANN001 - model: the schema's ModelT
    """The family member an artifact is: its manifest's spec, else read off the graph itself.

    The manifest comes first: a width such as 1024 x 0.3 rounds to 307 channels, which reads back as
    alpha 0.2998, no model id (`map_layers` still checks every layer's shape against the spec).
    """
    if artifact.alpha is not None and artifact.resolution is not None:
        return ModelSpec(float(artifact.alpha), int(artifact.resolution), graph_classes(model))
    return spec_from_graph(model)


def artifact_layers(artifact: Artifact) -> ArtifactLayers:
    """The plan's layers found in the artifact (each one's shapes checked), by format; the manifest's spec first."""
    if artifact.format == "coreml":
        check_coreml_precision(artifact.precision, artifact.name)
        program = read_program(artifact.path)
        if artifact.alpha is not None and artifact.resolution is not None:
            spec = ModelSpec(float(artifact.alpha), int(artifact.resolution), program_classes(program))
        else:
            spec = spec_from_program(program)
        layers = profile_layers(spec)
        layer_ops(program, layers, artifact.path.name)
        return ArtifactLayers(spec, layers)
    model = read_model(artifact.path)
    spec = artifact_spec(artifact, model)
    graph_layers = map_layers(model, profile_layers(spec), str(artifact.path))
    return ArtifactLayers(spec, [g.layer for g in graph_layers], graph_layers)


def build_layer_models(artifact: Artifact, spec: ModelSpec, out_dir: Path) -> dict[str, dict]:
    """layer name -> {"path": the local single-layer model, "model": the layer record's block}; same format, precision."""
    if artifact.format == "coreml":
        return {m.layer.name: {"path": m.path, "model": {
            "sha256": m.sha256, "bytes": m.bytes, "ops": list(m.ops),
            "inputs": [{"shape": list(m.input_shape), "dtype": m.input_dtype, "quantization": None}]}}
            for m in build_coreml_layer_models(artifact.path, spec, artifact.precision, out_dir)}
    return {m.layer.name: {"path": m.path, "model": {
        "sha256": m.sha256, "bytes": m.bytes, "ops": list(m.ops),
        "inputs": [{"shape": list(s), "dtype": d, "quantization": q} for s, d, q in
                   zip(m.input_shapes, m.input_dtypes, m.input_quantization)]}}
        for m in build_single_layer_models(artifact.path, spec, out_dir)}


def layer_skeleton(whole: dict, layer: ProfileLayer, method: str) -> dict:
    artifact = whole["artifact"]
    now = utc_now()
    device_id, name, sha256, config_key = record_key(whole)
    return {
        "schema": LAYER_RECORD_SCHEMA, "run_id": whole["run_id"], "status": "failed", "error": None,
        "whole": {"device_id": device_id, "name": name, "sha256": sha256, "config_key": config_key},
        "device": {"kind": whole["device"]["kind"], "id": device_id},
        "artifact": {key: artifact.get(key) for key in ("name", "format", "precision", "sha256", "alpha", "resolution")},
        "runner": whole["runner"], "config_key": config_key, "method": method,
        "layer": {**layer.to_dict(), "bytes_moved": layer.bytes_moved(artifact["precision"])},
        "model": None, "nodes": None, "delegated": None, "schedule": None, "latency_ms": None, "stop_reason": None,
        "samples_ms": [], "started_at": now, "finished_at": now,
    }


def _checked(record: dict) -> dict:
    try:
        validate_layer_record(record)
    except ResultsError as exc:
        record.update({"status": "failed", "error": f"invalid runner output: {exc.message}", "latency_ms": None,
                       "samples_ms": []})
    return record


class _Profile:
    def __init__(self, folder: RunFolder, options: ProfileOptions, emit: Event, work: Path) -> None:
        self.folder = folder
        self.options = options
        self.emit = emit
        self.work = work
        self.done = folder.recorded_keys()
        self.layers_done = folder.recorded_layer_keys()
        self.earlier = {record_key(r): r for r in folder.records() if r.get("status") == "ok"}
        self.lock = threading.Lock()
        self.records: list[dict] = []
        self.layer_records: list[dict] = []

    def store(self, record: dict) -> None:
        with self.lock:
            self.folder.append(record)
            self.records.append(record)
        self.emit("record", record)

    def store_layer(self, record: dict) -> None:
        with self.lock:
            self.folder.append_layer(record)
            self.layer_records.append(record)
        self.emit("layer", record)

    def device(self, device: Device, info: dict, artifacts: list[Artifact]) -> None:
        for runner, method in profile_runners(device, self.options):
            usable = [a for a in artifacts if a.format in runner.formats]
            for artifact in artifacts:
                if artifact not in usable:
                    self.emit("unsupported", {"device": device.id, "artifact": artifact.name,
                                              "precision": artifact.precision})
            if not usable:
                continue
            lock = DeviceLock(device.id, wait=self.options.bench.wait_for_lock,
                              on_wait=lambda msg: self.emit("wait", {"message": msg}))
            with lock:
                try:
                    runner.prepare(device)
                    for artifact in usable:
                        self.artifact(device, info, runner, method, artifact)
                finally:
                    clean_device(device)

    def artifact(self, device: Device, info: dict, runner: Runner, method: str, artifact: Artifact) -> None:
        emit = self.emit
        emit("start", {"device": device.id, "artifact": artifact.name, "precision": artifact.precision})
        key = (device.id, artifact.name, artifact.sha256, runner.config_key())
        whole = self.earlier.get(key) if key in self.done else None
        if whole is None:
            whole = measure_one(device, info, runner, artifact, self.folder.run_id, self.options.bench, None)
            self.store(whole)
        else:
            emit("skip", {"device": device.id, "artifact": artifact.name, "precision": artifact.precision})
        try:
            found = artifact_layers(artifact)
        except MbdeployError as exc:
            for_all = exc.message
            found = None
        else:
            for_all = None
        if whole["status"] != "ok":
            for_all = f"the whole model failed: {whole.get('error')}"
        if for_all is not None:
            emit("failed", {"device": device.id, "artifact": artifact.name, "error": for_all})
            for layer in found.layers if found else []:
                record = layer_skeleton(whole, layer, method)
                record["error"] = for_all
                self.store_layer(_checked(record))
            return
        todo = [layer for layer in found.layers if (*key, layer.name) not in self.layers_done]
        emit("layers", {"device": device.id, "artifact": artifact.name, "count": len(todo),
                        "skipped": len(found.layers) - len(todo)})
        if method == "op_profile":
            wanted = {layer.name for layer in todo}
            self.op_profile(whole, found.graph_layers, [g for g in found.graph_layers if g.layer.name in wanted])
        else:
            self.single_layers(device, runner, artifact, whole, found.spec, todo)

    def single_layers(self, device: Device, runner: Runner, artifact: Artifact, whole: dict, spec: ModelSpec,
                      todo: list[ProfileLayer]) -> None:
        if not todo:
            return
        built = build_layer_models(artifact, spec, self.work / artifact.sha256[:16])
        remote_dir = posixpath.join(device.workdir, "models", artifact.sha256[:16], "layers")
        records, remotes = [], []
        for layer in todo:
            single = built[layer.name]
            record = layer_skeleton(whole, layer, "single_layer")
            record["model"] = single["model"]
            remote = posixpath.join(remote_dir, single["path"].name)
            try:
                device.push(single["path"], remote)
            except MbdeployError as exc:
                record["error"] = f"push failed: {exc.message}"
                self.store_layer(_checked(record))
                continue
            records.append(record)
            remotes.append(remote)
        # One device process times them all in turn (when the runner can), in plan order.
        layer_runner = runner.with_options(replace(runner.options, max_secs=self.options.layer_max_secs))
        for record, outcome in zip(records, layer_runner.run_many(device, remotes)):
            if isinstance(outcome, MbdeployError):
                record["error"] = outcome.message
            else:
                # Statistics only: a 2 us layer gives 100k+ samples in half a second.
                record.update({"status": "ok", "latency_ms": latency_block(outcome),
                               "stop_reason": outcome.stop_reason,
                               "schedule": outcome.extra.get("schedule", runner.schedule)})
            record["finished_at"] = utc_now()
            self.store_layer(_checked(record))

    def op_profile(self, whole: dict, graph_layers, todo) -> None:  # noqa: ANN001
        for record in op_profile_records(whole, graph_layers, todo):
            self.store_layer(record)


def op_profile_records(whole: dict, graph_layers, todo) -> list[dict]:  # noqa: ANN001 - slicing.GraphLayer lists
    """The layer records of `todo` from the whole-model record's op profile (checked; failed ones say why)."""
    # The runner's per-node rows (runner_extra["op_profile"], read from the tool's pulled profile file).
    rows = (whole.get("runner_extra") or {}).get("op_profile")
    try:
        if not isinstance(rows, list) or not rows:
            raise InvalidInput(f"the {whole['runner']['name']} runner returned no per-node op profile")
        mapped = map_nodes(rows, graph_layers)
    except MbdeployError as exc:
        failed = []
        for graph_layer in todo:
            record = layer_skeleton(whole, graph_layer.layer, "op_profile")
            record["error"] = exc.message
            failed.append(_checked(record))
        return failed
    wanted = {g.layer.name for g in todo}
    return [_checked(op_profile_record(whole, t)) for t in mapped if t.graph_layer.layer.name in wanted]


def op_profile_record(whole: dict, layer_time) -> dict:  # noqa: ANN001 - op_profile.LayerTime
    """A layer record from the mapped op profile: the tool reports averages, so the mean (no median, no CI)."""
    record = layer_skeleton(whole, layer_time.graph_layer.layer, "op_profile")
    record.update({"status": "ok", "nodes": layer_time.nodes, "delegated": layer_time.delegated})
    if layer_time.avg_ms is not None:
        record["latency_ms"] = {"median": None, "mean": layer_time.avg_ms, "count": layer_time.count or 0,
                                "ci95_low": None, "ci95_high": None}
    return record


def run_profile(devices: list[Device], device_infos: list[dict], artifacts: list[Artifact], folder: RunFolder,
                options: ProfileOptions, emit: Event | None = None) -> tuple[list[dict], list[dict]]:
    """Profile every artifact on every device (one thread per device); the new whole and layer records."""
    with tempfile.TemporaryDirectory(prefix="mbdeploy-layers-") as work:
        profile = _Profile(folder, options, emit or (lambda kind, data: None), Path(work))
        each_device(devices, device_infos, lambda device, info: profile.device(device, info, artifacts), "profile")
    return profile.records, profile.layer_records
