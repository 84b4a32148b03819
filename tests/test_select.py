"""`mbdeploy select`: the most accurate model within budget, measured or predicted from the device's fit."""

from __future__ import annotations

import json

import pytest
from support.cli import run_cli
from support.records import make_record, power_law_latency, write_manifest, write_run

from mbdeploy.accounting import model_cost
from mbdeploy.architecture import ModelSpec, grid_specs
from mbdeploy.errors import InvalidInput, ResultsError
from mbdeploy.manifest import load_manifest, save_manifest
from mbdeploy.published import PUBLISHED
from mbdeploy.select import select_model

UNMEASURED = {"mobilenet_v1_0.75_192", "mobilenet_v1_0.5_224", "mobilenet_v1_0.25_160"}
INT8_SPEEDUP = 2.5


@pytest.fixture()
def world(tmp_path):
    """16 official models (fp32 and int8) with manifests; a phone measured 13 of them in fp32, 4 in int8."""
    models, results = tmp_path / "models", tmp_path / "results"
    for spec in grid_specs():
        write_manifest(models, spec, [{"format": "tflite", "precision": "fp32", "bytes": model_cost(spec).params * 4},
                                      {"format": "tflite", "precision": "int8", "bytes": model_cost(spec).params}],
                       source="slim-checkpoint", trained=True)
    records = [make_record("r1", s, median=power_law_latency(s), device="phone", kind="android",
                           weights_source="slim-checkpoint")
               for s in grid_specs() if s.name not in UNMEASURED]
    records += [make_record("r1", s, median=power_law_latency(s) / INT8_SPEEDUP, device="phone", kind="android",
                            precision="int8", weights_source="slim-checkpoint")
                for s in (ModelSpec(1.0, 224), ModelSpec(0.5, 160), ModelSpec(0.25, 128), ModelSpec(0.75, 128))]
    # Another device's numbers must not leak into the phone's choice.
    records += [make_record("r1", s, median=power_law_latency(s) * 0.01, device="laptop") for s in grid_specs()]
    write_run(results, "r1", records)
    return models, results


def test_chooses_an_unmeasured_model_by_prediction(world):
    models, results = world
    target = ModelSpec(0.75, 192)  # published 67.4%: best of everything at or below its MACs
    budget = power_law_latency(target) * 1.01
    selection = select_model("phone", budget, [results], [models], formats=["tflite"])
    chosen = selection.chosen
    assert (chosen.model, chosen.precision, chosen.latency_source) == (target.name, "fp32", "predicted")
    assert chosen.latency_ms == pytest.approx(power_law_latency(target), rel=1e-6)
    assert chosen.fit_error == pytest.approx(0.0, abs=1e-6) and chosen.fit_points == 13
    assert chosen.top1_percent == PUBLISHED[target.name].top1 and chosen.accuracy_source == "published"
    # Every candidate above it in accuracy is over budget; nothing eligible is more accurate.
    for c in selection.candidates:
        if c.top1_percent is not None and c.top1_percent > chosen.top1_percent:
            assert c.status == "over budget"
        if c.eligible:
            assert c.top1_percent <= chosen.top1_percent


def test_measured_candidate_and_int8_predicted_from_its_own_fit(world):
    models, results = world
    # The published top-1 is the float models'; int8 accuracy counts only once measured (here: 1 point lower).
    for manifest_file in models.rglob("manifest.json"):
        manifest = load_manifest(manifest_file)
        manifest["accuracy"] = {"tflite/int8": {"top1_percent": PUBLISHED[manifest["name"]].top1 - 1.0}}
        save_manifest(manifest_file.parent, manifest)
    budget = power_law_latency(ModelSpec(1.0, 224)) / INT8_SPEEDUP * 1.001
    selection = select_model("phone", budget, [results], [models])
    by_key = {(c.model, c.precision): c for c in selection.candidates}
    # 1.0_224 int8 was measured; it is the most accurate at this budget (fp32 1.0_224 is 2.5x slower).
    assert (selection.chosen.model, selection.chosen.precision, selection.chosen.latency_source) == (
        "mobilenet_v1_1.0_224", "int8", "measured")
    unmeasured_int8 = by_key[("mobilenet_v1_1.0_192", "int8")]
    assert unmeasured_int8.latency_source == "predicted"
    assert unmeasured_int8.latency_ms == pytest.approx(power_law_latency(ModelSpec(1.0, 192)) / INT8_SPEEDUP, rel=1e-6)
    assert unmeasured_int8.fit_points == 4
    assert selection.chosen.top1_percent == pytest.approx(PUBLISHED["mobilenet_v1_1.0_224"].top1 - 1.0)
    assert selection.chosen.accuracy_source == "measured"


