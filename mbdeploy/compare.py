"""`mbdeploy compare`: did latency regress between two runs? For CI gates.

Records are matched by (device, model, format, precision, runner config).
A pair regressed when the current median grew by more than the threshold AND
the two runs' 95% intervals do not overlap. The interval is the between-session
one (`bench --repeat K`) when both runs have it: it includes the drift from one
session to the next. Within-session intervals alone cannot fail the gate: from
thousands of samples they are narrow, and two back-to-back runs of the same
model on a shared host differ by far more than they admit, so such growth is
reported as unconfirmed, with the advice to re-run with --repeat. A pair without
intervals is judged on the threshold alone (and says so), and a model that ran
in the baseline but failed now is a regression too.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mbdeploy.errors import InvalidInput, ResultsError
from mbdeploy.records.reader import load_runs, match_key, tidy_rows

REGRESSED = "regressed"
REGRESSED_NO_CI = "regressed (no CI to check)"
FAILED_NOW = "failed in current"
SLOWER_NOISE = "slower, CIs overlap"
UNCONFIRMED = "slower, unconfirmed (within-session CIs only; re-run both with bench --repeat K)"
BETWEEN = "between-session"
WITHIN = "within-session"
IMPROVED = "faster"
UNCHANGED = "within threshold"
ONLY_BASELINE = "only in baseline"
ONLY_CURRENT = "only in current"
REGRESSIONS = (REGRESSED, REGRESSED_NO_CI, FAILED_NOW)


@dataclass
class PairedRecord:
    device: str
    model: str
    format: str
    precision: str
    config_key: str
    baseline_ms: float | None
    baseline_ci: tuple[float | None, float | None]
    current_ms: float | None
    current_ci: tuple[float | None, float | None]
    change: float | None  # (current - baseline) / baseline
    verdict: str
    ci_used: str | None = None  # BETWEEN, WITHIN, or None (no interval on one side)

    @property
    def regressed(self) -> bool:
        return self.verdict in REGRESSIONS


@dataclass
class Comparison:
    threshold: float
    pairs: list[PairedRecord] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # lines of either run that were skipped, with the reason

    @property
    def regressions(self) -> list[PairedRecord]:
        return [p for p in self.pairs if p.regressed]

    @property
    def unconfirmed(self) -> list[PairedRecord]:
        return [p for p in self.pairs if p.verdict == UNCONFIRMED]

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "regressions": len(self.regressions),
                "unconfirmed": len(self.unconfirmed),
                "pairs": [asdict(p) | {"regressed": p.regressed} for p in self.pairs], "unreadable": self.unreadable}


def parse_threshold(text: str | float) -> float:
    """`5%` or `0.05` -> 0.05; a fraction in (0, 1) or a percentage in (0, 100)."""
    raw = str(text).strip()
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*(%?)", raw)
    if match:
        value = float(match.group(1)) / (100 if match.group(2) else 1)
        if 0 < value < 1:
            return value
    raise InvalidInput(f"threshold {raw!r} is not a fraction in (0, 1) or a percentage like 5%")


def _cis_overlap(a: tuple, b: tuple) -> bool | None:
    if None in a or None in b:
        return None
    return a[0] <= b[1] and b[0] <= a[1]


def intervals(baseline: dict, current: dict) -> tuple[str | None, tuple, tuple]:
    """(which CI, baseline's, current's): the between-session one when both runs have it, else within-session."""
    between = ("between_ci95_low_ms", "between_ci95_high_ms")
    if all(row.get(key) is not None for row in (baseline, current) for key in between):
        return BETWEEN, tuple(baseline[k] for k in between), tuple(current[k] for k in between)
    within = ("latency_ms_ci95_low", "latency_ms_ci95_high")
    pair = tuple(baseline[k] for k in within), tuple(current[k] for k in within)
    return (None if None in pair[0] + pair[1] else WITHIN), *pair


def judge(baseline: dict | None, current: dict | None, threshold: float) -> tuple[float | None, str, str | None]:
    """(relative change of the median, verdict, which CI judged it) for one matched pair of rows."""
    if current is None:
        return None, ONLY_BASELINE, None
    if baseline is None:
        return None, ONLY_CURRENT, None
    base_ms, cur_ms = baseline["latency_ms_median"], current["latency_ms_median"]
    for row in (baseline, current):
        for key in ("latency_ms_median", "latency_ms_ci95_low", "latency_ms_ci95_high",
                    "between_ci95_low_ms", "between_ci95_high_ms"):
            if row.get(key) is not None and not math.isfinite(row[key]):
                raise ResultsError(f"{row['run_id']}: {row['model']} has a non-finite {key} ({row[key]!r}); "
                                   "no verdict can rest on it")
    if baseline["status"] != "ok" or base_ms is None:
        return None, ONLY_CURRENT if current["status"] == "ok" else UNCHANGED, None
    if current["status"] != "ok" or cur_ms is None:
        return None, FAILED_NOW, None
    change = (cur_ms - base_ms) / base_ms
    used, base_ci, cur_ci = intervals(baseline, current)
    overlap = _cis_overlap(base_ci, cur_ci)
    if change > threshold:
        if overlap is None:
            return change, REGRESSED_NO_CI, used
        if overlap:
            return change, SLOWER_NOISE, used
        return change, REGRESSED if used == BETWEEN else UNCONFIRMED, used
    if change < -threshold and overlap is False:
        return change, IMPROVED, used
    return change, UNCHANGED, used


def _latest(rows: list[dict]) -> dict[tuple, dict]:
    latest: dict[tuple, dict] = {}
    for row in sorted(rows, key=lambda r: r.get("started_at") or ""):
        latest[match_key(row)] = row
    return latest


def _run_path(run: Path) -> Path:
    """A run folder or file as given, else a run id under ./results (as `bench` names them)."""
    run = Path(run)
    if not run.exists() and (Path("results") / run).is_dir():
        return Path("results") / run
    return run


def compare_runs(baseline: Path, current: Path, threshold: float = 0.05) -> Comparison:
    """Pair the records of two runs (folders, results.jsonl files or run ids) and judge each pair."""
    if not 0 < threshold < 1:
        raise InvalidInput(f"threshold must be a fraction in (0, 1), got {threshold}")
    baseline_runs, current_runs = load_runs([_run_path(baseline)]), load_runs([_run_path(current)])
    before = _latest(tidy_rows(baseline_runs))
    after = _latest(tidy_rows(current_runs))
    if not set(before) & set(after):
        raise ResultsError(
            f"no record of {current} matches one of {baseline} by (device, model, format, precision, runner config)"
        )
    comparison = Comparison(threshold, unreadable=[line for run in baseline_runs + current_runs for line in run.skipped])
    for key in sorted(set(before) | set(after)):
        b, c = before.get(key), after.get(key)
        change, verdict, used = judge(b, c, threshold)
        base_ci = cur_ci = (None, None)
        if b and c:
            _, base_ci, cur_ci = intervals(b, c)
        elif b or c:
            _, base_ci, cur_ci = intervals(b or c, b or c)
        comparison.pairs.append(PairedRecord(
            *key,
            baseline_ms=b["latency_ms_median"] if b else None, baseline_ci=base_ci if b else (None, None),
            current_ms=c["latency_ms_median"] if c else None, current_ci=cur_ci if c else (None, None),
            change=change, verdict=verdict, ci_used=used,
        ))
    return comparison
