"""`mbdeploy inspect`: counts from the model file itself."""

from __future__ import annotations

from pathlib import Path

import click

from mbdeploy.cli.output import console, emit, json_option


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@json_option
def inspect(path: Path, as_json: bool) -> None:
    """Inputs/outputs, op histogram, params, MACs and the Table 2 breakdown of a model file.

    Works on any .tflite (and .onnx / .mlpackage). Example: mbdeploy inspect models/mobilenet_v1_0.75_192/mobilenet_v1_0.75_192_int8.tflite
    """
    from mbdeploy.inspection import inspect_model

    report = inspect_model(path)
    emit(report, as_json, _render)


def _render(report: dict) -> None:
    from rich.table import Table

    out = console()
    out.print(f"[bold]{report['path']}[/bold] ({report['format']})")
    for role in ("inputs", "outputs"):
        for tensor in report[role]:
            quant = tensor["quantization"]
            q = f" scale={quant['scale']:.6g} zero_point={quant['zero_point']}" if quant else ""
            out.print(f"  {role[:-1]}: {tensor['name']} {tensor['shape']} {tensor['dtype']}{q}")
    out.print(f"  MACs: {report['macs'] / 1e6:.1f} M   params: {report['params'] / 1e6:.3f} M")
    out.print("  ops: " + ", ".join(f"{op} x{count}" for op, count in report["ops"].items()))
    table = Table(title="Resource per layer type (paper Table 2)")
    for column in ("type", "M MACs", "MACs %", "params", "params %"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for row in report["breakdown"]:
        table.add_row(row["type"], f"{row['macs'] / 1e6:.2f}", f"{row['macs_percent']:.2f}",
                      f"{row['params']:,}", f"{row['params_percent']:.2f}")
    out.print(table)
    if any(row["type"] == "Conv 3x3" for row in report["breakdown"]):
        from mbdeploy.published import KNOWN_DISCREPANCIES

        out.print(f"Conv 3x3: {KNOWN_DISCREPANCIES['table2:Conv 3x3']}")
