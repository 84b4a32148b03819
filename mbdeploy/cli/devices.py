"""`mbdeploy devices`: every reachable device, one row each."""

from __future__ import annotations

import click

from mbdeploy.cli.output import console, emit, json_option, warnings_to_stderr


def _render(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table("kind", "id", "model", "CPU/SoC", "ABI", "OS", "cores", "governor", "temp C", "state")
    for row in rows:
        temperature = row.get("temperature_c")
        state = row["state"] if row["state"] == "online" else f"{row['state']}: {row.get('extra', {}).get('error', '')}"
        table.add_row(row["kind"], row["id"], row.get("model") or "", row.get("soc") or "", row.get("abi") or "",
                      _short_os(row.get("os")), str(row.get("cores") or ""), row.get("governor") or "",
                      f"{temperature:.1f}" if temperature is not None else "", state)
    console().print(table)


def _short_os(text: str | None) -> str:
    """The table shows the OS without the kernel build string (--json has it all)."""
    return (text or "").split(" (kernel")[0]


@click.command(name="devices")
@click.option("--adb-host", metavar="HOST[:PORT]", default=None, help="adb server to ask for Android devices.")
@json_option
def devices(adb_host: str | None, as_json: bool) -> None:
    """List every reachable device: this host, configured ssh boards, phones."""
    from mbdeploy.devices.registry import describe, discover

    with warnings_to_stderr():
        found = discover(adb_host)
    rows = []
    try:
        rows = [describe(device).to_dict() for device in found]
    finally:
        for device in found:
            device.close()
    emit(rows, as_json, _render)
