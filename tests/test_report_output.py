"""The report's folder, notes, legends and fit quality (issue 13, item 25)."""

from __future__ import annotations

import json

from support.cli import run_cli
from support.records import grid_run, make_record, power_law_latency, write_run

from mbdeploy.architecture import ModelSpec, grid_specs

SPECS = [ModelSpec(0.25, 128), ModelSpec(0.5, 160), ModelSpec(0.75, 192), ModelSpec(1.0, 224)]


def test_a_new_report_replaces_the_old_folder_whole(tmp_path):
    results, out = tmp_path / "results", tmp_path / "report"
    write_run(results, "powered", [make_record("powered", s, median=power_law_latency(s), energy_mj=2.0) for s in SPECS])
    first = run_cli("report", results, "--out", out, "--json")
    assert first.returncode == 0, first.stderr
    assert (out / "energy_vs_macs.png").exists()
    # The next report covers only a run without power: no energy figure may survive beside its index.
    unpowered = tmp_path / "unpowered"
    write_run(unpowered, "plain", [make_record("plain", s, median=power_law_latency(s)) for s in SPECS])
    second = run_cli("report", unpowered, "--out", out, "--json")
    assert second.returncode == 0, second.stderr
    assert not (out / "energy_vs_macs.png").exists() and not (out / "energy_vs_macs.svg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "results", "unpowered"]  # no staging left
    written = json.loads(second.stdout)
    assert all((f["png"] is None) == (f["note"] is not None) for f in written["figures"])
    assert all(__import__("pathlib").Path(f["png"]).exists() for f in written["figures"] if f["png"])


def test_the_report_folder_gets_the_users_usual_mode_not_mkdtemps_0700(tmp_path):
    import os
    import stat

    results, out = tmp_path / "results", tmp_path / "report"
    write_run(results, "run", [make_record("run", s, median=power_law_latency(s)) for s in SPECS])
    old = os.umask(0o022)
    try:
        done = run_cli("report", results, "--out", out, "--json")
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


def test_a_folder_holding_other_files_is_refused_and_left_alone(tmp_path):
    results, out = tmp_path / "results", tmp_path / "mine"
    write_run(results, "r", [make_record("r", s, median=power_law_latency(s)) for s in SPECS])
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    done = run_cli("report", results, "--out", out)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"Error: --out {out} holds files a report did not write (notes.txt); the report replaces its folder "
        "whole: name a new or empty folder, or an earlier report's")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_power_read_without_energy_is_not_called_unmeasured(tmp_path):
    results = tmp_path / "results"
    records = []
    for spec in SPECS:
        record = make_record("r", spec, median=power_law_latency(spec))
        # As the battery gauge reports it when load power never rose above idle: no energy per inference.
        record["power"] = {"status": "ok", "source": "fixture-meter", "avg_power_mw": 800.0, "energy_mj": None}
        records.append(record)
    write_run(results, "r", records)
    done = run_cli("report", results, "--out", tmp_path / "out", "--json")
    assert done.returncode == 0, done.stderr
    note = next(f["note"] for f in json.loads(done.stdout)["figures"] if f["name"] == "energy_vs_macs")
    assert note == ("Power was read for 4 of 4 record(s), but none gave an energy per inference "
                    "(load power was not above idle power).")


def test_configurations_are_named_apart_in_legends():
    from mbdeploy.records.reader import config_names, record_row
    from mbdeploy.report.figures import latency_vs_macs

    rows = [record_row(make_record("r", spec, median=power_law_latency(spec) / threads, config_key=key,
                                   threads=threads), None)
            for key, threads in (("one", 1), ("four", 4)) for spec in SPECS]
    assert config_names(rows) == {"one": "litert, 1 thread, xnnpack", "four": "litert, 4 threads, xnnpack"}
    figure = latency_vs_macs(rows)
    labels = sorted(text.get_text() for text in figure.axes[0].get_legend().get_texts())
    assert len(set(labels)) == 2
    assert labels[0].startswith("host tflite fp32 (litert, 1 thread, xnnpack)")
    assert labels[1].startswith("host tflite fp32 (litert, 4 threads, xnnpack)")
    # Same runner, threads and delegate but another knob: the key tells them apart.
    for row in rows[len(SPECS):]:
        row["threads"] = 1
    assert config_names(rows) == {"one": "litert, 1 thread, xnnpack [one]", "four": "litert, 1 thread, xnnpack [four]"}


def test_no_fit_quality_from_fewer_than_four_points(tmp_path):
    results = tmp_path / "results"
    few = [make_record("r", s, median=power_law_latency(s) * (1.1 if i == 1 else 1.0), device="tiny")
           for i, s in enumerate(SPECS[:3])]
    write_run(results, "r", few)
    grid_run(results, "grid")  # 16 points on another device: quality shown
    done = run_cli("report", results, "--out", tmp_path / "out", "--json")
    assert done.returncode == 0, done.stderr
    fits = {fit["device"]: fit for fit in json.loads(done.stdout)["fits"]}
    assert fits["tiny"]["points"] == 3 and fits["tiny"]["r_squared"] is None
    assert fits["tiny"]["loo_median_abs_error"] is None
    assert fits["host"]["points"] == len(grid_specs()) and fits["host"]["r_squared"] > 0.99
    page = (tmp_path / "out" / "index.html").read_text()
    assert "tiny" in page and page.count("R\u00b2 ") == 1  # the grid device's fit only


def test_a_damaged_accuracy_section_in_a_manifest_counts_as_no_figure_not_a_traceback():
    # Manifests are files users edit: a figure of the wrong type is absent for select and the report
    # (accuracy_evidence), and for the "top-1 on this device" column (device_accuracy, device_top1).
    from pathlib import Path

    from mbdeploy.records.reader import ManifestEntry, record_row
    from mbdeploy.report.html import device_top1

    record = make_record("r", ModelSpec(0.25, 128), median=3.0)
    artifact, device = dict(record["artifact"]), record["device"]["id"]
    damaged = [{"tflite/fp32": "x"}, {f"tflite/fp32@{device}": "x"}, [1],
               {"tflite/fp32": {"top1_percent": "high", "images": "many"}},
               {f"tflite/fp32@{device}": {"top1_percent": 50.0, "top1_ci95_percent": 5, "images": 3}},
               {f"tflite/fp32@{device}": {"top1_percent": "high"}}, {"tflite/fp32": {"top1_percent": True}}]
    for accuracy in damaged:
        manifest = {"name": artifact["name"], "spec": {}, "artifacts": [artifact], "accuracy": accuracy,
                    "weights": "damaged too"}
        row = record_row(record, ManifestEntry(Path("manifest.json"), manifest, artifact))
        assert row["top1_percent"] is None and row["device_top1_ci95_low"] is None, accuracy
        device_top1(row)
    # A sound device entry is still shown.
    manifest["accuracy"] = {f"tflite/fp32@{device}": {"top1_percent": 50.0, "top1_ci95_percent": [20.0, 80.0],
                                                       "images": 4}}
    row = record_row(record, ManifestEntry(Path("manifest.json"), manifest, artifact))
    assert device_top1(row) == "50.0% (20.0-80.0, 4 images; eval --device)"
