"""The report's six figures, drawn with matplotlib's Agg backend as PNG and SVG.

Each figure function takes the tidy rows and returns a matplotlib Figure, or
a one-line note saying why there is nothing to draw (no power measured, no
fp32 baseline, ...). The report shows the note where the figure would be:
an empty chart is never drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mbdeploy.architecture import format_alpha, parse_model_name
from mbdeploy.atomic import write_bytes
from mbdeploy.records.fit import fit_groups
from mbdeploy.records.reader import config_names
from mbdeploy.report.pareto import pareto_front


@dataclass
class FigureOutput:
    name: str
    title: str
    png: Path | None = None
    svg: Path | None = None
    note: str | None = None  # why the figure is absent


def plain_text(text: object) -> str:
    """Text from a record shown as written: matplotlib parses `$...$` as math (and fails on `$\\frac{1$`)."""
    return str(text).replace("$", r"\$")


def short_label(row: dict) -> str:
    """`alpha_res`, as points are labelled in the paper's figures."""
    alpha, resolution = row.get("alpha"), row.get("resolution")
    if alpha is None or resolution is None:
        try:
            alpha, resolution = parse_model_name(row["model"])
        except Exception:  # noqa: BLE001 - a foreign name is shown as is
            return row["model"]
    return f"{format_alpha(alpha)}_{resolution}"


def _point_label(row: dict) -> str:
    return plain_text(short_label(row))


def _series_namer(rows: list[dict], with_device: bool = True) -> Callable[[dict], str]:
    """Series names: device, format, precision, and the runner configuration whenever
    the rows hold more than one (two thread settings never share a legend entry)."""
    names = config_names(rows)
    several = len(names) > 1

    def name(row: dict) -> str:
        parts = [row["device_id"] if with_device else None, row["format"], row["precision"]]
        text = " ".join(p for p in parts if p)
        return plain_text(f"{text} ({names[row['config_key']]})" if several else text)

    return name


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_log_axes(axes, x: bool = True, y: bool = True) -> None:
    """Log axes labelled 1, 2, 5, 10, 20, 50 rather than 2x10^1 (and no crowded minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, wanted in ((axes.xaxis, x), (axes.yaxis, y)):
        if wanted:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axis.set_minor_formatter(NullFormatter())


def _few_bars(axes, groups: int) -> None:
    """Keep room for at least four groups, so one model's bars are not a wall of colour."""
    axes.set_xlim(-0.5, max(groups, 4) - 0.2)


def _by_macs(rows: list[dict]) -> list[str]:
    """Model names ordered by MACs (smallest first)."""
    macs = {}
    for row in rows:
        macs.setdefault(row["model"], row.get("macs_m") or math.inf)
    return sorted(macs, key=lambda name: (macs[name], name))


def latency_vs_macs(rows: list[dict]):
    points = [r for r in rows if r.get("latency_ms_median") and r.get("macs_m")]
    if not points:
        return "No successful latency measurement with a known MAC count."
    plt = _pyplot()
    fits = fit_groups(points)
    figure, axes = plt.subplots(figsize=(8, 5.5), layout="constrained")
    series_name = _series_namer(points)
    groups: dict[tuple, list[dict]] = {}
    for row in points:
        groups.setdefault((row["device_id"], row["format"], row["precision"], row["config_key"]), []).append(row)
    for key, members in sorted(groups.items()):
        members.sort(key=lambda r: r["macs_m"])
        xs = [r["macs_m"] for r in members]
        ys = [r["latency_ms_median"] for r in members]
        fit = fits.get(key)
        label = series_name(members[0])
        if fit is not None and fit.r_squared is not None:
            label += f" (R\u00b2 = {fit.r_squared:.3f}, slope {fit.slope:.2f})"
        dots = axes.scatter(xs, ys, s=22, label=label, zorder=3)
        # bench --repeat: the between-session 95% CI as an error bar (a single session's CI is not drawn).
        spread = [r for r in members if r.get("between_ci95_low_ms") is not None]
        if spread:
            axes.errorbar([r["macs_m"] for r in spread], [r["latency_ms_median"] for r in spread],
                          yerr=[[max(0.0, r["latency_ms_median"] - r["between_ci95_low_ms"]) for r in spread],
                                [max(0.0, r["between_ci95_high_ms"] - r["latency_ms_median"]) for r in spread]],
                          fmt="none", ecolor=dots.get_facecolor()[0], elinewidth=1, capsize=2, zorder=2)
        for row in members:
            axes.annotate(_point_label(row), (row["macs_m"], row["latency_ms_median"]), fontsize=7,
                          xytext=(3, 3), textcoords="offset points")
        if fit is not None:
            lo, hi = min(xs), max(xs)
            line_x = [lo * (hi / lo) ** (i / 20) for i in range(21)]
            axes.plot(line_x, [fit.predict(x * 1e6) for x in line_x], color=dots.get_facecolor()[0], lw=1)
    _against_macs(axes, "Median latency, ms (log)")
    return figure


