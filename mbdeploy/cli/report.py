"""`mbdeploy report [RESULTS...] [--out DIR]`: figures, results.csv and one index.html."""

from __future__ import annotations

from pathlib import Path

import click

from mbdeploy.cli.options import typed_models_exist
from mbdeploy.cli.output import emit, json_option, warnings_to_stderr


@click.command(help="Write the report of result runs (default: every run under results/) as one "
                    "self-contained index.html with figures (PNG and SVG) and results.csv; prints the page's path.")
@click.argument("results", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/report"), show_default=True)
@click.option("--models", "models", multiple=True, type=click.Path(path_type=Path), default=["models"],
              callback=typed_models_exist,
              show_default=True, help="Folders with converted models, for accuracy and sizes in manifests.")
@click.option("--device", "device", default=None, metavar="PATTERN",
              help="Only devices whose id matches this shell pattern (e.g. 'pixel*').")
@click.option("--model", "model", default=None, metavar="PATTERN",
              help="Only models whose name matches this shell pattern (e.g. '*_224'); also the model the fleet "
                   "view ranks devices by.")
@click.option("--since", "since", default=None, metavar="DATE",
              help="Only runs started on or after DATE (YYYY-MM-DD or an ISO time, UTC).")
@json_option
def report(results: tuple, out_dir: Path, models: tuple, device: str | None, model: str | None, since: str | None,
           as_json: bool) -> None:
    from mbdeploy.report import write_report

    with warnings_to_stderr():  # a skipped record line is named, and the report goes on
        written = write_report(results or [Path("results")], out_dir, models,
                               device=device, model=model, since=since)
    emit(written.to_dict(), as_json, lambda _: click.echo(str(written.index)))