def test_size_limit_metric_and_formats(world):
    models, results = world
    big = ModelSpec(1.0, 224)
    budget = power_law_latency(big) * 1.05
    assert select_model("phone", budget, [results], [models], formats=["tflite"]).chosen.model == big.name
    # fp32 1.0_224 is ~17 MB, 1.0_* ~17 MB, 0.75_* ~10 MB: a 12 MB limit leaves 0.75_224 (68.4%) the best.
    limited = select_model("phone", budget, [results], [models], max_size_mb=12)
    assert (limited.chosen.model, limited.chosen.precision) == ("mobilenet_v1_0.75_224", "fp32")
    assert {c.status for c in limited.candidates if c.model == big.name and c.precision == "fp32"} == {"larger than 12 MB"}
    # int8 artifacts have no accuracy until eval measures one: the published top-1 is the float models'.
    assert {c.status for c in limited.candidates if c.precision == "int8" and c.latency_ms < budget} == {
        "accuracy unknown (run mbdeploy eval)"}
    # p90 is 1.1 x the median in these records: the fp32 1.0_224 no longer fits, the best fp32 is 1.0_192.
    p90 = select_model("phone", budget, [results], [models], metric="p90", formats=["tflite"], max_size_mb=100)
    assert p90.chosen.model in {big.name, "mobilenet_v1_1.0_192"}
    assert [c for c in p90.candidates if c.model == big.name and c.precision == "fp32"][0].status == "over budget"


def test_measured_accuracy_overrides_the_published_one(tmp_path):
    models, results = tmp_path / "models", tmp_path / "results"
    small, large = ModelSpec(0.25, 128), ModelSpec(0.5, 128)
    write_manifest(models, small, [{"format": "tflite", "precision": "fp32"}], source="slim-checkpoint", trained=True,
                   accuracy={"tflite/fp32": {"top1_percent": 12.0, "top5_percent": 30.0, "images": 50000}})
    # Random weights: a top-1 measured on them is chance level and never chosen on.
    write_manifest(models, large, [{"format": "tflite", "precision": "fp32"}], source="random",
                   accuracy={"tflite/fp32": {"top1_percent": 0.1, "top5_percent": 0.5}})
    write_run(results, "r", [make_record("r", s, median=power_law_latency(s), manifest=None) for s in (small, large)])
    selection = select_model("host", 100.0, [results], [models])
    assert selection.chosen.model == small.name and selection.chosen.accuracy_source == "measured"
    assert selection.chosen.top1_percent == 12.0  # not the published 41.5
    assert [c.status for c in selection.candidates if c.model == large.name] == [
        "accuracy weights untrained (top-1 meaningless)"]


def test_errors_name_what_is_wrong(world):
    models, results = world
    with pytest.raises(ResultsError, match="no successful record for device 'tablet'; devices in these runs: laptop, phone"):
        select_model("tablet", 10, [results], [models])
    with pytest.raises(InvalidInput, match="budget must be a positive"):
        select_model("phone", 0, [results], [models])
    with pytest.raises(InvalidInput, match="allowed: tflite, coreml, onnx"):
        select_model("phone", 10, [results], [models], formats=["tensorrt"])


