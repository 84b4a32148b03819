"""The report over a fleet (100 devices: heatmaps, ranking, small multiples, focus options) and over a
history (median and CI over time per match key, regressions marked as compare judges them, --since)."""

from __future__ import annotations

import copy
import json

import pytest
from support.cli import run_cli
from support.records import make_record, write_run

from mbdeploy.architecture import ModelSpec
from mbdeploy.records.reader import load_runs, tidy_rows
from mbdeploy.report import write_report
from mbdeploy.report.figures import FIGURES
from mbdeploy.report.fleet import MAX_LEGEND, small_multiples
from mbdeploy.report.history import judged_history
from test_report import _browse, _chromium, _render_check

SMALL, LARGE = ModelSpec(0.25, 128), ModelSpec(0.5, 160)
DEVICES = 100


def _fleet(root, devices=DEVICES):
    """One run: every device timed three artifacts; device i is (1 + i/10) times slower than device 0."""
    templates = [make_record("fleet", spec, median=base, fmt=fmt, precision=precision, energy_mj=base * 2)
                 for spec, base in ((SMALL, 2.0), (LARGE, 6.0)) for fmt, precision in (("tflite", "fp32"),
                                                                                      ("tflite", "int8"))][:3]
    records = []
    for device in range(devices):
        for template in templates:
            record = copy.deepcopy(template)
            record["device"]["id"] = f"phone-{device:03d}"
            for key in ("median", "mean", "p5", "p90", "p95", "p99", "std", "min", "max", "ci95_low", "ci95_high"):
                record["latency_ms"][key] *= 1 + device / 10
            records.append(record)
    return write_run(root, "fleet", records)


@pytest.fixture(scope="module")
def fleet_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    _fleet(root / "results")
    return root, write_report([root / "results"], root / "report")


def test_a_hundred_devices_get_the_fleet_view_not_crowded_axes(fleet_report):
    root, report = fleet_report
    drawn = {f.name: f for f in report.figures}
    for name, _, _ in FIGURES:  # one series per device would crowd them: a note says where to look instead
        assert drawn[name].png is None and "fleet view" in drawn[name].note
    for name in ("fleet_latency_heatmap", "fleet_energy_heatmap", "fleet_small_multiples"):
        assert drawn[name].png.is_file() and drawn[name].svg is None  # drawn once, as the page shows it
    page = report.index.read_text()
    assert "<h2>Fleet: 100 devices</h2>" in page
    ranking = page[page.index("Devices ranked for"):]
    ranks = [ranking.index(f"<td>phone-{d:03d}</td>") for d in (0, 1, 50, 99)]
    assert ranks == sorted(ranks)  # fastest first
    # The only legend in the small multiples names two things, not 100 devices.
    rows = tidy_rows(load_runs([root / "results"]))
    figure = small_multiples(rows)
    entries = [len(legend.get_texts()) for legend in figure.legends]
    entries += [len(axes.get_legend().get_texts()) for axes in figure.axes if axes.get_legend()]
    assert entries and max(entries) <= MAX_LEGEND