def _against_macs(axes, ylabel: str) -> None:
    """Log-log axes with MACs across, as the paper's Figure 4 plots them."""
    axes.set_xscale("log")
    axes.set_yscale("log")
    _plain_log_axes(axes)
    axes.set_xlabel("Million MACs (log)")
    axes.set_ylabel(ylabel)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)


def energy_vs_macs(rows: list[dict]):
    points = [r for r in rows if r.get("energy_mj") is not None and r.get("macs_m")]
    if not points:
        read = sum(r.get("power_status") == "ok" for r in rows)
        if read:
            # Power was read, but load never rose above idle: no energy per inference to draw.
            return (f"Power was read for {read} of {len(rows)} record(s), but none gave an energy per inference "
                    "(load power was not above idle power).")
        reasons = sorted({r.get("power_status") or "none" for r in rows})
        return f"No power was measured in these runs (power status: {', '.join(reasons)})."
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 5.5), layout="constrained")
    series_name = _series_namer(points)
    series: dict[str, list[dict]] = {}
    for row in points:
        series.setdefault(series_name(row), []).append(row)
    for name, members in sorted(series.items()):
        members.sort(key=lambda r: r["macs_m"])
        axes.plot([r["macs_m"] for r in members], [r["energy_mj"] for r in members], "o-", ms=4, lw=1, label=name)
        for row in members:
            axes.annotate(_point_label(row), (row["macs_m"], row["energy_mj"]), fontsize=7,
                          xytext=(3, 3), textcoords="offset points")
    _against_macs(axes, "Energy per inference, mJ (log)")
    return figure


def accuracy_vs_latency(rows: list[dict]):
    points = [r for r in rows if r.get("top1_percent") is not None and r.get("latency_ms_median")]
    if not points:
        return ("No accuracy known for the measured models: run `mbdeploy eval`, "
                "or use Google's trained weights to get the published top-1.")
    plt = _pyplot()
    devices = sorted({r["device_id"] for r in points})
    columns = min(len(devices), 2)
    rows_of_axes = math.ceil(len(devices) / columns)
    figure, axes_grid = plt.subplots(rows_of_axes, columns, figsize=(7 * columns, 5 * rows_of_axes), squeeze=False,
                                     layout="constrained")
    for axes, device in zip([a for line in axes_grid for a in line], devices):
        mine = [r for r in points if r["device_id"] == device]
        series_name = _series_namer(mine, with_device=False)
        series: dict[str, list[dict]] = {}
        for row in mine:
            series.setdefault(series_name(row), []).append(row)
        for number, (name, members) in enumerate(sorted(series.items())):
            color = f"C{number % 10}"
            # Filled squares: measured by `mbdeploy eval`; hollow circles: the release table; hollow
            # triangles: estimates (published fp32 minus a measured drop). Each with its 95% interval.
            for source, marker, face in (("measured", "s", color), ("published", "o", "none"),
                                         ("estimate", "^", "none")):
                chosen = [r for r in members if (r["accuracy_source"] or "").startswith(source)]
                if chosen:
                    axes.scatter([r["latency_ms_median"] for r in chosen], [r["top1_percent"] for r in chosen],
                                 marker=marker, s=26, label=f"{name}, {source} top-1",
                                 facecolors=face, edgecolors=color)
                    bars = [r for r in chosen if r.get("top1_ci95_low") is not None]
                    if bars:
                        axes.errorbar([r["latency_ms_median"] for r in bars], [r["top1_percent"] for r in bars],
                                      yerr=[[r["top1_percent"] - r["top1_ci95_low"] for r in bars],
                                            [r["top1_ci95_high"] - r["top1_percent"] for r in bars]],
                                      fmt="none", ecolor=color, elinewidth=1, capsize=2)
        # A top-1 from a few images is drawn (with its wide interval) but joins no frontier.
        ranked = [r for r in mine if not r.get("accuracy_warning")]
        front = [ranked[i] for i in pareto_front([(r["latency_ms_median"], r["top1_percent"]) for r in ranked])]
        axes.step([r["latency_ms_median"] for r in front], [r["top1_percent"] for r in front], where="post",
                  color="black", lw=1, label="Pareto frontier")
        for row in mine:
            few = f" ({row['accuracy_images']} images)" if row.get("accuracy_warning") else ""
            axes.annotate(_point_label(row) + few, (row["latency_ms_median"], row["top1_percent"]), fontsize=7,
                          xytext=(3, -9), textcoords="offset points")
        axes.set_xscale("log")
        _plain_log_axes(axes, y=False)
        axes.set_title(plain_text(device), fontsize=10)
        axes.set_xlabel("Median latency, ms (log)")
        axes.set_ylabel("ImageNet top-1, %")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7)
    for axes in [a for line in axes_grid for a in line][len(devices):]:
        axes.set_visible(False)
    return figure