def test_cli_prints_the_choice_and_fails_when_nothing_fits(world):
    models, results = world
    budget = power_law_latency(ModelSpec(0.75, 192)) * 1.01
    done = run_cli("select", "--device", "phone", "--budget-ms", budget, "--results", results, "--models", models,
                   "--formats", "tflite", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["chosen"]["model"] == "mobilenet_v1_0.75_192" and data["chosen"]["latency_source"] == "predicted"
    table = run_cli("select", "--device", "phone", "--budget-ms", budget, "--results", results, "--models", models)
    assert "predicted (\u00b10%, fit of 13)" in table.stdout and "Chosen: mobilenet_v1_0.75_192 tflite fp32" in table.stdout
    nothing = run_cli("select", "--device", "phone", "--budget-ms", "0.001", "--results", results, "--models", models)
    assert nothing.returncode == 1 and "Error: no model with known accuracy fits 0.001 ms" in nothing.stderr


# --- issue 13, item 24: names as bench takes them, comma lists, latest record per configuration ---

def test_select_takes_the_device_names_bench_takes(tmp_path, server, phone):
    """`select --device pixel` (the README's example) resolves through the device registry, as bench does."""
    models, results = tmp_path / "models", tmp_path / "results"
    specs = [ModelSpec(0.25, 128), ModelSpec(0.5, 160)]
    for spec in specs:
        write_manifest(models, spec, [{"format": "tflite", "precision": "fp32"}], source="slim-checkpoint", trained=True)
    write_run(results, "r1", [make_record("r1", s, median=power_law_latency(s), device=phone.serial, kind="android")
                              for s in specs])
    for name in ("pixel", "Pixel 7", phone.serial):
        done = run_cli("select", "--device", name, "--budget-ms", "1000", "--results", results, "--models", models,
                       "--adb-host", server.address, "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["device"] == phone.serial
        assert json.loads(done.stdout)["chosen"]["model"] == "mobilenet_v1_0.5_160"
    done = run_cli("select", "--device", "iphone", "--budget-ms", "1000", "--results", results, "--models", models,
                   "--adb-host", server.address)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith("Error: no device matches 'iphone'; candidates:")


def test_select_takes_comma_lists_and_the_latest_record_of_each_configuration(tmp_path):
    models, results = tmp_path / "models", tmp_path / "results"
    spec = ModelSpec(0.5, 160)
    write_manifest(models, spec, [{"format": "tflite", "precision": "fp32"}, {"format": "onnx", "precision": "fp32"}],
                   source="slim-checkpoint", trained=True)
    # An old, fast 1-thread record, then the latest 1-thread one (slower); a 4-thread config in between.
    write_run(results, "old", [make_record("old", spec, median=2.0, config_key="one", threads=1,
                                           started_at="2026-01-01T00:00:00Z")])
    write_run(results, "mid", [make_record("mid", spec, median=4.0, config_key="four", threads=4,
                                           started_at="2026-01-02T00:00:00Z")])
    write_run(results, "new", [make_record("new", spec, median=5.0, config_key="one", threads=1,
                                           started_at="2026-01-03T00:00:00Z")])
    done = run_cli("select", "--device", "host", "--budget-ms", "4.5", "--results", results, "--models", models,
                   "--formats", "tflite,onnx", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    by_config = {(c["format"], c["config"]): c for c in data["candidates"]}
    assert by_config[("tflite", "litert, 1 thread, xnnpack")]["latency_ms"] == 5.0  # the latest, not the faster 2.0
    assert by_config[("tflite", "litert, 1 thread, xnnpack")]["status"] == "over budget"
    assert data["chosen"]["config"] == "litert, 4 threads, xnnpack" and data["chosen"]["latency_ms"] == 4.0
    table = run_cli("select", "--device", "host", "--budget-ms", "4.5", "--results", results, "--models", models,
                    "--formats", "tflite", "--formats", "onnx")
    assert table.returncode == 0, table.stderr
    assert "runner config" in table.stdout and "litert, 4 threads, xnnpack" in table.stdout
    assert "Chosen: mobilenet_v1_0.5_160 tflite fp32 (litert, 4 threads, xnnpack)" in table.stdout
    bad = run_cli("select", "--device", "host", "--budget-ms", "4.5", "--results", results, "--formats", "tflite,tensorrt")
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "Error: Invalid value for '--formats': tensorrt unknown; allowed: tflite, coreml, onnx (a comma list, or "
        "repeat the option) (see 'mbdeploy select --help')")


def test_a_five_image_eval_never_outranks_the_release_figure(tmp_path):
    """The user's report: 5 photos gave 100% and select ranked it above figures from 50,000 images."""
    models, results = tmp_path / "models", tmp_path / "results"
    released, lucky = ModelSpec(0.5, 160), ModelSpec(0.75, 192)
    write_manifest(models, released, [{"format": "tflite", "precision": "fp32"}], source="slim-checkpoint",
                   trained=True)
    five = {"top1_percent": 100.0, "top5_percent": 100.0, "images": 5}
    write_manifest(models, lucky, [{"format": "tflite", "precision": "fp32"}, {"format": "tflite", "precision": "int8"}],
                   source="slim-checkpoint", trained=True, accuracy={"tflite/fp32": five, "tflite/int8": five})
    write_run(results, "r", [make_record("r", s, median=1.0, precision=p, manifest=None)
                             for s in (released, lucky) for p in ("fp32", "int8")])
    selection = select_model("host", 3.0, [results], [models])
    by = {(c.model, c.precision): c for c in selection.candidates}
    # fp32 of 0.75_192: the release's figure (50,000 images) is tighter than 5 images, so it is the one used.
    fp32 = by[(lucky.name, "fp32")]
    assert fp32.accuracy_source == "published" and fp32.top1_percent == PUBLISHED[lucky.name].top1
    # int8 of 0.75_192 has only the 5-image figure: shown with its Wilson interval and a warning, ranked by
    # the interval's lower end (56.6%), below 0.5_160's published 59.9%.
    int8 = by[(lucky.name, "int8")]
    assert int8.accuracy_source == "measured" and int8.top1_percent == 100.0 and int8.accuracy_images == 5
    assert int8.top1_ci95 == pytest.approx((56.55, 100.0), abs=0.01)
    assert "measured on 5 images only" in int8.accuracy_warning
    order = [(c.model, c.precision) for c in selection.candidates]
    assert order.index((released.name, "fp32")) < order.index((lucky.name, "int8"))
    assert PUBLISHED[released.name].top1 == 59.9
    cli = run_cli("select", "--device", "host", "--budget-ms", "3", "--results", results, "--models", models)
    assert cli.returncode == 0, cli.stderr
    assert "measured on 5 images only" in cli.stdout and "56.6-100.0" in cli.stdout


def test_int8_of_trained_weights_gets_an_estimate_from_the_published_fp32_and_the_measured_drop(tmp_path):
    models, results = tmp_path / "models", tmp_path / "results"
    spec = ModelSpec(0.5, 160)
    measured = {"top1_percent": 58.0, "top5_percent": 80.0, "images": 400, "top1_drop_vs_fp32_points": 1.5,
                "top1_drop_ci95_points": [0.5, 2.5]}
    write_manifest(models, spec, [{"format": "tflite", "precision": "int8"}], source="slim-checkpoint", trained=True,
                   accuracy={"tflite/int8": measured})
    write_run(results, "r", [make_record("r", spec, median=1.0, precision="int8", manifest=None)])
    [candidate] = select_model("host", 3.0, [results], [models]).candidates
    # 59.9 - 1.5 = 58.4, interval from the published one (+-0.43 on 50,000 images) less the drop's
    # (as eval stored it): narrower than 400 images' own Wilson interval (+-4.8), so the estimate is used.
    assert candidate.top1_percent == pytest.approx(58.4)
    assert candidate.accuracy_source == "estimate: published fp32 minus the drop measured on 400 images"
    low, high = candidate.top1_ci95
    assert low == pytest.approx(59.9 - 0.43 - 2.5, abs=0.02) and high == pytest.approx(59.9 + 0.43 - 0.5, abs=0.02)
