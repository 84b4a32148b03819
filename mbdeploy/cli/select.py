"""`mbdeploy select --device D --budget-ms X`: the most accurate model within budget."""

from __future__ import annotations

from pathlib import Path

import click

from mbdeploy.cli.options import comma_choices, finite, typed_models_exist
from mbdeploy.cli.output import console, emit, json_option, warnings_to_stderr
from mbdeploy.formats import FORMAT_NAMES


@click.command(help="The most accurate model within a latency budget on one device, measured or predicted "
                    "from the device's latency-versus-MACs fit.")
@click.option("--device", "device", required=True,
              help="A device id as in the records, or any name bench takes (alias, model, 'pixel', ssh://...).")
@click.option("--budget-ms", type=finite(min=0, min_open=True), required=True, help="Latency budget in milliseconds.")
@click.option("--metric", type=click.Choice(["median", "p90"]), default="median", show_default=True)
@click.option("--formats", multiple=True, callback=comma_choices(FORMAT_NAMES), metavar="F[,F...]",
              help=f"Only these formats: a comma list of {','.join(FORMAT_NAMES)} (or repeat the option); default all.")
@click.option("--max-size-mb", type=finite(min=0, min_open=True), default=None, help="Largest model file allowed, in MB.")
@click.option("--results", "results", multiple=True, type=click.Path(path_type=Path), default=["results"],
              show_default=True, help="Result runs or a folder of runs.")
@click.option("--models", "models", multiple=True, type=click.Path(path_type=Path), default=["models"],
              callback=typed_models_exist,
              show_default=True, help="Folders with converted models (manifest.json).")
@click.option("--adb-host", metavar="HOST[:PORT]", default=None, help="adb server, to resolve a phone's name.")
@json_option
def select(device: str, budget_ms: float, metric: str, formats: tuple, max_size_mb: float | None,
           results: tuple, models: tuple, adb_host: str | None, as_json: bool) -> None:
    from mbdeploy.devices.registry import resolve_id
    from mbdeploy.errors import ResultsError
    from mbdeploy.select import select_model

    with warnings_to_stderr():  # a skipped record line is named, and the choice goes on
        selection = select_model(device, budget_ms, results, models, metric, formats or None, max_size_mb,
                                 resolve_device=lambda name, ids: resolve_id(name, ids, adb_host))
    emit(selection.to_dict(), as_json, lambda _: _render(selection))
    if selection.chosen is None:
        raise ResultsError(f"no model with known accuracy fits {budget_ms:g} ms ({metric}) on {selection.device}")


def _render(selection) -> None:  # noqa: ANN001 - Selection
    from rich.table import Table

    table = Table(title=f"Candidates on {selection.device}, budget {selection.budget_ms:g} ms ({selection.metric})")
    for header in ("", "model", "format", "precision", "runner config", "MMACs", "size MB", "top-1 % (95% CI)", "top-1 from",
                   "latency ms", "latency from", "status"):
        table.add_column(header)
    for c in selection.candidates:
        source = c.latency_source or ""
        if c.latency_source == "predicted":
            error = f"\u00b1{100 * c.fit_error:.0f}%" if c.fit_error is not None else "error unknown"
            source = (f"predicted (layer model, {error}, profiles of {c.fit_points})" if c.predictor == "layer model"
                      else f"predicted ({error}, fit of {c.fit_points})")
        table.add_row("\u2192" if c is selection.chosen else "", c.model, c.format, c.precision, c.config or "",
                      f"{c.macs_m:.1f}" if c.macs_m else "", f"{c.size_bytes / 1e6:.2f}" if c.size_bytes else "",
                      (f"{c.top1_percent:.1f}" if c.top1_percent is not None else "")
                      + (f" ({c.top1_ci95[0]:.1f}-{c.top1_ci95[1]:.1f})" if c.top1_ci95 else ""),
                      c.accuracy_source or "",
                      f"{c.latency_ms:.2f}" if c.latency_ms is not None else "", source, c.status)
    console().print(table)
    for c in selection.candidates:
        if c.accuracy_warning and c.top1_percent is not None:
            console().print(f"Note: {c.model} {c.format} {c.precision}: top-1 {c.accuracy_warning}; ranked by the "
                            "lower end of its 95% interval")
    if selection.chosen:
        c = selection.chosen
        console().print(f"Chosen: {c.model} {c.format} {c.precision} ({c.config}), top-1 {c.top1_percent:.1f}% "
                        + (f"(95% CI {c.top1_ci95[0]:.1f}-{c.top1_ci95[1]:.1f}, " if c.top1_ci95 else "(")
                        + f"{c.accuracy_source}), {c.latency_ms:.2f} ms {c.latency_source}")

