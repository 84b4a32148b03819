"""`mbdeploy profile`: layer accounting against the plan, single-layer models, op profiles, the layer model."""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mbdeploy.accounting import model_cost
from mbdeploy.architecture import ModelSpec, grid_specs, layer_plan
from mbdeploy.errors import InvalidInput, RunnerError
from mbdeploy.layer_accounting import profile_layers
from mbdeploy.profile.op_profile import map_nodes, rows_from_proto
from mbdeploy.profile.slicing import build_single_layer_models, map_layers, read_model, spec_from_graph
from mbdeploy.records.layer_model import (LayerSample, ProfiledModel, fit_layer_model,
                                          nonnegative_least_squares)
from mbdeploy.records.schema import validate_layer_record

SMALL = ModelSpec(0.25, 128)


def _artifact(small_models: Path, precision: str) -> Path:
    return small_models / SMALL.name / f"{SMALL.name}_{precision}.tflite"


def _cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    (cwd / "mbdeploy.toml").touch()  # no user config or aliases leak in
    env = dict(os.environ, XDG_CACHE_HOME=str(cwd / "cache"), MBDEPLOY_CONFIG=str(cwd / "mbdeploy.toml"))
    env.pop("ANDROID_SERIAL", None)
    return subprocess.run([sys.executable, "-m", "mbdeploy", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


# --- layer accounting -------------------------------------------------------------------


@pytest.mark.parametrize("spec", [SMALL, ModelSpec(1.0, 224), ModelSpec(0.6, 200, 10)], ids=lambda s: s.name)
def test_profile_layers_are_the_plan_plus_pool_and_softmax(spec):
    layers = profile_layers(spec)
    plan = layer_plan(spec)
    assert [l.name for l in layers] == [p.name for p in plan[:-1]] + ["AvgPool_1a", "Logits", "Predictions"]
    assert [l.index for l in layers] == list(range(len(layers)))
    cost = model_cost(spec)
    assert sum(l.macs for l in layers) == cost.macs and sum(l.params for l in layers) == cost.params
    for before, after in zip(layers, layers[1:]):  # each layer eats what the one before produced
        assert math.prod(before.output_shape) == math.prod(after.input_shape)
    assert {l.type for l in layers} == {"Conv 3x3", "Conv DW 3x3", "Conv 1x1", "Avg Pool", "Fully Connected",
                                        "Softmax"}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "dynamic", "int8"])
def test_every_plan_layer_is_found_in_the_artifact_with_inspects_macs(small_models, precision):
    from mbdeploy.inspection import inspect_tflite

    path = _artifact(small_models, precision)
    model = read_model(path)
    assert spec_from_graph(model) == SMALL
    mapped = map_layers(model, profile_layers(SMALL))
    assert [g.layer.name for g in mapped] == [l.name for l in profile_layers(SMALL)]
    used = sorted(i for g in mapped for i in g.ops)
    assert used == list(range(len(model.subgraphs[0].operators)))  # every op belongs to exactly one layer
    inspected = inspect_tflite(path)["layers"]
    with_macs = [g.layer for g in mapped if g.layer.macs]
    assert [l.macs for l in with_macs] == [layer["macs"] for layer in inspected]
    assert sum(l.macs for l in with_macs) == inspect_tflite(path)["macs"] == model_cost(SMALL).macs


def test_a_graph_that_is_not_the_plan_is_refused(small_models, tmp_path):
    [single] = [m for m in build_single_layer_models(_artifact(small_models, "fp32"), SMALL, tmp_path)
                if m.layer.name == "Conv2d_3_pointwise"]
    with pytest.raises(InvalidInput, match="not a MobileNet v1 of the plan"):
        spec_from_graph(read_model(single.path))
    with pytest.raises(InvalidInput, match="not the plan's MobileNet v1"):
        map_layers(read_model(single.path), profile_layers(SMALL))
    with pytest.raises(InvalidInput, match="does not match plan layer Conv2d_0"):
        map_layers(read_model(_artifact(small_models, "fp32")), profile_layers(ModelSpec(0.5, 128)))


