"""The fleet view of a report over many devices: heatmaps, a device ranking, small multiples.

One series per device on one axis is unreadable past a handful of devices (and
its legend alone took most of the report's time), so beyond `MAX_SERIES`
series the report draws these instead: a models x devices heatmap of median
latency (and of energy where it was measured), the devices ranked for one
model, and latency versus MACs as small multiples, one panel per format,
precision and runner configuration, each device a thin unlabelled line and the
fleet's median drawn over them. No legend lists more than `MAX_LEGEND` entries.
"""

from __future__ import annotations

import fnmatch
import html
import math
import statistics
from pathlib import Path

from mbdeploy.records.reader import config_names
from mbdeploy.report.figures import FigureOutput, plain_text, short_label

# Past this many (device, format, precision, config) series the per-series figures give way to the fleet view.
MAX_SERIES = 24
MAX_LEGEND = 12  # entries in any legend this module draws
PANEL_COLUMNS = 3
FIGURE_NAMES = ("fleet_latency_heatmap", "fleet_energy_heatmap", "fleet_small_multiples")
FORMATS = ("png",)


def series_count(rows: list[dict]) -> int:
    return len({(r["device_id"], r["format"], r["precision"], r["config_key"]) for r in rows})


def matching(rows: list[dict], device: str | None = None, model: str | None = None) -> list[dict]:
    """Rows whose device id and model name match the shell-style patterns (`pixel*`, `*_224`)."""
    return [r for r in rows
            if (device is None or fnmatch.fnmatchcase(r["device_id"], device))
            and (model is None or fnmatch.fnmatchcase(r["model"], model))]


def focus_runs(runs: list, device: str | None = None, model: str | None = None) -> list:
    """The runs holding a matching record, each with only its matching records (for the run tables)."""
    from dataclasses import replace

    def keep(record: dict) -> bool:
        return ((device is None or fnmatch.fnmatchcase(record["device"]["id"], device))
                and (model is None or fnmatch.fnmatchcase(record["artifact"]["name"], model)))

    focused = [replace(run, records=[r for r in run.records if keep(r)]) for run in runs]
    return [run for run in focused if run.records]


def _artifact(row: dict, configs: dict[str, str], several: bool) -> str:
    text = f"{short_label(row)} {row['format']} {row['precision']}"
    return f"{text} ({configs[row['config_key']]})" if several else text


def _matrix(latest: list[dict], value: str) -> tuple[list[str], list[str], dict[tuple[str, str], float]]:
    """(artifacts by MACs, devices fastest first, (artifact, device) -> value) over rows that have the value."""
    configs = config_names(latest)
    several = len(configs) > 1
    cells: dict[tuple[str, str], float] = {}
    macs: dict[str, float] = {}
    for row in latest:
        if row.get(value) is None:
            continue
        name = _artifact(row, configs, several)
        cells[(name, row["device_id"])] = row[value]
        macs[name] = row.get("macs_m") or 0.0
    artifacts = sorted(macs, key=lambda a: (macs[a], a))
    # Devices ordered by their geometric-mean ratio to each artifact's fleet median: fastest first.
    medians = {a: statistics.median(v for (x, _), v in cells.items() if x == a) for a in artifacts}
    score: dict[str, list[float]] = {}
    for (name, device), v in cells.items():
        if v > 0 and medians[name] > 0:
            score.setdefault(device, []).append(math.log(v / medians[name]))
    devices = sorted({d for _, d in cells}, key=lambda d: (statistics.fmean(score.get(d) or [0.0]), d))
    return artifacts, devices, cells


def heatmap(latest: list[dict], value: str, label: str):
    """Devices (rows, fastest first) x artifacts (columns, by MACs), coloured on a log scale; None if empty."""
    return _draw_heatmap(*_matrix(latest, value), label)


