"""Latency as a power law of MACs: log(latency) = intercept + slope * log(MACs).

The paper's Figure 4 shows accuracy against Mult-Adds on a log scale; with
measured latency the same family lies close to a straight line in log-log
space, which is what lets `select` predict an unmeasured model on a device
from the ones measured there. The fit is ordinary least squares in log space;
R^2 is reported in that space. Its honest error is leave-one-out: refit
without each point, predict it, and take the median absolute relative error.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from mbdeploy.errors import ResultsError

MIN_POINTS = 2
# Below this many points a fit still predicts, but its quality is not reported:
# two points fit any line exactly (R^2 1.000), three leave two per refit.
MIN_POINTS_FOR_QUALITY = 4


@dataclass(frozen=True)
class PowerLawFit:
    slope: float
    intercept: float  # natural log of the latency (ms) at 1 MAC
    r_squared: float | None  # None below MIN_POINTS_FOR_QUALITY points, or when every latency is the same
    points: int
    loo_errors: tuple[float, ...]  # relative errors (signed) of each left-out prediction; empty below 4 points

    @property
    def loo_median_abs_error(self) -> float | None:
        """Median |predicted - measured| / measured over left-out points, or None below 4 points."""
        return statistics.median(abs(e) for e in self.loo_errors) if self.loo_errors else None

    def predict(self, macs: float) -> float:
        if macs <= 0:
            raise ResultsError(f"cannot predict latency for {macs} MACs; MACs must be positive")
        return math.exp(self.intercept + self.slope * math.log(macs))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["loo_errors"] = list(self.loo_errors)
        data["loo_median_abs_error"] = self.loo_median_abs_error
        return data


def _least_squares(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        raise ResultsError("cannot fit latency against MACs: every point has the same MACs")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    return slope, mean_y - slope * mean_x


def fit_power_law(macs: Sequence[float], latency_ms: Sequence[float]) -> PowerLawFit:
    """Fit latency = exp(intercept) * MACs^slope; needs >= 2 points of different MACs."""
    if len(macs) != len(latency_ms):
        raise ResultsError("MACs and latencies differ in length")
    if len(macs) < MIN_POINTS:
        raise ResultsError(f"cannot fit latency against MACs with {len(macs)} point(s); at least {MIN_POINTS} needed")
    if any(m is None or m <= 0 for m in macs) or any(t is None or t <= 0 for t in latency_ms):
        raise ResultsError("cannot fit latency against MACs: every MAC count and latency must be positive")
    xs = [math.log(m) for m in macs]
    ys = [math.log(t) for t in latency_ms]
    slope, intercept = _least_squares(xs, ys)
    mean_y = statistics.fmean(ys)
    total = sum((y - mean_y) ** 2 for y in ys)
    residual = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys))
    r_squared = 1.0 - residual / total if total > 0 and len(xs) >= MIN_POINTS_FOR_QUALITY else None
    loo: list[float] = []
    if len(xs) >= MIN_POINTS_FOR_QUALITY:
        for i in range(len(xs)):
            rest_x, rest_y = xs[:i] + xs[i + 1 :], ys[:i] + ys[i + 1 :]
            if len(set(rest_x)) < 2:
                loo = []
                break
            s, c = _least_squares(rest_x, rest_y)
            predicted = math.exp(c + s * xs[i])
            loo.append((predicted - latency_ms[i]) / latency_ms[i])
    return PowerLawFit(slope, intercept, r_squared, len(xs), tuple(loo))


def fit_key(row: dict) -> tuple:
    """Rows fitted together: one device, format, precision and runner config."""
    return (row["device_id"], row["format"], row["precision"], row["config_key"])


def fit_groups(rows: Iterable[dict], metric: str = "latency_ms_median") -> dict[tuple, PowerLawFit]:
    """One fit per (device, format, precision, config) with >= 2 distinct MAC counts."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["status"] == "ok" and row.get(metric) and row.get("macs_m"):
            groups.setdefault(fit_key(row), []).append(row)
    fits = {}
    for key, members in groups.items():
        if len({r["macs_m"] for r in members}) < MIN_POINTS:
            continue
        fits[key] = fit_power_law([r["macs_m"] * 1e6 for r in members], [r[metric] for r in members])
    return fits
