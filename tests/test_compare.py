"""`mbdeploy compare`: a real regression fails, noise inside the confidence intervals does not."""

from __future__ import annotations

import json

import pytest
from support.cli import run_cli
from support.records import make_record, power_law_latency, write_run

from mbdeploy.architecture import ModelSpec, grid_specs
from mbdeploy.compare import FAILED_NOW, ONLY_BASELINE, REGRESSED, SLOWER_NOISE, UNCHANGED, compare_runs, parse_threshold
from mbdeploy.errors import InvalidInput, ResultsError

SPECS = grid_specs()[-4:]  # the four 0.25 models
SLOW = ModelSpec(0.25, 224)


def _run(root, run_id, slow_factor=1.0, ci=0.02, specs=SPECS, **kwargs):
    records = [make_record(run_id, s, median=power_law_latency(s) * (slow_factor if s == SLOW else 1.0), ci=ci,
                           **kwargs) for s in specs]
    return write_run(root, run_id, records)


@pytest.mark.parametrize("text, value", [("5%", 0.05), ("0.05", 0.05), ("12.5 %", 0.125), (".1", 0.1)])
def test_threshold_accepts_percent_or_fraction(text, value):
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["5", "0", "150%", "-5%", "abc", "1.0"])
def test_threshold_rejects_the_rest(text):
    with pytest.raises(InvalidInput, match="fraction in \\(0, 1\\) or a percentage"):
        parse_threshold(text)


def test_real_regression_fails_the_gate(tmp_path):
    base = _run(tmp_path, "base")
    current = _run(tmp_path, "current", slow_factor=1.20)
    result = compare_runs(base, current, 0.05)
    verdicts = {p.model: p.verdict for p in result.pairs}
    assert verdicts[SLOW.name] == REGRESSED
    assert all(v == UNCHANGED for name, v in verdicts.items() if name != SLOW.name)
    regressed = result.regressions[0]
    assert regressed.change == pytest.approx(0.20)

    cli = run_cli("compare", base, current, "--threshold", "5%")
    assert cli.returncode == 1, cli.stderr
    assert "Error: 1 of 4 records regressed beyond 5%" in cli.stderr
    assert SLOW.name in cli.stderr and "+20.0%" in cli.stderr
    assert "Traceback" not in cli.stderr
    assert "regressed" in cli.stdout


def test_noise_with_overlapping_intervals_passes(tmp_path):
    # The median grew 8% (beyond a 5% threshold) but each CI is +-10%: they overlap, so it is noise.
    base = _run(tmp_path, "base", ci=0.10)
    current = _run(tmp_path, "current", slow_factor=1.08, ci=0.10)
    result = compare_runs(base, current, 0.05)
    assert {p.model: p.verdict for p in result.pairs}[SLOW.name] == SLOWER_NOISE
    assert result.regressions == []
    cli = run_cli("compare", base, current, "--threshold", "0.05", "--json")
    assert cli.returncode == 0, cli.stderr
    data = json.loads(cli.stdout)
    assert data["regressions"] == 0 and len(data["pairs"]) == 4


def test_growth_within_threshold_passes_even_with_tight_intervals(tmp_path):
    base = _run(tmp_path, "base", ci=0.001)
    current = _run(tmp_path, "current", slow_factor=1.04, ci=0.001)
    assert compare_runs(base, current, 0.05).regressions == []
    assert [p.model for p in compare_runs(base, current, 0.03).regressions] == [SLOW.name]


def test_failure_now_is_a_regression_and_unmatched_records_are_listed(tmp_path):
    base = _run(tmp_path, "base")
    records = [make_record("current", s, median=power_law_latency(s), status="failed" if s == SLOW else "ok")
               for s in SPECS[:-1]]
    current = write_run(tmp_path, "current", records)
    verdicts = {p.model: p.verdict for p in compare_runs(base, current).pairs}
    assert verdicts[SLOW.name] == FAILED_NOW
    assert verdicts[SPECS[-1].name] == ONLY_BASELINE


def test_records_match_on_config_and_device(tmp_path):
    base = _run(tmp_path, "base")
    other_config = _run(tmp_path, "other", slow_factor=3.0, config_key="threads4")
    with pytest.raises(ResultsError, match="no record of .* matches"):
        compare_runs(base, other_config)
    cli = run_cli("compare", base, tmp_path / "missing")
    assert cli.returncode != 0 and "Error: no result run" in cli.stderr


def test_runs_can_be_named_by_id_under_results(tmp_path):
    _run(tmp_path / "results", "base")
    _run(tmp_path / "results", "current", slow_factor=1.5)
    done = run_cli("compare", "base", "current", cwd=tmp_path)
    assert done.returncode == 1 and "regressed beyond 5%" in done.stderr
