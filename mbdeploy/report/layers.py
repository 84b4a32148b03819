"""The report's "Where the time goes" section: per-layer profiles (`mbdeploy profile`).

- The paper's Table 2 (share of Mult-Adds and parameters by layer type) with
  a measured column: each type's share of the time, per device, precision
  and profiled model, and the paper's claim that MobileNet "spends 95% of its
  computation time in 1x1 convolutions" tested in words against it.
- Per-layer time against per-layer MACs (log-log, coloured by type); the
  pooling and the softmax have no MACs and are left out of that figure.
- GMAC/s along the network's depth, one line per profile.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from mbdeploy.atomic import write_bytes
from mbdeploy.layer_accounting import TYPE_ORDER
from mbdeploy.records.layers import profile_summaries
from mbdeploy.report.figures import FigureOutput, plain_text
from mbdeploy.report.html import table

FIGURE_NAMES = ("layer_time_vs_macs", "gmacs_along_depth")
PAPER_CLAIM = 0.95  # "MobileNet spends 95% of its computation time in 1x1 convolutions"
# One colour per type, the same in both figures.
TYPE_COLOURS = dict(zip(TYPE_ORDER, ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f")))


def _label(summary: dict) -> str:
    return f"{summary['device']} {summary['precision']} {summary['model'].removeprefix('mobilenet_v1_')}"


def _share(value: float | None) -> str:
    return f"{100 * value:.1f}%" if value is not None else "n/a"


def claim_in_words(summary: dict) -> str:
    """The paper's 95% claim against one profile, in one sentence."""
    by_type = {row["type"]: row for row in summary["by_type"]}
    pointwise = by_type.get("Conv 1x1", {})
    depthwise = by_type.get("Conv DW 3x3", {})
    share = pointwise.get("share_of_time")
    if share is None:
        return f"{_label(summary)}: the profile does not time the 1x1 convolutions separately (a delegate ran them)."
    verdict = "holds" if share >= PAPER_CLAIM else "does not hold"
    return (f"{_label(summary)}: 1x1 convolutions take {_share(share)} of the time for "
            f"{_share(pointwise.get('share_of_macs'))} of the MACs, so the paper's 95% {verdict} here; "
            f"depthwise layers take {_share(depthwise.get('share_of_time'))} of the time for "
            f"{_share(depthwise.get('share_of_macs'))} of the MACs.")


def table2(summaries: list[dict]) -> str:
    headers = ["device", "precision", "model", "method", "type", "layers", "share of MACs", "share of time (measured)",
               "GMAC/s", "whole ms", "sum of layers ms"]
    rows = []
    for summary in summaries:
        for row in summary["by_type"]:
            rows.append([summary["device"], summary["precision"], summary["model"], summary["method"], row["type"],
                         row["layers"], _share(row["share_of_macs"]), _share(row["share_of_time"]),
                         row["gmacs_per_s"], summary["whole_ms"]["median"], summary["sum_of_layers_ms"]])
    return table(headers, rows)


def time_vs_macs(summaries: list[dict]):
    points = [(layer, summary) for summary in summaries for layer in summary["layers"]
              if layer["macs"] and (layer["median_ms"] or layer["mean_ms"])]
    if not points:
        return "no profiled layer with MACs and a time"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 5))
    for kind in TYPE_ORDER:
        mine = [(layer["macs"] / 1e6, layer["median_ms"] or layer["mean_ms"]) for layer, _ in points
                if layer["type"] == kind]
        if mine:
            axes.scatter(*zip(*mine), s=14, alpha=0.75, color=TYPE_COLOURS[kind], label=kind)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("layer MACs (millions)")
    axes.set_ylabel("layer time (ms)")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(title="type", fontsize=8)
    figure.tight_layout()
    return figure


def gmacs_along_depth(summaries: list[dict]):
    if not any(layer["gmacs_per_s"] for summary in summaries for layer in summary["layers"]):
        return "no profiled layer with a GMAC/s figure"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 5))
    for summary in summaries:
        xs = [i for i, layer in enumerate(summary["layers"]) if layer["gmacs_per_s"]]
        ys = [summary["layers"][i]["gmacs_per_s"] for i in xs]
        axes.plot(xs, ys, linewidth=1, alpha=0.6, label=plain_text(_label(summary)))
        axes.scatter(xs, ys, s=12, color=[TYPE_COLOURS[summary["layers"][i]["type"]] for i in xs], zorder=3)
    names = [plain_text(layer["name"].replace("Conv2d_", "")) for layer in summaries[0]["layers"]]
    axes.set_xticks(range(len(names)))
    axes.set_xticklabels(names, rotation=90, fontsize=7)
    axes.set_ylabel("GMAC/s")
    axes.set_xlabel("layer (network depth); points coloured by type as in the figure above")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def _save(result, name: str, title: str, out_dir: Path) -> FigureOutput:  # noqa: ANN001
    if isinstance(result, str):
        return FigureOutput(name, title, note=result)
    import matplotlib.pyplot as plt

    paths = {}
    for extension in ("png", "svg"):
        buffer = io.BytesIO()
        result.savefig(buffer, format=extension, dpi=110)
        paths[extension] = Path(out_dir) / f"{name}.{extension}"
        write_bytes(paths[extension], buffer.getvalue())
    plt.close(result)
    return FigureOutput(name, title, png=paths["png"], svg=paths["svg"])


def _figure_html(output: FigureOutput, out_dir: Path) -> str:
    title = html.escape(output.title)
    if output.png is None:
        return f'<figure id="{output.name}"><h3>{title}</h3><p class="note">Not drawn: {html.escape(output.note or "")}</p></figure>'
    data = base64.b64encode(output.png.read_bytes()).decode("ascii")
    svg = html.escape(output.svg.relative_to(out_dir).as_posix())
    return (f'<figure id="{output.name}"><h3>{title}</h3><img alt="{title}" src="data:image/png;base64,{data}">'
            f'<figcaption>Also as <a href="{svg}">SVG</a>.</figcaption></figure>')


def where_the_time_goes(runs: list, out_dir: Path) -> tuple[str, list[FigureOutput]]:  # runs: list[Run]
    """The section's HTML and its figures; empty when no run holds a profile."""
    summaries = []
    for run in runs:
        if run.layer_records:
            summaries += profile_summaries(run.records, run.layer_records)
    if not summaries:
        return "", []
    figures = [
        _save(time_vs_macs(summaries), "layer_time_vs_macs", "Per-layer time against per-layer MACs", out_dir),
        _save(gmacs_along_depth(summaries), "gmacs_along_depth", "GMAC/s along the network's depth", out_dir),
    ]
    claims = "".join(f"<li>{html.escape(claim_in_words(s))}</li>" for s in summaries)
    body = (
        "<h2>Where the time goes</h2>"
        "<p>Per-layer profiles (<code>mbdeploy profile</code>). The paper's Table 2 counts where the Mult-Adds "
        "and parameters go; the measured column is each layer type's share of the time, the sum of its layers' "
        "median times over the sum of all layers' (an op profile reports averages). Method "
        "<code>single_layer</code> times each layer cut out of the artifact alone: a layer alone is not the layer "
        "in the graph (warm caches, one invoke's fixed overhead per layer, no fusion across layers), so the sum "
        "of layers is shown beside the whole model.</p>"
        f"<p>The paper: \u201cMobileNet spends 95% of its computation time in 1x1 convolutions\u201d.</p><ul>{claims}</ul>"
        + table2(summaries) + "".join(_figure_html(f, out_dir) for f in figures)
    )
    return body, figures
