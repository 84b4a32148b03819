"""`mbdeploy devices`: every reachable device, one row each."""

from __future__ import annotations

import click

from mbdeploy.cli.output import console, emit, json_option, warnings_to_stderr


def _render(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table("kind", "id", "model", "CPU/SoC", "ABI", "OS", "cores", "governor", "temp C", "state")
    for row in rows:
        temperature = row.get("temperature_c")
        extra = row.get("extra") or {}
        state = row["state"] if row["state"] == "online" else f"{row['state']}: {extra.get('error') or extra.get('fix', '')}"
        table.add_row(row["kind"], row["id"], row.get("model") or "", row.get("soc") or "", row.get("abi") or "",
                      _short_os(row.get("os")), str(row.get("cores") or ""), row.get("governor") or "",
                      f"{temperature:.1f}" if temperature is not None else "", state)
    console().print(table)


def _short_os(text: str | None) -> str:
    """The table shows the OS without the kernel build string (--json has it all)."""
    return (text or "").split(" (kernel")[0]


def _render_hosted(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table("device (--device aihub:NAME)", "OS", "chipset (--device aihub:chipset:NAME)",
                  title="Hosted devices on Qualcomm AI Hub")
    for row in rows:
        table.add_row(row["name"], row["os"], row["chipset"] or "")
    console().print(table)


@click.command(name="devices")
@click.option("--adb-host", metavar="HOST[:PORT]", default=None, help="adb server to ask for Android devices.")
@click.option("--hosted", is_flag=True, help="List the hosted phones Qualcomm AI Hub offers (cached for a day).")
@click.option("--refresh", is_flag=True, help="With --hosted: ask the hub again instead of using the cache.")
@click.option("--trust-project-ssh", is_flag=True,
              help="Use [ssh] options and config from ./mbdeploy.toml (commands in them are still refused).")
@json_option
def devices(adb_host: str | None, hosted: bool, refresh: bool, trust_project_ssh: bool, as_json: bool) -> None:
    """List every reachable device: this host, configured ssh boards, phones (--hosted: AI Hub's)."""
    from mbdeploy.devices.config import load_config
    from mbdeploy.devices.registry import describe, discover

    if hosted:
        from mbdeploy.devices.aihub import hosted_devices

        emit([device.to_dict() for device in hosted_devices(refresh=refresh)], as_json, _render_hosted)
        return

    with warnings_to_stderr():
        found = discover(adb_host, load_config(trust_project_ssh=trust_project_ssh))
    rows = []
    try:
        rows = [describe(device).to_dict() for device in found]
    finally:
        for device in found:
            device.close()
    emit(rows, as_json, _render)
