"""User configuration for devices: aliases and ssh hosts.

Read from `mbdeploy.toml` in the current folder, else
`~/.config/mbdeploy/config.toml` (or `$MBDEPLOY_CONFIG` when set):

    [aliases]
    pi = "ssh://pi@10.0.0.5"             # any --device value: ssh URL, id or model
    pixel = "emulator-5554"

    [ssh]
    hosts = ["ssh://pi@10.0.0.5?python=/home/pi/venv/bin/python"]   # listed by `mbdeploy devices`
    config = "~/.ssh/config-boards"      # optional: passed to ssh -F
    options = ["-o", "Compression=no"]   # optional: extra ssh options
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mbdeploy.errors import InvalidInput

PROJECT_CONFIG = "mbdeploy.toml"


@dataclass
class DeviceConfig:
    aliases: dict[str, str] = field(default_factory=dict)  # lower-cased alias -> target
    ssh_hosts: list[str] = field(default_factory=list)
    ssh_config: Path | None = None
    ssh_options: list[str] = field(default_factory=list)
    source: Path | None = None


def config_path(cwd: Path | None = None) -> Path | None:
    """The file in use: $MBDEPLOY_CONFIG, ./mbdeploy.toml, then the user's config; None if none exists."""
    if os.environ.get("MBDEPLOY_CONFIG"):
        return Path(os.environ["MBDEPLOY_CONFIG"]).expanduser()
    local = Path(cwd or Path.cwd()) / PROJECT_CONFIG
    if local.is_file():
        return local
    user = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "mbdeploy" / "config.toml"
    return user if user.is_file() else None


def _strings(value: object, where: str, path: Path) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput(f"{path}: {where} must be a list of strings")
    return list(value)


def load_config(cwd: Path | None = None) -> DeviceConfig:
    path = config_path(cwd)
    if path is None:
        return DeviceConfig()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInput(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"config file {path} is not valid TOML: {exc}") from None
    aliases = data.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise InvalidInput(f"{path}: [aliases] must map names to strings, e.g. pi = \"ssh://pi@10.0.0.5\"")
    ssh = data.get("ssh", {})
    if not isinstance(ssh, dict):
        raise InvalidInput(f"{path}: [ssh] must be a table with hosts, config, options")
    unknown = set(ssh) - {"hosts", "config", "options"}
    if unknown:
        raise InvalidInput(f"{path}: unknown [ssh] key(s) {sorted(unknown)}; allowed: hosts, config, options")
    ssh_config = ssh.get("config")
    if ssh_config is not None and not isinstance(ssh_config, str):
        raise InvalidInput(f"{path}: [ssh] config must be a path string")
    if ssh_config:
        ssh_config_path = Path(ssh_config).expanduser()
        if not ssh_config_path.is_absolute():
            ssh_config_path = path.parent / ssh_config_path
    else:
        ssh_config_path = None
    return DeviceConfig(
        aliases={name.lower(): target for name, target in aliases.items()},
        ssh_hosts=_strings(ssh.get("hosts", []), "[ssh] hosts", path),
        ssh_config=ssh_config_path,
        ssh_options=_strings(ssh.get("options", []), "[ssh] options", path),
        source=path,
    )
