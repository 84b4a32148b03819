"""`mbdeploy table`: the release grid with our counts beside the published ones."""

from __future__ import annotations

import click

from mbdeploy.cli.output import console, emit, json_option


@click.command()
@json_option
def table(as_json: bool) -> None:
    """The 16-model grid: our MACs and params beside the published MACs, params, top-1, top-5.

    Rows where the published MACs contradict the paper are flagged, not hidden.
    """
    from mbdeploy.published import comparison_table

    emit(comparison_table(), as_json, _render)


def _render(rows: list[dict]) -> None:
    from rich.table import Table

    grid = Table(title="MobileNet v1: computed vs published")
    for column in ("model", "M MACs", "published", "diff", "M params", "published", "top-1", "top-5", ""):
        grid.add_column(column, justify="left" if column in ("model", "") else "right", no_wrap=True)
    notes = []
    for row in rows:
        flag = ""
        if row["discrepancy"]:
            notes.append(f"[{len(notes) + 1}] {row['name']}: {row['discrepancy']}")
            flag = f"[{len(notes)}]"
        grid.add_row(
            row["name"],
            f"{row['macs'] / 1e6:.1f}",
            f"{row['published_macs_m']:g}",
            f"{row['macs_diff_percent']:+.1f}%",
            f"{row['params'] / 1e6:.2f}",
            f"{row['published_params_m']:g}",
            f"{row['published_top1']:.1f}",
            f"{row['published_top5']:.1f}",
            flag,
        )
    out = console()
    out.print(grid)
    for note in notes:
        out.print(note)
    from mbdeploy.published import KNOWN_DISCREPANCIES

    # Not a row of the grid, but a published figure that disagrees all the same.
    out.print(f"[{len(notes) + 1}] paper Table 2, Conv 3x3: {KNOWN_DISCREPANCIES['table2:Conv 3x3']}")
