"""results.csv reuses the previous report's rows of unchanged runs (report/results_csv.py) and is always
byte for byte what a report into a fresh folder writes."""

from __future__ import annotations

import os

import pytest
from support.records import make_record, write_manifest, write_run
from test_figure_cache import _within_a_minute

import mbdeploy.report.results_csv as results_csv
from mbdeploy.architecture import ModelSpec
from mbdeploy.records.store import RunFolder
from mbdeploy.report import write_report
from mbdeploy.report.figure_cache import CACHE_FILE as FIGURE_CACHE_FILE
from mbdeploy.report.results_csv import CACHE_FILE

SPECS = (ModelSpec(0.25, 128), ModelSpec(0.5, 160))


@pytest.fixture
def formatted(monkeypatch):
    """The run ids whose rows were formatted (not copied) since the last clear()."""
    runs: list[str] = []
    real = results_csv.csv_lines

    def counting(rows):
        runs.extend(sorted({row["run_id"] for row in rows}))
        return real(rows)

    monkeypatch.setattr(results_csv, "csv_lines", counting)
    return runs


def _run(results, run_id, day, device="host"):
    records = [make_record(run_id, spec, median=2.0 * (i + 1), device=device, weights_source="keras",
                           started_at=f"2026-02-{day:02d}T00:00:00Z") for i, spec in enumerate(SPECS)]
    return write_run(results, run_id, records)


def _fresh(tmp_path, results, models, **focus) -> bytes:
    """results.csv of a report with no earlier report to copy from."""
    out = tmp_path / f"fresh-{len(list(tmp_path.glob('fresh-*')))}"
    return write_report([results], out, [models], **focus).csv.read_bytes()


def test_unchanged_runs_are_copied_and_the_file_equals_a_fresh_one(tmp_path, formatted):
    results, models, out = tmp_path / "results", tmp_path / "models", tmp_path / "report"
    models.mkdir()
    run_a = _run(results, "run-a", 1)
    _run(results, "run-b", 2)

    def report(**focus) -> tuple[bytes, list[str]]:
        """results.csv into `out` (copying from the report there) and the runs formatted for it."""
        formatted.clear()
        csv = write_report([results], out, [models], **focus).csv.read_bytes()
        return csv, sorted(formatted)

    first = report()
    assert first[0].count(b"\n") == 5 and first[1] == ["run-a", "run-b"]
    assert report() == (_fresh(tmp_path, results, models), [])  # nothing changed: all copied

    _run(results, "run-c", 3)  # a new run: only its rows are formatted
    assert report() == (_fresh(tmp_path, results, models), ["run-c"])

    RunFolder(run_a).append(make_record("run-a", SPECS[0], median=9.0, device="other"))  # run-a grew
    assert report() == (_fresh(tmp_path, results, models), ["run-a"])

    # A manifest the rows take accuracy from appeared (it says the weights are untrained, so the
    # release's top-1 no longer applies): every run's rows are made again.
    assert b"weights untrained" not in first[0]
    write_manifest(models, SPECS[0], [{"format": "tflite", "precision": "fp32"}], source="random", trained=False)
    csv, made = report()
    assert (csv, made) == (_fresh(tmp_path, results, models), ["run-a", "run-b", "run-c"])
    assert b"weights untrained" in csv

    # Another focus is other rows.
    assert report(device="other") == (_fresh(tmp_path, results, models, device="other"), ["run-a"])
    report()

    # Bytes of the previous results.csv edited, or the cache file lost: formatted again, never copied wrong.
    damaged = (out / "results.csv").read_bytes().replace(b"run-b", b"run-X", 1)
    (out / "results.csv").write_bytes(damaged)
    assert report() == (_fresh(tmp_path, results, models), ["run-b"])
    (out / CACHE_FILE).unlink()
    assert report() == (_fresh(tmp_path, results, models), ["run-a", "run-b", "run-c"])
    (out / CACHE_FILE).write_text("[not, a, cache")
    assert report() == (_fresh(tmp_path, results, models), ["run-a", "run-b", "run-c"])

    # A FIFO where the previous results.csv or a cache file was is never read (the read would block).
    for name in ("results.csv", CACHE_FILE, FIGURE_CACHE_FILE):
        (out / name).unlink()
        os.mkfifo(out / name)
        made: list = []
        _within_a_minute(lambda: made.append(report()), out / name)
        assert made[0][0] == _fresh(tmp_path, results, models)
