"""`mbdeploy compare BASELINE CURRENT [--threshold 5%]`: a latency regression gate."""

from __future__ import annotations

from pathlib import Path

import click

from mbdeploy.cli.output import console, emit, json_option, warn, warnings_to_stderr


@click.command(help="Compare two result runs. Exits non-zero when a median latency grew beyond the "
                    "threshold with non-overlapping between-session 95% CIs (both runs benched with --repeat), "
                    "or a model that ran before now fails. Growth judged on within-session CIs only is "
                    "reported as unconfirmed and does not fail.")
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("current", type=click.Path(path_type=Path))
@click.option("--threshold", default="5%", show_default=True, help="Allowed growth of the median: 5% or 0.05.")
@json_option
def compare(baseline: Path, current: Path, threshold: str, as_json: bool) -> None:
    from mbdeploy.compare import compare_runs, parse_threshold
    from mbdeploy.errors import ResultsError

    with warnings_to_stderr():  # each skipped line is named on its own Warning: line
        result = compare_runs(baseline, current, parse_threshold(threshold))
    emit(result.to_dict(), as_json, lambda _: _render(result))
    if result.unconfirmed:
        warn(f"{len(result.unconfirmed)} record(s) slower beyond {100 * result.threshold:g}% with non-overlapping "
             "within-session CIs only: unconfirmed (one session's CI ignores run-to-run drift); "
             "bench both with --repeat K (K >= 3) to gate on the between-session CI")
    if result.regressions:
        worst = max(result.regressions, key=lambda p: p.change or 0)
        raise ResultsError(
            f"{len(result.regressions)} of {len(result.pairs)} records regressed beyond "
            f"{100 * result.threshold:g}% (worst: {worst.model} {worst.format} {worst.precision} on {worst.device}, "
            + (f"{100 * worst.change:+.1f}%)" if worst.change is not None else f"{worst.verdict})")
        )
    if result.unreadable:
        # A gate must not pass on data it could not read: the other pairs are judged above, the exit says so.
        raise ResultsError(f"{len(result.unreadable)} line(s) of the runs could not be read (named above); "
                           "no regression among the rest, but the gate fails until they are fixed or removed")


def _ci(ci: tuple) -> str:
    return "" if None in ci else f"{ci[0]:.3f}-{ci[1]:.3f}"


def _render(result) -> None:  # noqa: ANN001 - Comparison
    from rich.table import Table

    table = Table(title=f"Latency, baseline vs current (threshold {100 * result.threshold:g}%)")
    for header in ("device", "model", "format", "precision", "config", "baseline ms", "CI95", "current ms", "CI95",
                   "change", "CI used", "verdict"):
        table.add_column(header, justify="right" if "ms" in header or header == "change" else "left")
    for p in result.pairs:
        table.add_row(p.device, p.model, p.format, p.precision, p.config_key,
                      f"{p.baseline_ms:.3f}" if p.baseline_ms is not None else "", _ci(p.baseline_ci),
                      f"{p.current_ms:.3f}" if p.current_ms is not None else "", _ci(p.current_ci),
                      f"{100 * p.change:+.1f}%" if p.change is not None else "", p.ci_used or "",
                      f"[red]{p.verdict}[/red]" if p.regressed else p.verdict)
    console().print(table)