def speedup_over_fp32(rows: list[dict]):
    baseline = {(r["device_id"], r["model"], r["format"], r["config_key"]): r for r in rows if r["precision"] == "fp32"}
    bars: dict[str, dict[str, float]] = {}
    series_name = _series_namer(rows)
    for row in rows:
        base = baseline.get((row["device_id"], row["model"], row["format"], row["config_key"]))
        if row["precision"] == "fp32" or base is None or not row.get("latency_ms_median"):
            continue
        series = series_name(row)
        bars.setdefault(series, {})[row["model"]] = base["latency_ms_median"] / row["latency_ms_median"]
    if not bars:
        return "No model was measured both in fp32 and in another precision on the same device and runner."
    plt = _pyplot()
    models = [m for m in _by_macs(rows) if any(m in b for b in bars.values())]
    figure, axes = plt.subplots(figsize=(max(8, 0.6 * len(models) * max(1, len(bars)) / 2), 5), layout="constrained")
    width = 0.8 / len(bars)
    for i, (series, values) in enumerate(sorted(bars.items())):
        xs = [j + i * width for j, m in enumerate(models) if m in values]
        axes.bar(xs, [values[m] for m in models if m in values], width=width, label=series)
    axes.axhline(1.0, color="black", lw=0.8)
    axes.set_xticks([j + 0.4 - width / 2 for j in range(len(models))])
    _few_bars(axes, len(models))
    axes.set_xticklabels([_point_label({"model": m}) for m in models], rotation=45, ha="right", fontsize=8)
    axes.set_ylabel("Speed-up over fp32 (x)")
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(fontsize=7)
    return figure


def model_size(rows: list[dict]):
    sizes: dict[str, dict[str, int]] = {}
    for row in rows:
        if row.get("size_bytes"):
            sizes.setdefault(plain_text(f"{row['format']} {row['precision']}"), {})[row["model"]] = row["size_bytes"]
    if not sizes:
        return "No artifact sizes known."
    plt = _pyplot()
    models = _by_macs([r for r in rows if r.get("size_bytes")])
    figure, axes = plt.subplots(figsize=(max(8, 0.5 * len(models) * len(sizes) / 2), 5), layout="constrained")
    width = 0.8 / len(sizes)
    for i, (series, values) in enumerate(sorted(sizes.items())):
        xs = [j + i * width for j, m in enumerate(models) if m in values]
        axes.bar(xs, [values[m] / 1e6 for m in models if m in values], width=width, label=series)
    axes.set_xticks([j + 0.4 - width / 2 for j in range(len(models))])
    _few_bars(axes, len(models))
    axes.set_xticklabels([_point_label({"model": m}) for m in models], rotation=45, ha="right", fontsize=8)
    axes.set_ylabel("Model file size, MB")
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(fontsize=7)
    return figure


