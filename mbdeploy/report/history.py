"""The history view of a report over many runs: each match key's median and CI over time, regressions marked.

A match key is what `compare` pairs (device, model, format, precision, runner
config). Consecutive records of one key are judged exactly as `compare` judges
a baseline and a current run (compare.judge, the same threshold), so a point
marked here is one `compare` would call a regression. Runs are labelled with
their date, their `bench --label` and their tool versions.
"""

from __future__ import annotations

import datetime
import html
from pathlib import Path

from mbdeploy.compare import REGRESSIONS, UNCONFIRMED, judge
from mbdeploy.errors import InvalidInput
from mbdeploy.records.reader import config_names, match_key
from mbdeploy.report.figures import FigureOutput, plain_text

MARKED = (*REGRESSIONS, UNCONFIRMED)
MAX_PANELS = 12  # match keys drawn; regressions first, the table lists every regression
PANEL_COLUMNS = 3
FIGURE_NAMES = ("history",)
FORMATS = ("png",)


def parse_since(text: str) -> datetime.datetime:
    """`--since` as an aware UTC datetime: a date (2026-01-31) or an ISO time (2026-01-31T12:00:00Z)."""
    try:
        value = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"--since {text!r} is not a date: use YYYY-MM-DD or an ISO time "
                           "(2026-01-31 or 2026-01-31T12:00:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def when(text: str | None) -> datetime.datetime | None:
    """A record's or run's ISO time as an aware datetime (None if absent or unreadable)."""
    if not text:
        return None
    try:
        value = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def run_time(run) -> datetime.datetime | None:  # noqa: ANN001 - reader.Run
    """When a run started: run.json's created_at, else its first record's start."""
    return when(run.meta.get("created_at")) or min(
        (t for t in (when(r.get("started_at")) for r in run.records) if t is not None), default=None)


def run_label(run) -> str:  # noqa: ANN001 - reader.Run
    """`bench --label` and the tool versions, as a run is named in the history."""
    tools = run.meta.get("tools") or {}
    versions = ", ".join(f"{k} {v}" for k, v in sorted(tools.items()) if v) if isinstance(tools, dict) else ""
    label = run.meta.get("label")
    return "; ".join(p for p in (str(label) if label else None, versions) if p)


def judged_history(rows: list[dict], threshold: float = 0.05) -> dict[tuple, list[tuple[dict, str | None, float | None]]]:
    """match key -> [(row, verdict against the previous record of the key, change)] in time order."""
    by_key: dict[tuple, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r.get("started_at") or "", r["run_id"])):
        by_key.setdefault(match_key(row), []).append(row)
    judged = {}
    for key, series in by_key.items():
        if len({r["run_id"] for r in series}) < 2:
            continue
        points: list[tuple[dict, str | None, float | None]] = [(series[0], None, None)]
        for before, after in zip(series, series[1:]):
            change, verdict, _ = judge(before, after, threshold)
            points.append((after, verdict, change))
        judged[key] = points
    return judged


def _panel_keys(judged: dict) -> list[tuple]:
    """The keys drawn: the most recent regressions first, then the longest histories."""
    def latest_regression(key: tuple) -> str:
        return max((r.get("started_at") or "" for r, verdict, _ in judged[key] if verdict in MARKED), default="")

    flagged = sorted((k for k in judged if latest_regression(k)), key=latest_regression, reverse=True)
    rest = sorted((k for k in judged if not latest_regression(k)), key=lambda k: (-len(judged[k]), k))
    return (flagged + rest)[:MAX_PANELS]