def _draw_heatmap(artifacts: list[str], devices: list[str], cells: dict[tuple[str, str], float], label: str):
    if not cells:
        return None
    from matplotlib.colors import LogNorm

    from mbdeploy.report.figures import plain_log_axes, pyplot

    plt = pyplot()
    import numpy

    grid = numpy.full((len(devices), len(artifacts)), numpy.nan)
    for (name, device), v in cells.items():
        grid[devices.index(device), artifacts.index(name)] = v
    # Fixed margins in inches, not constrained layout: its text measuring cost more than the drawing.
    top, bottom, left, right = 0.3, 1.9, 1.2, 1.6
    height = top + bottom + 0.16 * len(devices)
    width = left + right + 0.55 * max(len(artifacts), 4)
    figure = plt.figure(figsize=(width, height))
    axes = figure.add_axes((left / width, bottom / height, 1 - (left + right) / width, 1 - (top + bottom) / height))
    bar_height = min(1 - (top + bottom) / height, 6 / height)
    bar = figure.add_axes((1 - (right - 0.25) / width, 1 - top / height - bar_height, 0.2 / width, bar_height))
    positive = grid[numpy.isfinite(grid) & (grid > 0)]
    norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size and positive.min() < positive.max() else None
    image = axes.imshow(numpy.ma.masked_invalid(grid), aspect="auto", cmap="viridis", norm=norm,
                        interpolation="nearest")
    axes.set_xticks(range(len(artifacts)), [plain_text(a) for a in artifacts], rotation=60, ha="right", fontsize=7)
    axes.set_yticks(range(len(devices)), [plain_text(d) for d in devices], fontsize=6 if len(devices) > 40 else 8)
    axes.set_xlabel("model, format, precision")
    axes.set_ylabel(f"device ({len(devices)}, fastest first)")
    figure.colorbar(image, cax=bar, label=label)
    if norm is not None:  # 1, 2, 5, 10 rather than 10^1 (easier to read, and mathtext cost a tenth of the figure)
        plain_log_axes(bar, x=False)
    return figure


def small_multiples(latest: list[dict]):
    """Latency vs MACs, one panel per format / precision / config; each device a thin line, the fleet median bold."""
    return _draw_small_multiples(_panels(latest))