def test_the_fleet_page_renders_in_headless_chromium(fleet_report, tmp_path):
    from PIL import Image

    chromium = _chromium()
    _, report = fleet_report
    screenshot = tmp_path / "fleet-page.png"  # kept in the test's output folder
    shot = _browse(chromium, report.index, tmp_path / "profile-shot", f"--screenshot={screenshot}",
                   "--window-size=1280,3000")
    assert screenshot.is_file(), shot.stderr[-2000:]
    with Image.open(screenshot) as image:
        assert len(image.convert("L").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50
    check = _render_check(chromium, report.index, tmp_path / "profile-dom")
    assert check["errors"] == []
    drawn = [f.title for f in report.figures if f.png is not None]
    assert [image["alt"] for image in check["images"]] == drawn
    for image in check["images"]:
        assert image["complete"] and image["width"] > 300 and image["height"] > 200, image


def test_device_and_model_patterns_focus_the_report(fleet_report, tmp_path):
    root, _ = fleet_report
    focused = write_report([root / "results"], tmp_path / "few", device="phone-00[0-3]", model="*_128")
    assert focused.records == 4 * 2
    drawn = {f.name for f in focused.figures if f.png is not None}
    assert "latency_vs_macs" in drawn and "fleet_latency_heatmap" not in drawn  # few series: the usual figures
    page = focused.index.read_text()
    assert "phone-003" in page and "phone-004" not in page and "0.5_160" not in page
    result = run_cli(*["report", str(root / "results"), "--out", str(tmp_path / "none"), "--device", "ipad*"])
    assert result.returncode != 0 and result.stderr.startswith("Error: no record matches --device ipad*")


def _night(root, day, *, slow=1.0, between=0.02, label=None):
    when = f"2026-03-{day:02d}T02:00:00Z"
    records = [make_record(f"night-{day}", spec, median=base * (slow if device == "dev-a" else 1.0), device=device,
                           started_at=when, between=between)
               for device in ("dev-a", "dev-b") for spec, base in ((SMALL, 2.0), (LARGE, 6.0))]
    meta = {"tools": {"mbdeploy": "0.1.0", "ai-edge-litert": "2.3.0"}, "created_at": when}
    if label:
        meta["label"] = label
    return write_run(root, f"night-{day}", records, meta)


def test_history_marks_what_compare_calls_a_regression(tmp_path):
    results = tmp_path / "results"
    for day in (1, 2, 3):
        _night(results, day, label=f"commit {day}")
    _night(results, 4, slow=1.3, label="commit 4")  # dev-a 30% slower, between-session CIs apart: regressed
    rows = tidy_rows(load_runs([results]))
    judged = judged_history(rows)
    marked = sorted((key[0], key[1]) for key, points in judged.items() for row, verdict, _ in points
                    if verdict == "regressed")
    assert marked == [("dev-a", SMALL.name), ("dev-a", LARGE.name)]
    report = write_report([results], tmp_path / "report")
    assert "history" in {f.name for f in report.figures if f.png is not None}
    page = report.index.read_text()
    history = page[page.index("<h2>History</h2>"):]
    assert "4 match keys" in history and "2 would be called a regression" in history
    assert history.count("<td>regressed</td>") == 2 and "<td>commit 4; ai-edge-litert 2.3.0, mbdeploy 0.1.0</td>" in history
    assert "<td>commit 1</td>" in history

    # Within-session CIs only: compare says "unconfirmed", and so the history marks nothing.
    quiet = tmp_path / "quiet"
    _night(quiet, 1, between=None)
    _night(quiet, 2, slow=1.3, between=None)
    verdicts = {v for points in judged_history(tidy_rows(load_runs([quiet]))).values() for _, v, _ in points}
    assert "regressed" not in verdicts and any(v and v.startswith("slower, unconfirmed") for v in verdicts)


def test_since_limits_the_window(tmp_path):
    results = tmp_path / "results"
    for day in (1, 2, 3):
        _night(results, day)
    report = write_report([results], tmp_path / "report", since="2026-03-02")
    assert report.runs == 2 and "night-1" not in report.index.read_text()
    single = write_report([results], tmp_path / "single", since="2026-03-03")
    assert single.runs == 1 and "<h2>History</h2>" not in single.index.read_text()
    result = run_cli(*["report", str(results), "--out", str(tmp_path / "x"), "--since", "last tuesday"])
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: --since 'last tuesday' is not a date: use YYYY-MM-DD or an ISO time (2026-01-31 or 2026-01-31T12:00:00Z)"]
    result = run_cli(*["report", str(results), "--out", str(tmp_path / "y"), "--since", "2027-01-01"])
    assert result.returncode != 0 and "no run started on or after it" in result.stderr
