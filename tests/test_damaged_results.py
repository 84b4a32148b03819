"""Damaged and hostile result files: a full disk, garbage lines, non-finite numbers, spreadsheet formulas.

The commands run through the real CLI; the full disk is a real tmpfs mounted in a
user and mount namespace (`unshare -rm`), as the report of issue 13 used.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from mbdeploy.architecture import grid_specs
from mbdeploy.errors import ResultsError
from mbdeploy.records.schema import validate_record
from mbdeploy.records.store import RunFolder, read_records
from support.cli import PYTHON, harness_env, mbdeploy
from support.namespaces import namespaces_unavailable_reason
from support.records import make_record, power_law_latency, write_run
from support.tiny_model import tiny_tflite

SPECS = grid_specs()[-4:]  # the four 0.25 models


def _run(root: Path, run_id: str, **kwargs) -> Path:
    return write_run(root, run_id, [make_record(run_id, s, median=power_law_latency(s), **kwargs) for s in SPECS])


FILL = """
import os, sys
path, leave = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"x" * 4096)
except OSError:
    pass
os.close(fd)
os.truncate(path, os.path.getsize(path) - leave)
"""


def test_a_full_disk_stops_the_sweep_keeps_every_line_whole_and_resume_finishes(tmp_path):
    reason = namespaces_unavailable_reason()
    if reason:
        pytest.skip(reason)
    for channels in (4, 8, 12, 16, 20):
        tiny_tflite(tmp_path / "models" / f"m{channels}.tflite", channels=channels)
    (tmp_path / "fs").mkdir()
    (tmp_path / "fill.py").write_text(FILL)
    bench = f"{PYTHON} -m mbdeploy bench --device local --models models --runs 5 --warmup 1 --json"
    # Two free pages: one for run.json, one for results.jsonl, which holds a few ~1.5-2 KB records, never all five.
    script = f"""
        set -u
        mount -t tmpfs -o size=256k tmpfs fs
        {PYTHON} fill.py fs/filler 8192
        {bench} --out fs/results > first.out 2> first.err; echo $? > first.rc
        cp -r fs/results full
        rm fs/filler
        {bench} --out fs/results --resume "$(ls fs/results)" > second.out 2> second.err; echo $? > second.rc
        cp -r fs/results resumed
    """
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=tmp_path, env=harness_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    first_err = (tmp_path / "first.err").read_text()
    assert (tmp_path / "first.rc").read_text().strip() == "1", first_err
    assert "Error: cannot store a record in" in first_err and "No space left on device" in first_err
    assert "--resume" in first_err and "Traceback" not in first_err
    [run] = (tmp_path / "full").iterdir()
    data = (run / "results.jsonl").read_bytes()
    assert data.endswith(b"\n") and 1 <= data.count(b"\n") < 5  # the record that did not fit was cut back off
    stored = [json.loads(line) for line in data.splitlines()]
    for record in stored:
        validate_record(record)

    second_err = (tmp_path / "second.err").read_text()
    assert (tmp_path / "second.rc").read_text().strip() == "0", second_err
    records = read_records(tmp_path / "resumed" / run.name / "results.jsonl")
    assert sorted(r["artifact"]["name"] for r in records) == ["m12", "m16", "m20", "m4", "m8"]
    assert records[: len(stored)] == stored


def test_resume_repairs_a_run_with_a_fused_line_and_keeps_a_bad_copy(tmp_path):
    for channels in (4, 8):
        tiny_tflite(tmp_path / "models" / f"m{channels}.tflite", channels=channels)
    env = harness_env(tmp_path)
    args = ["bench", "--device", "local", "--models", "models", "--out", "results", "--runs", "5", "--warmup", "1"]
    first = mbdeploy([*args, "--json"], cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    records_file = tmp_path / "results" / run_id / "results.jsonl"
    good = records_file.read_bytes().splitlines(keepends=True)
    # What the old unchecked append left on a full disk: half a record fused with the next one.
    damaged = good[0][:700] + good[1] + b"{not json\n"
    records_file.write_bytes(damaged)

    resumed = mbdeploy([*args, "--resume", run_id, "--json"], cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "Warning:" in resumed.stderr and "dropped 2 unreadable line(s)" in resumed.stderr
    assert (records_file.parent / "results.jsonl.bad").read_bytes() == damaged
    lines = records_file.read_bytes().splitlines()
    assert all(json.loads(line) for line in lines)
    assert sorted(json.loads(line)["artifact"]["name"] for line in lines) == ["m4", "m8"]


def test_one_bad_line_is_skipped_with_its_file_and_line_and_every_other_record_is_read(tmp_path):
    results = tmp_path / "results"
    good = _run(results, "good", device="host")
    bad = _run(results, "bad", device="host", started_at="2026-01-02T00:00:00Z")
    with open(bad / "results.jsonl", "ab") as handle:
        handle.write(b"garbage that is not json\n")
        handle.write(b"[" * 50_000 + b"]" * 50_000 + b"\n")  # deeper than the parser's recursion limit
        handle.write(b'{"x": ' + b"9" * 5000 + b"}\n")  # beyond Python's integer digit limit
        record = make_record("bad", SPECS[0], median=1.0, device="host")
        handle.write(json.dumps(record).replace('"median": 1.0', '"median": NaN').encode() + b"\n")
    (tmp_path / "none").mkdir()  # a typed --models must exist (e53c87a); this one holds no manifest
    for command in (["report", "--out", tmp_path / "report"],
                    ["select", "--device", "host", "--budget-ms", "1000", "--models", tmp_path / "none"]):
        done = mbdeploy([*map(str, command)], cwd=tmp_path, env=harness_env(tmp_path))
        assert "Traceback" not in done.stderr, done.stderr
        warnings = [line for line in done.stderr.splitlines() if line.startswith("Warning:")]
        assert len(warnings) == 4, done.stderr
        for number in (5, 6, 7, 8):
            assert any(f"bad/results.jsonl:{number}:" in line for line in warnings), done.stderr
        assert "NaN is not a finite number" in done.stderr
    rows = list(csv.DictReader((tmp_path / "report" / "results.csv").open()))
    assert len(rows) == 8  # both runs' four good records
    compared = mbdeploy(["compare", str(good), str(bad)], cwd=tmp_path, env=harness_env(tmp_path))
    assert compared.returncode == 1 and "Traceback" not in compared.stderr
    assert compared.stderr.strip().splitlines()[-1].startswith("Error: 4 line(s) of the runs could not be read")
    assert "within threshold" in compared.stdout


def test_non_finite_numbers_are_rejected_in_every_record_and_compare_fails(tmp_path):
    record = make_record("r", SPECS[0], median=2.0)
    for where, value in (("latency_ms", float("nan")), ("init_ms", float("inf")), ("peak_memory_mb", 10 ** 400)):
        bad = dict(record, **{where: value}) if where != "latency_ms" else dict(
            record, latency_ms=dict(record["latency_ms"], median=value))
        with pytest.raises(ResultsError, match="not a finite number"):
            validate_record(bad)
    folder = RunFolder.create(tmp_path / "results", {}, run_id="r")
    with pytest.raises(ResultsError, match="not a finite number"):
        folder.append(dict(record, latency_ms=dict(record["latency_ms"], ci95_high=float("inf"))))
    assert not folder.records_file.exists() or folder.records_file.read_bytes() == b""

    # Written by hand (as a damaged or hostile file could be): compare says so and fails the gate.
    base = _run(tmp_path / "results", "base")
    current = tmp_path / "results" / "current"
    current.mkdir()
    lines = [json.dumps(make_record("current", s, median=power_law_latency(s))) for s in SPECS]
    lines[0] = lines[0].replace(f'"median": {power_law_latency(SPECS[0])!r}', '"median": NaN')
    assert "NaN" in lines[0]
    (current / "results.jsonl").write_text("\n".join(lines) + "\n")
    done = mbdeploy(["compare", str(base), str(current)], cwd=tmp_path, env=harness_env(tmp_path))
    assert done.returncode == 1, done.stdout
    assert "nan%" not in done.stdout.lower() and "Traceback" not in done.stderr
    assert "current/results.jsonl:1: unparsable line skipped: NaN is not a finite number" in done.stderr


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(tmp_path):
    results = tmp_path / "results"
    spec = SPECS[0]
    record = make_record("run", spec, median=2.0, device='=HYPERLINK("http://evil","x")')
    record["artifact"]["name"] = "@SUM(1+1)"
    record["error"] = None
    other = make_record("run", SPECS[1], median=3.0, device="+cmd", status="failed")
    other["error"] = "-2+3"
    write_run(results, "run", [record, other])
    done = mbdeploy(["report", "--out", "report"], cwd=tmp_path, env=harness_env(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "report" / "results.csv").open()))
    cells = [value for row in rows for value in row.values() if value]
    assert not [cell for cell in cells if cell[0] in "=+@\t\r" or (cell[0] == "-" and not _number(cell))]
    by_device = {row["device_id"]: row for row in rows}
    assert "'=HYPERLINK(\"http://evil\",\"x\")" in by_device and "'+cmd" in by_device
    assert by_device["'+cmd"]["error"] == "'-2+3"
    assert by_device["'=HYPERLINK(\"http://evil\",\"x\")"]["model"] == "'@SUM(1+1)"


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