def history_figure(judged: dict, keys: list[tuple], names: dict[str, str]):
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.lines import Line2D

    from mbdeploy.report.figures import pyplot

    plt = pyplot()
    columns = min(PANEL_COLUMNS, len(keys))
    lines = -(-len(keys) // columns)
    height = 0.7 + 3.0 * lines
    figure, grid = plt.subplots(lines, columns, figsize=(4.4 * columns, height), squeeze=False)
    # Fixed margins, not constrained layout: measuring every tick label cost more than drawing the panels.
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.9 / height, top=1 - 0.7 / height, wspace=0.25,
                           hspace=0.6)
    for i, key in enumerate(keys):
        axes = grid[i // columns][i % columns]
        ok = [(when(r.get("started_at")), r, verdict) for r, verdict, _ in judged[key]
              if r["status"] == "ok" and r["latency_ms_median"] is not None and when(r.get("started_at"))]
        if ok:
            xs = [t for t, _, _ in ok]
            axes.plot(xs, [r["latency_ms_median"] for _, r, _ in ok], color="#4477aa", marker="o", markersize=3)
            low = [r["latency_ms_ci95_low"] if r["latency_ms_ci95_low"] is not None else r["latency_ms_median"]
                   for _, r, _ in ok]
            high = [r["latency_ms_ci95_high"] if r["latency_ms_ci95_high"] is not None else r["latency_ms_median"]
                    for _, r, _ in ok]
            axes.fill_between(xs, low, high, color="#4477aa", alpha=0.2, linewidth=0)
            bad = [(t, r) for t, r, verdict in ok if verdict in REGRESSIONS]
            if bad:  # an empty scatter still costs a collection to build and draw
                axes.scatter([t for t, _ in bad], [r["latency_ms_median"] for _, r in bad], color="#cc3311",
                             marker="X", s=60, zorder=3)
            maybe = [(t, r) for t, r, verdict in ok if verdict == UNCONFIRMED]
            if maybe:
                axes.scatter([t for t, _ in maybe], [r["latency_ms_median"] for _, r in maybe], facecolors="none",
                             edgecolors="#ee7733", marker="o", s=60, linewidths=1.5, zorder=3)
        device, model, fmt, precision, config = key
        axes.set_title(plain_text(f"{device}\n{model} {fmt} {precision} ({names.get(config, config)})"), fontsize=8,
                       y=1.0)  # placed, not fitted above the tick labels: fitting measured every label
        locator = AutoDateLocator(minticks=2, maxticks=6)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        axes.tick_params(axis="x", labelsize=7)
        axes.tick_params(axis="y", labelsize=7)
        axes.grid(True, alpha=0.3)
    for j in range(len(keys), lines * columns):
        grid[j // columns][j % columns].set_visible(False)
    for row in grid:
        row[0].set_ylabel("median latency (ms)")
        row[0].yaxis.set_label_coords(-0.14, 0.5)  # placed, not fitted beside the tick labels (measured them)
    figure.legend([Line2D([], [], color="#4477aa", marker="o"), Line2D([], [], color="#4477aa", alpha=0.3, linewidth=6),
                   Line2D([], [], color="#cc3311", marker="X", linestyle=""),
                   Line2D([], [], markeredgecolor="#ee7733", markerfacecolor="none", marker="o", linestyle="")],
                  ["median", "95% CI", "regression (as compare judges it)", "slower, unconfirmed (within-session CIs)"],
                  loc="upper right", ncols=4, fontsize=8)
    return figure


def _drawn_data(judged: dict, keys: list[tuple], names: dict[str, str]) -> list:
    """Everything history_figure reads, as plain data: the figure cache's key."""
    return [[list(key), names.get(key[4], key[4]),
             [[r.get("started_at"), r["status"], r["latency_ms_median"], r["latency_ms_ci95_low"],
               r["latency_ms_ci95_high"], verdict] for r, verdict, _ in judged[key]]] for key in keys]


def history_view(runs: list, rows: list[dict], out_dir: Path, threshold: float = 0.05,
                 cache=None) -> tuple[str, list[FigureOutput]]:  # noqa: ANN001 - FigureCache
    """The history section's HTML and figure; empty when no match key was measured in two runs.

    The figure is drawn once, as the PNG the page shows (a screen view of many runs; a
    second format cost as much again), and copied from the cache when its data is unchanged.
    """
    from mbdeploy.report.drawing import Drawing
    from mbdeploy.report.figure_cache import FigureCache
    from mbdeploy.report.html import figure_html, table

    judged = judged_history(rows, threshold)
    if not judged:
        return "", []
    cache = cache or FigureCache(None, out_dir)
    names = config_names(rows)
    keys = _panel_keys(judged)
    shown = {key: judged[key] for key in keys}  # only what the panels draw goes to the drawing process
    figure = cache.drawing("history", f"Median and 95% CI over time ({len(keys)} of {len(judged)} match keys)",
                           _drawn_data(judged, keys, names), Drawing(history_figure, (shown, keys, names)),
                           formats=FORMATS)
    labels = {run.run_id: run_label(run) for run in runs}
    regressions = [(key, row, verdict, change) for key, points in judged.items() for row, verdict, change in points
                   if verdict in REGRESSIONS]
    unconfirmed = [(key, row, verdict, change) for key, points in judged.items() for row, verdict, change in points
                   if verdict == UNCONFIRMED]
    regressions.sort(key=lambda item: item[1].get("started_at") or "", reverse=True)
    body = [[row.get("started_at"), row["run_id"], labels.get(row["run_id"]), key[0], key[1], key[2], key[3],
             names.get(key[4], key[4]), row["latency_ms_median"], change, verdict]
            for key, row, verdict, change in regressions + sorted(unconfirmed, key=lambda i: i[1].get("started_at") or "",
                                                                  reverse=True)]
    ordered = sorted(runs, key=lambda run: (run_time(run) or datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)))
    run_rows = [[run.run_id, (run_time(run).strftime("%Y-%m-%d %H:%M") if run_time(run) else None),
                 run.meta.get("label"), run_label(run).removeprefix(f"{run.meta.get('label')}; ")
                 if run.meta.get("label") else run_label(run), len(run.records)] for run in ordered]
    page = (f"<h2>History</h2><p>{len(judged)} match keys (device, model, format, precision, runner config) "
            f"measured in two runs or more. Each record is judged against the key's previous one as "
            f"<code>mbdeploy compare</code> judges two runs (threshold {threshold:.0%}); "
            f"{len(regressions)} would be called a regression (a red cross) and {len(unconfirmed)} a slow-down "
            "beyond the threshold that within-session CIs alone cannot confirm (an orange ring; "
            "<code>bench --repeat K</code> gives the between-session CI that can). The panels show "
            f"the {len(keys)} keys with the most recent regressions, then the longest histories; focus with "
            "<code>--device</code>, <code>--model</code> and <code>--since DATE</code>.</p>"
            + figure_html(figure, out_dir)
            + "<h3>Regressions and unconfirmed slow-downs</h3>"
            + (table(["started", "run", "label, tools", "device", "model", "format", "precision", "config",
                      "median ms", "change", "verdict"], body) if body else "<p>None.</p>")
            + "<h3>Runs over time</h3>"
            + table(["run", "started (UTC)", "label", "tool versions", "records"], run_rows))
    return page, [figure]
