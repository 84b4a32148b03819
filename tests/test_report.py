"""`mbdeploy report`: results.csv from the records, the six figures, the page, and the page in a real browser."""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support.cli import run_cli
from support.records import grid_run, make_record, power_law_latency, write_manifest, write_run

from mbdeploy.architecture import ModelSpec, grid_specs
from mbdeploy.errors import ResultsError
from mbdeploy.published import PUBLISHED
from mbdeploy.report import write_report
from mbdeploy.records.reader import load_run

FIGURES = ("latency_vs_macs", "energy_vs_macs", "accuracy_vs_latency", "speedup_over_fp32", "model_size", "throughput")
INT8_SPEEDUP = 2.5


def _full_results(root: Path, models: Path) -> list[dict]:
    """Two devices; fp32 and int8 on the host with energy; official weights; one measured accuracy; one failure."""
    measured = ModelSpec(0.5, 160)
    for spec in grid_specs():
        write_manifest(models, spec, [{"format": "tflite", "precision": "fp32"}, {"format": "tflite", "precision": "int8"}],
                       source="tflite", trained=True,
                       accuracy={"tflite/int8": {"top1_percent": 58.5, "top5_percent": 81.0}} if spec == measured else None)
    records = []
    for spec in grid_specs():
        median = power_law_latency(spec)
        records.append(make_record("full", spec, median=median, energy_mj=median * 3.0, weights_source="tflite"))
        records.append(make_record("full", spec, median=median / INT8_SPEEDUP, precision="int8", energy_mj=median,
                                   weights_source="tflite", throttled=spec.alpha == 1.0))
        records.append(make_record("full", spec, median=median * 4, device="pixel", kind="android", weights_source="tflite"))
    records.append(make_record("full", ModelSpec(0.25, 128), median=1.0, device="pixel", kind="android",
                               precision="fp16", status="failed"))
    write_run(root, "full", records, meta={"host": {"hostname": "bench-box"}, "tools": {"ai-edge-litert": "2.3.0"},
                                           "options": {"threads": 1}})
    return records


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """One report over the full fixture, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("full")
    records = _full_results(root / "results", root / "models")
    return records, write_report([root / "results"], root / "out", [root / "models"])


def test_results_csv_holds_the_records_numbers(full_report):
    records, report = full_report
    with open(report.csv) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(records) == report.records
    for header in ("latency_ms_median", "latency_ms_ci95_low", "latency_ms_ci95_high", "macs_m", "params_m",
                   "energy_mj", "avg_power_mw", "size_bytes", "gmacs_per_s", "throttled", "top1_percent"):
        assert header in rows[0]
    for record, row in zip(records, rows):
        artifact = record["artifact"]
        assert (row["model"], row["format"], row["precision"], row["device_id"]) == (
            artifact["name"], artifact["format"], artifact["precision"], record["device"]["id"])
        assert float(row["macs_m"]) == pytest.approx(artifact["macs"] / 1e6)
        assert int(row["size_bytes"]) == artifact["bytes"]
        if record["status"] != "ok":
            assert row["status"] == "failed" and row["latency_ms_median"] == "" and row["error"]
            continue
        latency = record["latency_ms"]
        assert float(row["latency_ms_median"]) == pytest.approx(latency["median"])
        assert float(row["latency_ms_ci95_low"]) == pytest.approx(latency["ci95_low"])
        assert float(row["latency_ms_ci95_high"]) == pytest.approx(latency["ci95_high"])
        assert float(row["gmacs_per_s"]) == pytest.approx(artifact["macs"] / (latency["median"] / 1e3) / 1e9)
        assert row["throttled"] == str(record["throttled"])
        energy = record["power"].get("energy_mj")
        assert (float(row["energy_mj"]) if row["energy_mj"] else None) == (pytest.approx(energy) if energy else None)
        # Accuracy: published top-1 for official float weights, measured where eval ran, none for quantized otherwise.
        if artifact["precision"] == "fp32":
            assert (float(row["top1_percent"]), row["accuracy_source"]) == (PUBLISHED[artifact["name"]].top1, "published")
        elif artifact["name"] == "mobilenet_v1_0.5_160":
            assert (float(row["top1_percent"]), row["accuracy_source"]) == (58.5, "measured")
        else:
            assert row["top1_percent"] == "" and row["accuracy_source"] == ""
        # The run was made on another host: no fraction of this host's peak.
        assert row["fraction_of_peak"] == ""


def test_fraction_of_peak_only_for_fp32_from_the_peak_the_device_recorded(tmp_path):
    from mbdeploy.devices.peak import CpuPeak

    peak = CpuPeak("Test CPU @ 2.50GHz", "avx2+fma", 16, 2.5, "model name", 2)
    spec = ModelSpec(0.25, 128)
    records = [make_record("here", spec, median=2.0, threads=1), make_record("here", spec, median=1.0, precision="int8")]
    for record in records:
        record["device"]["extra"] = {"cpu_peak": peak.to_dict()}
    write_run(tmp_path / "results", "here", records)
    report = write_report([tmp_path / "results"], tmp_path / "out")
    with open(report.csv) as handle:
        fp32, int8 = list(csv.DictReader(handle))
    gmacs = spec_macs = float(fp32["macs_m"]) / 2.0
    assert float(fp32["gmacs_per_s"]) == pytest.approx(spec_macs)
    assert float(fp32["peak_gmacs_per_s"]) == pytest.approx(peak.gmacs_per_s(1))
    assert float(fp32["fraction_of_peak"]) == pytest.approx(gmacs / peak.gmacs_per_s(1))
    assert int8["fraction_of_peak"] == ""


def test_every_figure_drawn_as_png_and_svg_and_the_page_is_self_contained(full_report):
    _, report = full_report
    assert [f.name for f in report.figures] == list(FIGURES)
    for figure in report.figures:
        assert figure.note is None, figure.note
        assert figure.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in figure.svg.read_text()[:2000]
    page = report.index.read_text()
    assert page.count('<img alt="') == 6 and page.count("data:image/png;base64,") == 6
    # No network asset: every src/href is a data URI, a fragment or a file beside the page.
    for target in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert target.startswith("data:") or not re.match(r"^[a-z]+://|^//", target), target
        if not target.startswith("data:"):
            assert (report.index.parent / html.unescape(target)).is_file()
    assert "<script" not in page
    # Tables: one row per record (49), the throttled ones marked, the failure with its message, run metadata.
    records_table = page.split("<h2>Every record</h2>")[1].split("<h2>Runs</h2>")[0]
    assert records_table.count("<tr") == 1 + 49
    assert records_table.count('class="throttled"') == 4
    assert "failed: model failed to load" in records_table
    assert "bench-box" in page and "ai-edge-litert" in page
    # The per-device summary carries each fit's R^2 (exact power law: 1.000).
    summary = page.split("<h2>Devices</h2>")[1].split("<h2>Figures</h2>")[0]
    assert "tflite fp32 cfg1: R\u00b2 1.000" in summary and "pixel" in summary
    assert {tuple(k) for k in report.fits} == {("host", "tflite", "fp32", "cfg1"), ("host", "tflite", "int8", "cfg1"),
                                                ("pixel", "tflite", "fp32", "cfg1")}


def test_figures_without_data_are_replaced_by_a_visible_note(tmp_path):
    grid_run(tmp_path / "results")  # random weights, fp32 only, no power sensor
    report = write_report([tmp_path / "results"], tmp_path / "out")
    notes = {f.name: f.note for f in report.figures}
    assert notes["energy_vs_macs"] == "No power was measured in these runs (power status: unavailable)."
    assert notes["accuracy_vs_latency"].startswith("No accuracy known")
    assert notes["speedup_over_fp32"].startswith("No model was measured both in fp32")
    assert notes["latency_vs_macs"] is None and notes["model_size"] is None
    assert not (tmp_path / "out" / "energy_vs_macs.png").exists()
    page = report.index.read_text()
    assert "Not drawn: No power was measured in these runs" in page


def test_a_last_line_without_newline_is_ignored_and_a_broken_one_is_skipped_with_a_warning(tmp_path):
    run, records = grid_run(tmp_path / "results")
    with open(run / "results.jsonl", "a") as handle:
        handle.write(json.dumps(records[0])[:80])  # a write cut short
    assert len(load_run(run).records) == 16 and load_run(run).skipped == []
    with open(run / "results.jsonl", "a") as handle:
        handle.write("\n")  # now the broken line is a whole line: a damaged file
    with pytest.warns(UserWarning, match="results.jsonl:17: unparsable line skipped"):
        damaged = load_run(run)
    assert len(damaged.records) == 16 and len(damaged.skipped) == 1
    bad = dict(records[0], latency_ms={"median": -1.0, "mean": 1.0, "count": 3})
    other = tmp_path / "other" / "r"
    other.mkdir(parents=True)
    (other / "results.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.warns(UserWarning, match="results.jsonl:1: record rejected by the schema at latency_ms"):
        assert load_run(other).records == []


def test_cli_defaults_to_results_and_prints_the_page(tmp_path):
    for run_id in ("a", "b"):
        write_run(tmp_path / "results", run_id, [make_record(run_id, s, median=power_law_latency(s))
                                                 for s in grid_specs()[-3:]])
    done = run_cli("report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    index = tmp_path / "results" / "report" / "index.html"
    assert done.stdout.strip() == str(Path("results/report/index.html")) and index.is_file()
    again = run_cli("report", tmp_path / "results" / "a", "--out", tmp_path / "one", "--json", cwd=tmp_path)
    data = json.loads(again.stdout)
    assert data["records"] == 3 and data["runs"] == 1 and len(data["fits"]) == 1
    assert data["fits"][0]["points"] == 3 and data["fits"][0]["r_squared"] is None  # too few to judge the fit
    missing = run_cli("report", tmp_path / "nothing-here")
    assert missing.returncode == 1 and missing.stderr.startswith("Error: no result run") and "Traceback" not in missing.stderr


# --- the page in a real browser --------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Injected at the top of a copy of the page: records load errors and console errors, then,
# once everything loaded, writes each image's natural size into the DOM for --dump-dom.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push(String(e.message || (e.target && (e.target.alt || e.target.tagName)) || 'error'));
}, true);
(function () { var original = console.error; console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, ' ')); return original.apply(console, arguments); }; })();
window.addEventListener('load', function () {
  var images = Array.prototype.map.call(document.images, function (i) {
    return {alt: i.alt, width: i.naturalWidth, height: i.naturalHeight, complete: i.complete}; });
  var marker = document.createElement('pre');
  marker.id = 'render-check';
  marker.textContent = JSON.stringify({images: images, errors: window.__errors});
  document.body.appendChild(marker);
});
</script>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the browser test needs it")
    return found


def _browse(chromium: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(profile)})


def _render_check(chromium: str, page: Path, profile: Path) -> dict:
    # A copy of the page's folder (its SVG links resolve there too) with the probe in the page.
    folder = shutil.copytree(page.parent, profile.with_name(profile.name + "-page"))
    probe_page = folder / page.name
    probe_page.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    done = _browse(chromium, probe_page, profile, "--virtual-time-budget=10000", "--dump-dom")
    marker = re.search(r'<pre id="render-check">(.*?)</pre>', done.stdout, re.S)
    assert marker, f"the page never finished loading in chromium: {done.stderr[-2000:]}"
    return json.loads(html.unescape(marker.group(1)))


def test_page_renders_every_figure_in_headless_chromium(full_report, tmp_path):
    from PIL import Image

    chromium = _chromium()
    _, report = full_report

    screenshot = tmp_path / "page.png"
    shot = _browse(chromium, report.index, tmp_path / "profile-shot", "--enable-logging=stderr", "--v=0",
                   f"--screenshot={screenshot}", "--window-size=1280,4000")
    assert screenshot.is_file(), shot.stderr[-2000:]
    with Image.open(screenshot) as image:
        assert image.size == (1280, 4000)
        assert len(image.convert("L").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50  # not a blank page
    console_errors = [line for line in shot.stderr.splitlines() if ":CONSOLE" in line]
    assert console_errors == []

    check = _render_check(chromium, report.index, tmp_path / "profile-dom")
    assert check["errors"] == []
    assert [image["alt"] for image in check["images"]] == [f.title for f in report.figures]
    for image in check["images"]:
        assert image["complete"] and image["width"] > 300 and image["height"] > 200, image

    # The check can fail: a page with a broken figure is caught.
    broken = tmp_path / "broken" / "index.html"
    broken.parent.mkdir()
    broken.write_text(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,AAAA",
                             report.index.read_text(), count=1))
    check = _render_check(chromium, broken, tmp_path / "profile-broken")
    assert check["images"][0]["width"] == 0 and check["errors"]


def test_report_and_select_over_a_real_local_bench_run(reference_dir, tmp_path):
    """The real pipeline: converted precisions, eval on the reference photos, a bench on `local`, then report."""
    from mbdeploy import bench
    from mbdeploy.devices.registry import describe, resolve
    from mbdeploy.evaluate import evaluate, load_dataset
    from mbdeploy.runners.base import TimingOptions
    from mbdeploy.select import select_model

    from mbdeploy.convert import ConvertRequest, convert_model

    # Google's weights: a top-1 measured on random weights is chance level and used nowhere.
    models = tmp_path / "models"
    convert_model(ConvertRequest(0.25, 128, reference_dir / "mobilenet_v1_0.25_128_quant.tflite", models,
                                 formats=["tflite"]))
    photos = tmp_path / "photos"
    for photo, label in {"cat.bmp": "tabby", "bird.bmp": "chickadee"}.items():
        (photos / label).mkdir(parents=True)
        shutil.copy(reference_dir / photo, photos / label / photo)
    evaluate([models], load_dataset(photos, class_names=reference_dir / "imagenet_labels.txt"))

    options = bench.BenchOptions(timing=TimingOptions(threads=1, runs=5, warmup_runs=1), idle_power_s=0)
    devices = resolve("local")
    infos = [describe(d).to_dict() for d in devices]
    folder = bench.start_run(tmp_path / "results", options, [models], infos)
    try:
        records = bench.run_sweep(devices, infos, bench.collect_artifacts([models]), folder, options)
    finally:
        for device in devices:
            device.close()
    assert {r["artifact"]["precision"] for r in records if r["status"] == "ok"} == {"fp32", "fp16", "dynamic", "int8"}

    report = write_report([tmp_path / "results"], tmp_path / "out")  # manifests found through the records
    with open(report.csv) as handle:
        rows = list(csv.DictReader(handle))
    # Two photos: the release's figure (50,000 images) is tighter for the float artifacts; the quantized ones
    # have none, and a drop measured on 2 photos is too uncertain for an estimate: their own figure, warned.
    sources = {row["precision"]: row["accuracy_source"] for row in rows}
    assert sources["fp32"] == sources["fp16"] == "published"
    assert sources["int8"] == sources["dynamic"] == "measured"
    assert {row["accuracy_warning"] for row in rows if row["accuracy_source"] == "measured"} == {
        "measured on 2 images only (evaluate a few hundred or more for a figure to rank by)"}
    assert all(float(row["top1_ci95_low"]) <= float(row["top1_percent"]) <= float(row["top1_ci95_high"])
               for row in rows)
    notes = {f.name: f.note for f in report.figures}
    assert notes["speedup_over_fp32"] is None and notes["accuracy_vs_latency"] is None
    by_precision = {row["precision"]: row for row in rows}
    for record in records:
        row = by_precision[record["artifact"]["precision"]]
        assert float(row["latency_ms_median"]) == pytest.approx(record["latency_ms"]["median"])

    device = records[0]["device"]["id"]
    selection = select_model(device, 1e6, [tmp_path / "results"], [models])
    best = max(float(row["top1_ci95_low"]) for row in rows)  # ranked by the lower end of the 95% interval
    assert selection.chosen.top1_ci95[0] == pytest.approx(best) and selection.chosen.latency_source == "measured"