# --- single-layer models ----------------------------------------------------------------


def _intermediates(path: Path, source: np.ndarray) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], source)
    interpreter.invoke()
    return {t["name"]: interpreter.get_tensor(t["index"]) for t in interpreter.get_tensor_details()
            if t["name"] and not (t["shape"] == 0).all()}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_single_layer_models_are_the_artifacts_own_layers(small_models, tmp_path, precision):
    """Same dtypes, quantization and weights as the artifact: fed the graph's own input, each gives its output."""
    from ai_edge_litert.interpreter import Interpreter

    path = _artifact(small_models, precision)
    singles = build_single_layer_models(path, SMALL, tmp_path)
    assert len(singles) == 30
    whole = Interpreter(model_path=str(path))
    detail = whole.get_input_details()[0]
    rng = np.random.default_rng(0)
    if precision == "int8":
        source = rng.integers(-128, 127, size=detail["shape"], dtype=np.int8)
    else:
        source = rng.uniform(-1, 1, size=detail["shape"]).astype(np.float32)
    values = _intermediates(path, source)
    artifact_tensors = {t["name"]: t for t in whole.get_tensor_details()}
    for single in singles:
        interpreter = Interpreter(model_path=str(single.path))
        interpreter.allocate_tensors()
        inputs = interpreter.get_input_details()
        assert len(inputs) == 1
        [feed] = inputs
        original = artifact_tensors[feed["name"]]
        assert feed["dtype"] == original["dtype"]
        assert feed["quantization"] == original["quantization"]  # the artifact's own scale and zero point
        if precision == "int8":
            assert single.input_dtypes == ("int8",) and single.input_quantization[0]["scale"]
        for tensor in interpreter.get_tensor_details():  # weights keep their stored type (fp16 stays fp16)
            assert tensor["dtype"] == artifact_tensors[tensor["name"]]["dtype"]
        if precision == "fp16" and single.layer.macs:
            assert "DEQUANTIZE" in single.ops
        interpreter.set_tensor(feed["index"], values[feed["name"]])
        interpreter.invoke()
        [sink] = interpreter.get_output_details()
        np.testing.assert_allclose(interpreter.get_tensor(sink["index"]), values[sink["name"]], rtol=1e-5, atol=1e-6)


def test_googles_uint8_model_is_read_off_its_graph(reference_dir, tmp_path):
    path = reference_dir / "mobilenet_v1_0.25_128_quant.tflite"
    model = read_model(path)
    spec = spec_from_graph(model)
    assert (spec.alpha, spec.resolution, spec.classes) == (0.25, 128, 1001)
    singles = build_single_layer_models(path, spec, tmp_path)
    assert [s.layer.name for s in singles] == [l.name for l in profile_layers(spec)]
    assert all(dtype == "uint8" for s in singles for dtype in s.input_dtypes)


# --- op profiles (Android benchmark_model / APK) ----------------------------------------


