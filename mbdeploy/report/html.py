"""The report page: one self-contained index.html.

Figures are embedded as PNG data URIs (the SVGs, where written, sit beside the page for
print), styles are inline, and there is no script and no network asset: the
page renders the same from a laptop's disk, a CI artifact or an e-mail.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Iterable, Sequence

from mbdeploy.report.figures import FigureOutput, short_label
from mbdeploy.records.fit import PowerLawFit

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.8em;margin:1em 0}th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{color:#a00}tr.throttled td{background:#fff4e0}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
.note{background:#f7f7f7;border-left:4px solid #999;padding:.6em 1em}
.scroll{overflow-x:auto}
"""


def _cell(value: object, digits: int = 3) -> str:
    if value is None or value == "":
        return "<td></td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, float):
        text = f"{value:.{digits}g}" if abs(value) < 1e-3 else f"{value:,.{digits}f}"
        return f'<td class="num">{text}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], row_classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        css = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{css}>" + "".join(_cell(v) for v in row) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


# The fleet and history figures may still be being drawn (report/drawing.py) when their section is
# written: it holds this mark where the PNG goes, and `embed_figures` puts the PNG in once every
# figure is on disk. Escaped text never holds "<!--", so no data can forge a mark.
_PENDING = "<!--mbdeploy-png:{}-->"
_PENDING_PATTERN = re.compile(r"<!--mbdeploy-png:([a-z0-9_]+)-->")


def _figure(output: FigureOutput, out_dir: Path, pending: bool = False) -> str:
    title = html.escape(output.title)
    if output.png is None:
        note = html.escape(output.note or "")
        return f'<figure id="{output.name}"><h3>{title}</h3><p class="note">Not drawn: {note}</p></figure>'
    data = _PENDING.format(output.png.stem) if pending else base64.b64encode(output.png.read_bytes()).decode("ascii")
    caption = (f'<figcaption>Also as <a href="{html.escape(output.svg.relative_to(out_dir).as_posix())}">SVG</a>.'
               '</figcaption>' if output.svg else "")
    return (f'<figure id="{output.name}"><h3>{title}</h3>'
            f'<img alt="{title}" src="data:image/png;base64,{data}">{caption}</figure>')


def figure_html(output: FigureOutput, out_dir: Path) -> str:
    """A figure of the report's other sections (fleet, history), its PNG embedded by `embed_figures`."""
    return _figure(output, out_dir, pending=True)


def embed_figures(page: str, out_dir: Path) -> str:
    """The page with each figure mark replaced by its PNG from out_dir (all drawn by now)."""
    return _PENDING_PATTERN.sub(
        lambda mark: base64.b64encode((Path(out_dir) / f"{mark.group(1)}.png").read_bytes()).decode("ascii"), page)


def device_summary(all_rows: list[dict], latest: list[dict], fits: dict[tuple, PowerLawFit]) -> str:
    headers = ["device", "kind", "model", "SoC", "OS", "cores", "records ok", "failed", "throttled",
               "fastest", "fastest median ms", "fits: format precision config -> R\u00b2, LOO median |error|"]
    lines = []
    by_device: dict[str, list[dict]] = {}
    latest_by_device: dict[str, list[dict]] = {}
    for row in all_rows:
        by_device.setdefault(row["device_id"], []).append(row)
    for row in latest:
        latest_by_device.setdefault(row["device_id"], []).append(row)
    for device in sorted(by_device):
        mine = by_device[device]
        ok = latest_by_device.get(device, [])
        fastest = min(ok, key=lambda r: r["latency_ms_median"]) if ok else None
        fit_text = "; ".join(
            f"{fmt} {precision} {config}: R\u00b2 {fit.r_squared:.3f}"
            + (f", {100 * fit.loo_median_abs_error:.1f}%" if fit.loo_median_abs_error is not None else "")
            for (dev, fmt, precision, config), fit in sorted(fits.items()) if dev == device and fit.r_squared is not None
        )
        first = mine[0]
        lines.append([device, first["device_kind"], first["device_model"], first["device_soc"], first["device_os"],
                      first["device_cores"], sum(r["status"] == "ok" for r in mine),
                      sum(r["status"] != "ok" for r in mine), sum(bool(r["throttled"]) for r in mine),
                      short_label(fastest) if fastest else None,
                      fastest["latency_ms_median"] if fastest else None, fit_text])
    return table(headers, lines)


def numerics_warning(rows: list[dict]) -> str:
    """A paragraph naming every record whose device computed wrong outputs (bench --check-outputs); else nothing."""
    wrong = [r for r in rows if r.get("numerics_passed") is False]
    if not wrong:
        return ""
    items = "".join(f"<li>{html.escape(r['device_id'])}: {html.escape(r['model'])} {html.escape(r['format'])} "
                    f"{html.escape(r['precision'])} ({html.escape(r['run_id'])}): "
                    f"{html.escape(r.get('numerics_failures') or '')}</li>" for r in wrong)
    return (f'<div class="failed"><h2>Wrong outputs on the device</h2><p>{len(wrong)} record(s) timed a model whose '
            "outputs on the probe inputs disagreed with convert's reference beyond verify.py's tolerance: their "
            f"latency is of a model computing wrong answers.</p><ul>{items}</ul></div>")