def _panels(latest: list[dict]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """panel title -> device -> [(MMACs, median ms)]: what the small multiples draw."""
    configs = config_names(latest)
    several = len(configs) > 1
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for row in latest:
        if row.get("macs_m") and row.get("latency_ms_median"):
            title = f"{row['format']} {row['precision']}" + (f" ({configs[row['config_key']]})" if several else "")
            panels.setdefault(title, {}).setdefault(row["device_id"], []).append(
                (row["macs_m"], row["latency_ms_median"]))
    return panels


def _draw_small_multiples(panels: dict[str, dict[str, list[tuple[float, float]]]]):
    if not panels:
        return None
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    from mbdeploy.report.figures import plain_log_axes, pyplot

    plt = pyplot()
    names = sorted(panels)
    columns = min(PANEL_COLUMNS, len(names))
    lines = math.ceil(len(names) / columns)
    height = 0.5 + 3.2 * lines
    figure, axes_grid = plt.subplots(lines, columns, figsize=(4.2 * columns, height), squeeze=False,
                                     sharex=True, sharey=True)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.6 / height, top=1 - 0.5 / height, wspace=0.08,
                           hspace=0.3)  # fixed margins: constrained layout's text measuring cost more than drawing
    for i, name in enumerate(names):
        axes = axes_grid[i // columns][i % columns]
        by_device = panels[name]
        segments = [sorted(points) for points in by_device.values()]
        axes.add_collection(LineCollection(segments, colors="#4477aa", alpha=0.25, linewidths=0.7))
        by_macs: dict[float, list[float]] = {}
        for points in segments:
            for x, y in points:
                by_macs.setdefault(x, []).append(y)
        xs = sorted(by_macs)
        axes.plot(xs, [statistics.median(by_macs[x]) for x in xs], color="#cc3311", linewidth=2, marker="o",
                  markersize=3)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.autoscale_view()
        plain_log_axes(axes)
        axes.set_title(plain_text(f"{name}: {len(by_device)} devices"), fontsize=9,
                       y=1.0)  # placed, not fitted above the tick labels: fitting measured every label
        axes.grid(True, which="major", alpha=0.3)
    for j in range(len(names), lines * columns):
        axes_grid[j // columns][j % columns].set_visible(False)
    for axes in axes_grid[-1]:
        axes.set_xlabel("MMACs")
    for row in axes_grid:
        row[0].set_ylabel("median latency (ms)")
    figure.legend([Line2D([], [], color="#4477aa", alpha=0.5), Line2D([], [], color="#cc3311", linewidth=2)],
                  ["one device", "fleet median"], loc="upper right", ncols=2, fontsize=8)
    return figure


def _ranked_model(latest: list[dict], model: str | None) -> tuple[str, str, str, str] | None:
    """The artifact to rank devices by: the --model match measured on most devices, else the most measured one."""
    counts: dict[tuple[str, str, str, str], int] = {}
    for row in latest:
        if row.get("latency_ms_median") is not None:
            key = (row["model"], row["format"], row["precision"], row["config_key"])
            counts[key] = counts.get(key, 0) + 1
    if model is not None:
        counts = {k: v for k, v in counts.items() if fnmatch.fnmatchcase(k[0], model)} or counts
    if not counts:
        return None
    return max(counts, key=lambda k: (counts[k], k[0]))


def ranking(latest: list[dict], model: str | None = None) -> str:
    """HTML: devices ranked by median latency for one artifact, with the CI and energy where measured."""
    from mbdeploy.report.html import table

    chosen = _ranked_model(latest, model)
    if chosen is None:
        return ""
    rows = sorted((r for r in latest if (r["model"], r["format"], r["precision"], r["config_key"]) == chosen
                   and r.get("latency_ms_median") is not None), key=lambda r: r["latency_ms_median"])
    configs = config_names(latest)
    fastest = rows[0]["latency_ms_median"]
    body = [[i + 1, r["device_id"], r["device_model"], r["device_soc"], r["latency_ms_median"],
             r["latency_ms_ci95_low"], r["latency_ms_ci95_high"], r["latency_ms_median"] / fastest, r["energy_mj"],
             r["run_id"]] for i, r in enumerate(rows)]
    name, fmt, precision, config = chosen
    return (f"<h3>Devices ranked for {html.escape(name)} {html.escape(fmt)} {html.escape(precision)} "
            f"({html.escape(configs.get(config, config))})</h3>"
            "<p>Choose the model with <code>--model PATTERN</code>; the latest successful record per device.</p>"
            + table(["rank", "device", "device model", "SoC", "median ms", "CI95 low", "CI95 high",
                     "x fastest", "energy mJ", "run"], body))


def fleet_view(latest: list[dict], out_dir: Path, model: str | None = None,
               cache=None) -> tuple[str, list[FigureOutput]]:  # noqa: ANN001 - FigureCache
    """The fleet section's HTML and its figures (PNG in out_dir; from the cache when their data is unchanged).

    Drawn once, as the PNG the page shows: these summarise a fleet on screen (a heatmap's
    SVG would only wrap the same bitmap), and a second format cost as much again.
    """
    from mbdeploy.report.drawing import Drawing
    from mbdeploy.report.figure_cache import FigureCache
    from mbdeploy.report.html import figure_html

    cache = cache or FigureCache(None, out_dir)
    devices = len({r["device_id"] for r in latest})
    latency, energy, panels = _matrix(latest, "latency_ms_median"), _matrix(latest, "energy_mj"), _panels(latest)
    drawn = [
        ("fleet_latency_heatmap", "Median latency, devices x models (log colour scale)", latency, latency[2],
         Drawing(_draw_heatmap, (*latency, "median latency (ms)")), "no successful record"),
        ("fleet_energy_heatmap", "Energy per inference, devices x models (log colour scale)", energy, energy[2],
         Drawing(_draw_heatmap, (*energy, "energy per inference (mJ)")), "no device measured power"),
        ("fleet_small_multiples", "Latency versus MACs, one panel per format and precision (each line a device)",
         panels, panels, Drawing(_draw_small_multiples, (panels,)), "no record with MACs and a median"),
    ]
    figures = []
    for name, title, data, anything, drawing, why in drawn:
        if not anything:
            figures.append(FigureOutput(name, title, note=why))
            continue
        # The key is the drawn data; the cells' (artifact, device) keys become lists in JSON.
        key_data = [data[0], data[1], sorted(data[2].items())] if isinstance(data, tuple) else data
        figures.append(cache.drawing(name, title, key_data, drawing, formats=FORMATS))
    page = (f"<h2>Fleet: {devices} devices</h2><p>The latest successful record per device, model, format, "
            "precision and runner configuration. Focus the report with <code>--device PATTERN</code> and "
            "<code>--model PATTERN</code> (shell patterns, e.g. <code>pixel*</code>, <code>*_224</code>).</p>"
            + figure_html(figures[0], out_dir) + ranking(latest, model)
            + "".join(figure_html(f, out_dir) for f in figures[1:]))
    return page, figures
