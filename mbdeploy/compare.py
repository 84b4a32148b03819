"""`mbdeploy compare`: did latency regress between two runs? For CI gates.

Records are matched by (device, model, format, precision, runner config).
A pair regressed when the current median grew by more than the threshold AND
the two 95% confidence intervals of the median do not overlap, so noise that
moves the median inside the intervals never fails a build. A pair without
intervals on both sides is judged on the threshold alone (and says so), and a
model that ran in the baseline but failed now is a regression too.
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

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "regressions": len(self.regressions),
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


def judge(baseline: dict | None, current: dict | None, threshold: float) -> tuple[float | None, str]:
    """(relative change of the median, verdict) for one matched pair of rows."""
    if current is None:
        return None, ONLY_BASELINE
    if baseline is None:
        return None, ONLY_CURRENT
    base_ms, cur_ms = baseline["latency_ms_median"], current["latency_ms_median"]
    for row in (baseline, current):
        for key in ("latency_ms_median", "latency_ms_ci95_low", "latency_ms_ci95_high"):
            if row[key] is not None and not math.isfinite(row[key]):
                raise ResultsError(f"{row['run_id']}: {row['model']} has a non-finite {key} ({row[key]!r}); "
                                   "no verdict can rest on it")
    if baseline["status"] != "ok" or base_ms is None:
        return None, ONLY_CURRENT if current["status"] == "ok" else UNCHANGED
    if current["status"] != "ok" or cur_ms is None:
        return None, FAILED_NOW
    change = (cur_ms - base_ms) / base_ms
    overlap = _cis_overlap((baseline["latency_ms_ci95_low"], baseline["latency_ms_ci95_high"]),
                           (current["latency_ms_ci95_low"], current["latency_ms_ci95_high"]))
    if change > threshold:
        if overlap is None:
            return change, REGRESSED_NO_CI
        return change, SLOWER_NOISE if overlap else REGRESSED
    if change < -threshold and overlap is False:
        return change, IMPROVED
    return change, UNCHANGED


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
        change, verdict = judge(b, c, threshold)
        comparison.pairs.append(PairedRecord(
            *key,
            baseline_ms=b["latency_ms_median"] if b else None,
            baseline_ci=(b["latency_ms_ci95_low"], b["latency_ms_ci95_high"]) if b else (None, None),
            current_ms=c["latency_ms_median"] if c else None,
            current_ci=(c["latency_ms_ci95_low"], c["latency_ms_ci95_high"]) if c else (None, None),
            change=change, verdict=verdict,
        ))
    return comparison
