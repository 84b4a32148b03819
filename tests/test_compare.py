"""`mbdeploy compare`: a real regression fails, noise inside the confidence intervals does not."""

from __future__ import annotations

import json

import pytest
from support.cli import run_cli
from support.records import make_record, power_law_latency, write_run

from mbdeploy.architecture import ModelSpec, grid_specs
from mbdeploy.compare import (BETWEEN, FAILED_NOW, ONLY_BASELINE, REGRESSED, SLOWER_NOISE, UNCHANGED, UNCONFIRMED,
                              WITHIN, compare_runs, parse_threshold)
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
    base = _run(tmp_path, "base", between=0.03)
    current = _run(tmp_path, "current", slow_factor=1.20, between=0.03)
    result = compare_runs(base, current, 0.05)
    verdicts = {p.model: p.verdict for p in result.pairs}
    assert verdicts[SLOW.name] == REGRESSED
    assert {p.ci_used for p in result.pairs} == {BETWEEN}
    assert all(v == UNCHANGED for name, v in verdicts.items() if name != SLOW.name)
    regressed = result.regressions[0]
    assert regressed.change == pytest.approx(0.20)

    cli = run_cli("compare", base, current, "--threshold", "5%")
    assert cli.returncode == 1, cli.stderr
    assert "Error: 1 of 4 records regressed beyond 5%" in cli.stderr
    assert SLOW.name in cli.stderr and "+20.0%" in cli.stderr
    assert "Traceback" not in cli.stderr
    assert "regressed" in cli.stdout and "between-session" in cli.stdout


def test_within_session_cis_alone_never_fail_the_gate(tmp_path):
    # +20% with tight, non-overlapping within-session CIs and no sessions: unconfirmed, exit 0, with the advice.
    base = _run(tmp_path, "base", ci=0.005)
    current = _run(tmp_path, "current", slow_factor=1.20, ci=0.005)
    result = compare_runs(base, current, 0.05)
    slow = next(p for p in result.pairs if p.model == SLOW.name)
    assert slow.verdict == UNCONFIRMED and slow.ci_used == WITHIN and not slow.regressed
    assert result.regressions == [] and len(result.unconfirmed) == 1
    cli = run_cli("compare", base, current)
    assert cli.returncode == 0, cli.stderr
    assert "Warning: 1 record(s) slower beyond 5%" in cli.stderr and "--repeat" in cli.stderr
    # One side with sessions, the other without: no between-session CI on both, still unconfirmed.
    with_sessions = _run(tmp_path, "sessions", slow_factor=1.20, ci=0.005, between=0.01)
    assert compare_runs(base, with_sessions, 0.05).regressions == []


def test_between_session_cis_that_overlap_pass(tmp_path):
    # +8% median growth, tight within-session CIs, but the sessions spread +-10%: noise.
    base = _run(tmp_path, "base", ci=0.001, between=0.10)
    current = _run(tmp_path, "current", slow_factor=1.08, ci=0.001, between=0.10)
    slow = next(p for p in compare_runs(base, current, 0.05).pairs if p.model == SLOW.name)
    assert slow.verdict == SLOWER_NOISE and slow.ci_used == BETWEEN


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
    base = _run(tmp_path, "base", ci=0.001, between=0.001)
    current = _run(tmp_path, "current", slow_factor=1.04, ci=0.001, between=0.001)
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
    _run(tmp_path / "results", "base", between=0.02)
    _run(tmp_path / "results", "current", slow_factor=1.5, between=0.02)
    done = run_cli("compare", "base", "current", cwd=tmp_path)
    assert done.returncode == 1 and "regressed beyond 5%" in done.stderr