def _op_names(path: Path) -> list[tuple[str, str]]:
    """(op name, first output tensor name) per node, read as the tool's interpreter sees the graph."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensors = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    return [(op["op_name"], tensors[op["outputs"][0]]) for op in interpreter._get_ops_details()]


def _proto(rows: list[dict]) -> bytes:
    """A BenchmarkProfilingData file as `--op_profiling_output_mode=proto` writes it (LiteRT profiling_info.proto)."""
    from mbdeploy.profile.op_profile import profiling_proto

    message = profiling_proto().BenchmarkProfilingData(model_name="m")
    graph = message.runtime_profile.subgraph_profiles.add(subgraph_name="main", subgraph_index=0)
    for row in rows:
        op = graph.per_op_profiles.add(node_type=row["node_type"], name=row["name"], run_order=row["run_order"],
                                       times_called=row["count"])
        op.inference_microseconds.avg = int(row["avg_us"])
        op.inference_microseconds.count = row["count"]
    return message.SerializeToString()


def test_op_profile_nodes_map_to_layers_in_node_order(small_models):
    path = _artifact(small_models, "fp32")
    graph_layers = map_layers(read_model(path), profile_layers(SMALL))
    ops = _op_names(path)
    # Upstream's ProfileSummarizer names a node "[outputs]:node_index" and types it by its op.
    rows = [{"name": f"[{tensor}]:{i}", "node_type": op, "run_order": i, "avg_us": 10 * (i + 1), "count": 50}
            for i, (op, tensor) in enumerate(ops)]
    mapped = map_nodes(rows_from_proto(_proto(rows)), graph_layers)
    assert [m.graph_layer.layer.name for m in mapped] == [l.name for l in profile_layers(SMALL)]
    by_name = {m.graph_layer.layer.name: m for m in mapped}
    assert by_name["Conv2d_0"].avg_ms == pytest.approx(0.010)
    logits = [i for i, (op, _) in enumerate(ops) if op in ("CONV_2D", "RESHAPE")][-2:]  # the classifier and its squeeze
    assert by_name["Logits"].avg_ms == pytest.approx(sum(10 * (i + 1) for i in logits) / 1e3)
    assert all(m.delegated is None for m in mapped)


def test_a_delegate_node_swallows_layers_and_says_so(small_models):
    path = _artifact(small_models, "fp32")
    graph_layers = map_layers(read_model(path), profile_layers(SMALL))
    ops = _op_names(path)
    last_pointwise = [i for i, (op, _) in enumerate(ops) if op == "AVERAGE_POOL_2D"][0] - 1
    # XNNPACK took the body; the head ran on the CPU kernels. Its internal events are not graph nodes.
    rows = [{"name": f"[{ops[last_pointwise][1]}]:{len(ops)}", "node_type": "TfLiteXNNPackDelegate",
             "run_order": 0, "avg_us": 900, "count": 50},
            {"name": "Delegate/Convolution (NHWC, F32) IGEMM:0", "node_type": "DelegateOpInvoke", "run_order": 1,
             "avg_us": 40, "count": 50},
            {"name": "Convolution (NHWC, F32) IGEMM", "node_type": "Convolution (NHWC, F32) IGEMM", "run_order": 0,
             "avg_us": 40, "count": 50, "delegate": "TfLiteXNNPackDelegate"}]
    rows += [{"name": f"[{tensor}]:{i}", "node_type": op, "run_order": 2 + i, "avg_us": 5, "count": 50}
             for i, (op, tensor) in enumerate(ops) if i > last_pointwise]
    mapped = map_nodes(rows, graph_layers)
    swallowed = [m for m in mapped if m.delegated]
    assert [m.graph_layer.layer.name for m in swallowed] == [l.name for l in profile_layers(SMALL)][:27]
    assert all(m.avg_ms is None and "TfLiteXNNPackDelegate" in m.delegated and "Conv2d_0..Conv2d_13_pointwise"
               in m.delegated for m in swallowed)
    assert [m.avg_ms for m in mapped[27:]] == [pytest.approx(0.005), pytest.approx(0.010), pytest.approx(0.005)]

    from mbdeploy.profile.sweep import op_profile_records

    # The whole-model record as the Android runners leave it: the pulled profile's rows in runner_extra.
    whole = {"run_id": "r", "device": {"kind": "android", "id": "R58M"}, "config_key": "c",
             "artifact": {"name": SMALL.name, "format": "tflite", "precision": "fp32", "sha256": "a" * 64},
             "runner": {"name": "benchmark_model"}, "runner_extra": {"op_profile": rows}}
    records = op_profile_records(whole, graph_layers, graph_layers)
    assert len(records) == 30 and all(r["status"] == "ok" and r["method"] == "op_profile" for r in records)
    for record in records:
        validate_layer_record(record)
        assert record["whole"]["sha256"] == "a" * 64
    assert records[0]["latency_ms"] is None and "TfLiteXNNPackDelegate" in records[0]["delegated"]
    assert records[-1]["latency_ms"]["mean"] == pytest.approx(0.005) and records[-1]["latency_ms"]["median"] is None
    missing = op_profile_records({**whole, "runner_extra": {}}, graph_layers, graph_layers[:2])
    assert [r["status"] for r in missing] == ["failed", "failed"] and "no per-node op profile" in missing[0]["error"]
    with pytest.raises(RunnerError, match="not of the form"):
        map_nodes([{**rows[0], "name": "Conv2d_0"}], graph_layers)
    with pytest.raises(RunnerError, match="no node for layer"):
        map_nodes(rows[3:], graph_layers)


# --- the layer model --------------------------------------------------------------------

TRUE_COSTS = {  # kind: (ms per GMAC, ms per MB, ms per layer)
    "conv": (60.0, 0.05, 0.004), "depthwise": (150.0, 0.2, 0.002), "pointwise": (25.0, 0.08, 0.001),
    "pool": (0.0, 0.3, 0.001), "logits": (40.0, 0.02, 0.002), "softmax": (0.0, 0.0, 0.003),
}


def _synthetic(spec: ModelSpec, precision: str = "fp32") -> ProfiledModel:
    samples = []
    for layer in profile_layers(spec):
        a, b, c = TRUE_COSTS[layer.kind]
        moved = layer.bytes_moved(precision)
        samples.append(LayerSample(spec.name, layer.kind, layer.macs, moved,
                                   a * layer.macs / 1e9 + b * moved / 1e6 + c, layer.activation_elements * 4))
    total = sum(s.ms for s in samples)
    activation_mb = sum(s.activation_bytes for s in samples) / 1e6
    return ProfiledModel(spec.name, 0.95 * total - 0.02 * activation_mb, tuple(samples))


def test_layer_model_recovers_known_costs_and_predicts_off_the_grid():
    corners = [ModelSpec(1.0, 224), ModelSpec(0.25, 128), ModelSpec(1.0, 128), ModelSpec(0.25, 224)]
    # Without their specs the profiles give no width residuals: the type model and graph terms alone.
    model = fit_layer_model([_synthetic(s) for s in corners], "fp32")
    assert model.widths == ()
    for kind, (a, b, c) in TRUE_COSTS.items():
        cost = model.costs[kind]
        if kind == "softmax":  # every model has 1001 classes: its bytes do not vary, so c carries them
            assert cost.ms_per_mb == 0 and cost.ms_fixed == pytest.approx(c, rel=1e-6)
            continue
        if kind == "logits":  # MACs and bytes both follow the input width alone: only their sum is fixed
            continue
        assert (cost.ms_per_gmac, cost.ms_per_mb, cost.ms_fixed) == pytest.approx((a, b, c), rel=1e-6, abs=1e-9)
    assert (model.scale, model.per_activation_mb) == pytest.approx((0.95, -0.02), rel=1e-6)
    assert max(abs(e) for e in model.loo_errors) < 1e-6 and len(model.loo_errors) == 4
    for spec in [*grid_specs(), ModelSpec(1.4, 256), ModelSpec(0.6, 200)]:
        assert model.predict(spec) == pytest.approx(_synthetic(spec).whole_ms, rel=1e-6)


def test_width_residuals_carry_what_per_type_costs_cannot_and_only_at_profiled_widths():
    import random
    from dataclasses import replace

    draw = random.Random(7)
    # Each width's kernels run each layer at their own efficiency (channel tiling): a factor per layer
    # and width that no per-type cost can express; the graph costs 0.9 of the layers alone.
    efficiency = {alpha: [draw.uniform(0.7, 1.3) for _ in profile_layers(ModelSpec(alpha, 128))]
                  for alpha in (0.25, 0.5, 0.75, 1.0)}

    def measured(spec: ModelSpec) -> ProfiledModel:
        plain = _synthetic(spec)
        layers = tuple(replace(s, ms=s.ms * e) for s, e in zip(plain.layers, efficiency[spec.alpha]))
        return ProfiledModel(spec.name, 0.9 * sum(s.ms for s in layers), layers, spec)

    design = [ModelSpec(0.25, 128), ModelSpec(0.5, 160), ModelSpec(0.75, 192), ModelSpec(1.0, 224)]
    model = fit_layer_model([measured(s) for s in design], "fp32")
    assert sorted(w.alpha for w in model.widths) == [0.25, 0.5, 0.75, 1.0] and len(model.loo_errors) == 4
    for spec in design:  # a profiled model gets its own measured whole time back
        assert model.predict(spec) == pytest.approx(measured(spec).whole_ms, rel=1e-9)
    without = replace(model, widths=())  # the type model and graph terms alone
    errors = {"with": [], "without": []}
    for spec in grid_specs():
        if spec in design:
            continue
        truth = measured(spec).whole_ms
        errors["with"].append(abs(model.predict(spec) / truth - 1))
        errors["without"].append(abs(without.predict(spec) / truth - 1))
    # Exact only where the fitted costs scale with resolution as the truth does; here the residuals
    # halve the median error (0.7% against 1.9%) and lower the worst (2.9% against 6.7%).
    assert statistics.median(errors["with"]) < statistics.median(errors["without"]) / 2
    assert max(errors["with"]) < max(errors["without"])
    # A width nobody profiled: the type model and the graph terms, exactly.
    off = ModelSpec(0.6, 200)
    assert model.residuals_for(off) is None and model.predict(off) == without.predict(off)
    assert model.to_dict()["widths"][0]["models"] == [design[0].name]
    # What an unprofiled width can expect: each profiled model predicted with its whole width left out.
    assert len(model.width_out_errors) == 4
    for spec, error in zip(sorted(design, key=lambda s: s.alpha), model.width_out_errors):
        rest = fit_layer_model([measured(s) for s in design if s != spec], "fp32")
        assert error == pytest.approx(rest.predict(spec) / measured(spec).whole_ms - 1, rel=1e-9)


def test_nonnegative_fit_drops_a_negative_cost():
    x = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    y = np.array([0.5, 1.0, 1.5]) - 0.3  # the best plain fit has a negative intercept
    coefficients = nonnegative_least_squares(x, y, np.ones(3))
    assert coefficients[1] == 0 and coefficients[0] > 0
    np.testing.assert_allclose(nonnegative_least_squares(x, y + 0.3 + 0.3, np.ones(3)), [0.5, 0.3], rtol=1e-9)


# --- end to end -------------------------------------------------------------------------


def test_profile_on_local_report_and_select(small_models, tmp_path):
    from support.records import write_manifest
    from mbdeploy.records.store import RunFolder, read_records

    models = tmp_path / "models"
    shutil.copytree(small_models / SMALL.name, models / SMALL.name)
    done = _cli("profile", "--device", "local", "--models", str(models), "--precisions", "fp32,int8",
                "--runs", "30", "--warmup", "1", "--out", "results", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    names = [l.name for l in profile_layers(SMALL)]
    assert sorted(p["precision"] for p in result["profiles"]) == ["fp32", "int8"]
    for summary in result["profiles"]:
        assert summary["method"] == "single_layer" and summary["device"] == "local"
        assert set(summary["whole_ms"]) == {"median", "ci95_low", "ci95_high"} and summary["whole_ms"]["median"] > 0
        assert [l["name"] for l in summary["layers"]] == names
        assert [l["macs"] for l in summary["layers"]] == [l.macs for l in profile_layers(SMALL)]
        for layer in summary["layers"]:
            assert {"name", "type", "macs", "params", "median_ms", "ci95_low_ms", "ci95_high_ms", "gmacs_per_s",
                    "share_of_time", "share_of_macs"} <= set(layer) and layer["median_ms"] > 0
        assert sum(l["share_of_time"] for l in summary["layers"]) == pytest.approx(1.0)
        assert summary["sum_of_layers_ms"] == pytest.approx(sum(l["median_ms"] for l in summary["layers"]))
        assert {t["type"] for t in summary["by_type"]} >= {"Conv 1x1", "Conv DW 3x3"}
        assert all({"type", "share_of_time", "share_of_macs", "gmacs_per_s"} <= set(t) for t in summary["by_type"])
    folder = RunFolder(tmp_path / result["run_dir"])
    layers = read_records(folder.layers_file)
    wholes = {(r["device"]["id"], r["artifact"]["name"], r["artifact"]["sha256"], r["config_key"])
              for r in folder.records()}
    assert len(layers) == 60 and len(wholes) == 2
    for record in layers:
        validate_layer_record(record)
        whole = record["whole"]
        assert (whole["device_id"], whole["name"], whole["sha256"], whole["config_key"]) in wholes
        assert record["latency_ms"]["count"] == 30 and record["stop_reason"] == "runs"
        assert record["schedule"] == "round_robin"  # litert times a model's layers in turn, in one loop

    # --resume is the run's own: a different option is refused naming it, and a bare --resume keeps the
    # run's models and precisions (fp16 and dynamic sit beside them and stay untimed).
    other = _cli("profile", "--device", "local", "--threads", "2", "--out", "results", "--resume", result["run_id"],
                 cwd=tmp_path)
    assert other.returncode == 2 and other.stderr.startswith("Error: --resume"), other.stderr
    assert "--threads 2 (the run has 1)" in other.stderr and "Traceback" not in other.stderr
    # --resume skips what the run holds: no new whole or layer record.
    bare = _cli("profile", "--device", "local", "--precisions", "fp32,int8", "--out", "results", "--resume",
                result["run_id"], "--json", cwd=tmp_path)
    assert bare.returncode == 0, bare.stderr
    resumed = json.loads(bare.stdout)
    assert (resumed["records"], resumed["layer_records"], len(resumed["profiles"])) == (0, 0, 2)

    # The report's section and results.csv's per-layer rows.
    report = _cli("report", "results", "--out", "report", "--json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Where the time goes" in page and "1x1 convolutions take" in page
    assert {"layer_time_vs_macs", "gmacs_along_depth"} <= {f["name"] for f in json.loads(report.stdout)["figures"]}
    import csv

    rows = list(csv.DictReader((tmp_path / "report" / "results.csv").open()))
    assert sorted(r["layer"] for r in rows if r["layer"] and r["precision"] == "fp32") == sorted(names)
    assert len([r for r in rows if not r["layer"]]) == 2

    # select predicts an unmeasured model from the layer model.
    other = ModelSpec(0.25, 160)
    write_manifest(models, other, [{"format": "tflite", "precision": "fp32"}])
    chosen = _cli("select", "--device", "local", "--budget-ms", "1000", "--results", "results", "--models",
                  str(models), "--json", cwd=tmp_path)
    candidates = {(c["model"], c["precision"]): c for c in json.loads(chosen.stdout)["candidates"]}
    predicted = candidates[(other.name, "fp32")]
    assert predicted["latency_source"] == "predicted" and predicted["predictor"] == "layer model"
    assert predicted["latency_ms"] > 0 and predicted["fit_points"] == 1
    table = _cli("select", "--device", "local", "--budget-ms", "1000", "--results", "results", "--models",
                 str(models), cwd=tmp_path)
    assert "predicted (layer model," in table.stdout


def test_an_alpha_whose_width_rounds_is_profiled_from_its_manifest(tmp_path):
    # 1024 x 0.3 rounds to 307 channels, which reads back as alpha 0.2998 (no model id): the manifest says 0.3.
    from mbdeploy import bench
    from mbdeploy.convert import ConvertRequest, convert_model
    from mbdeploy.devices.registry import describe, resolve
    from mbdeploy.profile.sweep import ProfileOptions, run_profile
    from mbdeploy.runners.base import TimingOptions

    convert_model(ConvertRequest(alpha=0.3, resolution=128, out_dir=tmp_path / "models", formats=["tflite"],
                                 precisions=["fp32"], verify=False))
    devices = resolve("local")
    options = ProfileOptions(bench=bench.BenchOptions(timing=TimingOptions(runs=3, warmup_runs=1)), layer_max_secs=2)
    folder = bench.start_run(tmp_path / "results", options.bench, [tmp_path / "models"], [{"id": "local"}])
    try:
        records, layers = run_profile(devices, [describe(d).to_dict() for d in devices],
                                      bench.collect_artifacts([tmp_path / "models"], ["fp32"], ["tflite"]), folder,
                                      options)
    finally:
        for device in devices:
            device.close()
    assert [r["status"] for r in records] == ["ok"]
    assert [r["layer"]["name"] for r in layers] == [l.name for l in profile_layers(ModelSpec(0.3, 128))]


def test_profile_over_ssh(small_models, tmp_path):
    from support.sshd import sshd
    from mbdeploy import bench
    from mbdeploy.devices.ssh import SshDevice
    from mbdeploy.profile.sweep import ProfileOptions, run_profile
    from mbdeploy.runners.base import TimingOptions

    with sshd(tmp_path / "sshd") as (url, config):
        device = SshDevice(f"{url}?python={sys.executable}&workdir={tmp_path / 'remote'}", ssh_config=config)
        try:
            options = ProfileOptions(bench=bench.BenchOptions(timing=TimingOptions(runs=10, warmup_runs=1)))
            folder = bench.start_run(tmp_path / "results", options.bench, [small_models], [{"id": device.id}])
            artifacts = bench.collect_artifacts([small_models / SMALL.name], ["int8"], ["tflite"])
            records, layers = run_profile([device], [device.info().to_dict()], artifacts, folder, options)
        finally:
            device.close()
    assert [r["status"] for r in records] == ["ok"] and records[0]["device"]["kind"] == "ssh"
    assert len(layers) == 30 and all(r["status"] == "ok" and r["method"] == "single_layer" for r in layers)
    assert all(r["model"]["inputs"][0]["dtype"] == "int8" for r in layers)


def test_profile_on_the_adb_test_device(server, phone, reference_dir, tmp_path):
    done = _cli("profile", "--device", "pixel", "--runner", "litert", "--adb-host", server.address, "--models",
                str(reference_dir / "mobilenet_v1_0.25_128_quant.tflite"), "--runs", "10", "--warmup", "1",
                "--out", "results", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [summary] = json.loads(done.stdout)["profiles"]
    assert summary["device_kind"] == "android" and summary["precision"] == "uint8"
    assert summary["method"] == "single_layer" and len(summary["layers"]) == 30
    assert all(layer["median_ms"] > 0 for layer in summary["layers"])
    assert not (phone.root / "data/local/tmp/mbdeploy").exists()  # cleaned up after the run


def test_profile_with_benchmark_model_on_the_adb_test_device_maps_its_pulled_op_profile(server, phone, small_models,
                                                                                      tmp_path):
    # The classic tool as a stand-in (it is an Android binary): timings on stderr as upstream prints them
    # (tests/transcripts), and for --op_profiling_output_file the profile file, built from the artifact's own
    # nodes in upstream's profiling_info.proto shape (node names as ProfileSummarizer writes them).
    path = _artifact(small_models, "fp32")
    ops = _op_names(path)
    profile = tmp_path / "op_profile.pb"
    profile.write_bytes(_proto([{"name": f"[{tensor}]:{i}", "node_type": op, "run_order": i, "avg_us": 7 * (i + 1),
                                 "count": 50} for i, (op, tensor) in enumerate(ops)]))
    transcript = Path(__file__).parent / "transcripts" / "litert_xnnpack_percentiles.txt"
    stand_in = tmp_path / "benchmark_model"
    stand_in.write_text("#!/bin/sh\n"
                        "for a in \"$@\"; do case $a in --op_profiling_output_file=*) "
                        f"cp '{profile}' \"${{a#*=}}\" ;; esac; done\n"
                        f"cat '{transcript}' >&2\n")
    stand_in.chmod(0o755)
    done = _cli("profile", "--device", "pixel", "--runner", "benchmark_model", "--benchmark-binary", str(stand_in),
                "--adb-host", server.address, "--models", str(path), "--out", "results", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [summary] = json.loads(done.stdout)["profiles"]
    assert summary["device_kind"] == "android" and summary["method"] == "op_profile"
    assert [layer["name"] for layer in summary["layers"]] == [layer.name for layer in profile_layers(SMALL)]
    assert summary["layers"][0]["mean_ms"] == pytest.approx(0.007)  # Conv2d_0 is node 0
    assert summary["layers"][0]["median_ms"] is None  # the tool reports averages only
    assert summary["sum_of_layers_ms"] == pytest.approx(sum(7 * (i + 1) for i in range(len(ops))) / 1e3)
    [run] = [p for p in (tmp_path / "results").iterdir() if p.is_dir()]
    assert len((run / "layers.jsonl").read_text().splitlines()) == 30
    assert not (phone.root / "data/local/tmp/mbdeploy").exists()


def test_op_profile_needs_a_runner_that_profiles(small_models, tmp_path):
    done = _cli("profile", "--device", "local", "--method", "op_profile", "--models", str(small_models),
                "--precisions", "fp32", cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith("Error: the litert runner has no op profile")


def test_select_quotes_the_layer_models_error_for_the_candidates_kind_of_width():
    from dataclasses import replace

    from mbdeploy.select import _layer_model_error

    design = [ModelSpec(0.25, 128), ModelSpec(1.0, 224), ModelSpec(1.0, 128)]
    model = fit_layer_model([replace(_synthetic(s), spec=s) for s in design], "fp32")
    group = ("dev", "tflite", "fp32", "cfg")

    def row(spec: ModelSpec, ms: float) -> dict:
        return {"device_id": "dev", "format": "tflite", "precision": "fp32", "config_key": "cfg", "model": spec.name,
                "alpha": spec.alpha, "resolution": spec.resolution, "latency_ms_median": ms}

    at_profiled, elsewhere = ModelSpec(0.25, 224), ModelSpec(0.5, 160)
    rows = [row(at_profiled, model.predict(at_profiled) * 1.10), row(elsewhere, model.predict(elsewhere) * 1.30)]
    # Each candidate is judged by measured models of its own kind: 10% off at profiled widths, 30% elsewhere.
    assert _layer_model_error(model, rows, group, ModelSpec(0.25, 192)) == pytest.approx(0.1 / 1.1)
    assert _layer_model_error(model, rows, group, ModelSpec(0.75, 192)) == pytest.approx(0.3 / 1.3)
    # With no measured model of its kind: leave-one-out, or each profiled width left out.
    assert _layer_model_error(model, rows[1:], group, ModelSpec(0.25, 192)) == model.loo_median_abs_error
    assert _layer_model_error(model, rows[:1], group, ModelSpec(0.75, 192)) == model.width_out_median_abs_error
    assert model.width_out_median_abs_error is not None


def test_select_prefers_the_power_law_at_an_unprofiled_width_only_when_it_expects_less_error():
    from dataclasses import replace

    from mbdeploy.records.fit import PowerLawFit
    from mbdeploy.select import Candidate, _power_law_expects_less

    design = [ModelSpec(0.25, 128), ModelSpec(1.0, 224), ModelSpec(1.0, 128)]
    model = fit_layer_model([replace(_synthetic(s), spec=s) for s in design], "fp32")
    candidate = Candidate("m", "tflite", "fp32", 100.0, None, None, None)
    law = PowerLawFit(slope=1.0, intercept=-13.8, r_squared=0.99, points=16, loo_errors=(0.04, -0.04))
    assert _power_law_expects_less(model, 0.08, law, ModelSpec(0.5, 160), candidate)
    assert not _power_law_expects_less(model, 0.02, law, ModelSpec(0.5, 160), candidate)
    assert not _power_law_expects_less(model, 0.08, law, ModelSpec(0.25, 160), candidate)  # a profiled width
    assert not _power_law_expects_less(model, 0.08, None, ModelSpec(0.5, 160), candidate)