def device_top1(row: dict) -> str:
    """`eval --device`'s top-1 on the row's own device, with its evidence; beside the model's top-1, never for it."""
    if row.get("device_top1_percent") is None:
        return ""
    interval = (f"{row['device_top1_ci95_low']:.1f}-{row['device_top1_ci95_high']:.1f}, "
                if row.get("device_top1_ci95_low") is not None else "")
    return f"{row['device_top1_percent']:.1f}% ({interval}{row['device_top1_images']} images; eval --device)"


def records_table(rows: list[dict]) -> str:
    headers = ["run", "device", "model", "format", "precision", "runner", "threads", "delegate", "median ms",
               "CI95 low", "CI95 high", "between-session CI95", "p90 ms", "samples", "MMACs", "size bytes", "GMAC/s", "energy mJ",
               "top-1 %", "top-1 95% CI", "top-1 source", "top-1 on this device", "outputs on device", "throttled",
               "status"]
    ordered = sorted(rows, key=lambda r: (r["device_id"], r["format"], r["precision"], r.get("macs_m") or 0, r["run_id"]))
    lines = [[r["run_id"], r["device_id"], r["model"], r["format"], r["precision"], r["runner"], r["threads"],
              r["delegate"], r["latency_ms_median"], r["latency_ms_ci95_low"], r["latency_ms_ci95_high"],
              (f"{r['between_ci95_low_ms']:.3f}-{r['between_ci95_high_ms']:.3f} ({r['sessions']} sessions)"
               if r.get("between_ci95_low_ms") is not None else ""),
              r["latency_ms_p90"], r["latency_count"], r["macs_m"], r["size_bytes"], r["gmacs_per_s"],
              r["energy_mj"], r["top1_percent"],
              f"{r['top1_ci95_low']:.1f}-{r['top1_ci95_high']:.1f}" if r.get("top1_ci95_low") is not None else "",
              (r["accuracy_source"] or "") + (f"; {r['accuracy_warning']}" if r.get("accuracy_warning") else ""),
              device_top1(r),
              {True: "ok", False: f"WRONG: {r.get('numerics_failures') or ''}", None: ""}[r.get("numerics_passed")],
              (r["throttle_reasons"] or "yes") if r["throttled"] else "no",
              r["status"] if r["status"] == "ok" else f"failed: {r['error'] or ''}"] for r in ordered]
    classes = ["failed" if r["status"] != "ok" or r.get("numerics_passed") is False
               else ("throttled" if r["throttled"] else "") for r in ordered]
    return table(headers, lines, classes)


def run_metadata(runs: list) -> str:  # list[Run]
    blocks = []
    for run in runs:
        devices = {(r["device"]["id"], r["device"].get("os"), r["device"].get("model")) for r in run.records}
        runners = {(r["runner"]["name"], r["runner"].get("threads"), r["runner"].get("delegate")) for r in run.records}
        rows = [["folder", str(run.path)], ["records", len(run.records)],
                ["devices (id, OS, model)", "; ".join(", ".join(str(x) for x in d) for d in sorted(devices, key=str))],
                ["runners (name, threads, delegate)", "; ".join(", ".join(str(x) for x in r) for r in sorted(runners, key=str))]]
        for key, value in run.meta.items():
            rows.append([key, value if isinstance(value, (str, int, float)) else json.dumps(value, sort_keys=True)])
        blocks.append(f"<h3>Run {html.escape(run.run_id)}</h3>" + table(["field", "value"], rows))
    return "".join(blocks)


# Past this many records the page lists the latest record per match key (results.csv holds them all).
MAX_TABLE_ROWS = 2000


def _records_section(all_rows: list[dict], latest: list[dict]) -> str:
    if len(all_rows) <= MAX_TABLE_ROWS:
        return "<h2>Every record</h2><p>Rows shaded orange were throttled; red ones failed.</p>" + records_table(all_rows)
    return (f"<h2>Latest records</h2><p>{len(all_rows):,} records are too many for one page: this lists the latest "
            f"successful record of each of the {len(latest):,} match keys (device, model, format, precision, runner "
            'config); every record is in <a href="results.csv">results.csv</a>. Rows shaded orange were throttled.</p>'
            + records_table(latest))


def render_page(*, runs: list, all_rows: list[dict], latest: list[dict], fits: dict, figures: list[FigureOutput],
                out_dir: Path, generated_at: str, extra_sections: Sequence[str] = ()) -> str:
    sections = [
        f"<h1>mbdeploy report</h1><p>{len(all_rows)} records from {len(runs)} run(s); generated {html.escape(generated_at)}. "
        'Latency is the median with its 95% confidence interval; top-1 is "published" (the release table, for '
        'Google\'s trained weights, 50,000 images) or "measured" (by <code>mbdeploy eval</code>), whichever has the '
        'tighter 95% (Wilson) interval, or an estimate for quantized artifacts (published fp32 minus the measured drop); '
        'a top-1 from fewer than 300 images is marked and joins no Pareto frontier. With <code>bench --repeat</code>, '
        'error bars are the between-session 95% CI. The data is in '
        '<a href="results.csv">results.csv</a>.</p>',
        numerics_warning(all_rows),
        "<h2>Devices</h2>" + device_summary(all_rows, latest, fits),
        "<h2>Figures</h2>" + "".join(_figure(f, out_dir) for f in figures),
        *extra_sections,
        _records_section(all_rows, latest),
        "<h2>Runs</h2>" + run_metadata(runs),
    ]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>mbdeploy report</title><style>{_STYLE}</style></head><body>"
            + "".join(sections) + "</body></html>\n")