def throughput(rows: list[dict]):
    points = [r for r in rows if r.get("gmacs_per_s")]
    if not points:
        return "No successful latency measurement with a known MAC count."
    plt = _pyplot()
    with_peak = [r for r in points if r.get("fraction_of_peak")]
    figure, axes_list = plt.subplots(2 if with_peak else 1, 1, figsize=(9, 8 if with_peak else 4.5), squeeze=False,
                                     layout="constrained")
    models = _by_macs(points)
    for axes, key, label, chosen in (
        (axes_list[0][0], "gmacs_per_s", "Achieved GMAC/s", points),
        *(((axes_list[1][0], "fraction_of_peak", "Fraction of fp32 vector peak", with_peak),) if with_peak else ()),
    ):
        series: dict[str, dict[str, float]] = {}
        series_name = _series_namer(points)
        for row in chosen:
            series.setdefault(series_name(row), {})[row["model"]] = row[key]
        width = 0.8 / len(series)
        for i, (name, values) in enumerate(sorted(series.items())):
            xs = [j + i * width for j, m in enumerate(models) if m in values]
            axes.bar(xs, [values[m] for m in models if m in values], width=width, label=name)
        axes.set_xticks([j + 0.4 - width / 2 for j in range(len(models))])
        _few_bars(axes, len(models))
        axes.set_xticklabels([_point_label({"model": m}) for m in models], rotation=45, ha="right", fontsize=8)
        axes.set_ylabel(label)
        axes.grid(True, axis="y", alpha=0.3)
        axes.legend(fontsize=7)
    if with_peak:
        bases = sorted({r["peak_basis"] for r in with_peak if r.get("peak_basis")})
        axes_list[1][0].set_title(plain_text("Peak: " + "; ".join(bases)), fontsize=9)
    else:
        axes_list[0][0].set_title("Peak unknown for these devices (known only for fp32 on this x86 host)", fontsize=9)
    return figure


FIGURES: tuple[tuple[str, str, Callable], ...] = (
    ("latency_vs_macs", "Latency versus MACs (log-log) with the fitted power law", latency_vs_macs),
    ("energy_vs_macs", "Energy per inference versus MACs", energy_vs_macs),
    ("accuracy_vs_latency", "ImageNet top-1 versus latency, with the Pareto frontier", accuracy_vs_latency),
    ("speedup_over_fp32", "Speed-up of fp16 / dynamic / int8 over fp32", speedup_over_fp32),
    ("model_size", "Model size per format and precision", model_size),
    ("throughput", "Achieved throughput (GMAC/s) and fraction of peak", throughput),
)


def render_all(rows: list[dict], out_dir: Path, cache=None) -> list[FigureOutput]:  # noqa: ANN001 - FigureCache
    """Draw every figure into out_dir as NAME.png and NAME.svg (written atomically).

    With a cache (report/figure_cache.py), a figure whose rows are unchanged is copied from
    the previous report. The key is every column of the rows, more than any one figure
    reads: a change elsewhere redraws needlessly, never too little.
    """
    from mbdeploy.report.figure_cache import FigureCache

    cache = cache or FigureCache(None, out_dir)
    return [cache.figure(name, title, rows, lambda draw=draw: draw(rows)) for name, title, draw in FIGURES]


def save_figure(figure, name: str, title: str, out_dir: Path, formats: tuple[str, ...] = ("png", "svg")) -> FigureOutput:
    """A matplotlib figure written as NAME.png and NAME.svg (or the formats given; atomically), then closed."""
    import io

    plt = _pyplot()
    paths = {}
    for extension in formats:
        buffer = io.BytesIO()
        # PNG at zlib level 1: the same pixels, ~10% larger, and encoding takes half the time.
        figure.savefig(buffer, format=extension, dpi=110,
                       **({"pil_kwargs": {"compress_level": 1}} if extension == "png" else {}))
        paths[extension] = Path(out_dir) / f"{name}.{extension}"
        write_bytes(paths[extension], buffer.getvalue())
    plt.close(figure)
    return FigureOutput(name, title, png=paths.get("png"), svg=paths.get("svg"))


# The set-up other report modules (fleet, history) draw with.
pyplot = _pyplot
plain_log_axes = _plain_log_axes
