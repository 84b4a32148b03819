"""User configuration for devices: aliases and ssh hosts.

Two files are read, the user's own and the project's:

- `~/.config/mbdeploy/config.toml` (`$XDG_CONFIG_HOME`; or `$MBDEPLOY_CONFIG`
  when set): trusted, it is the user's own;
- `./mbdeploy.toml` in the current folder: it may come with a cloned
  repository, so its `[ssh] options` and `config` (which make ssh run
  commands: ProxyCommand and the like) are ignored, with a warning, unless
  the user opts in with `--trust-project-ssh`; even then an option or ssh
  config line that runs a command or loads code on this host is refused.

    [aliases]
    pi = "ssh://pi@10.0.0.5"             # any --device value: ssh URL, id or model
    pixel = "emulator-5554"

    [ssh]
    hosts = ["ssh://pi@10.0.0.5?python=/home/pi/venv/bin/python"]   # listed by `mbdeploy devices`
    config = "~/.ssh/config-boards"      # optional: passed to ssh -F
    options = ["-o", "Compression=no"]   # optional: extra ssh options

Aliases and hosts of both files are used (the user's alias wins a clash).
"""

from __future__ import annotations

import os
import re
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from mbdeploy.errors import InvalidInput

PROJECT_CONFIG = "mbdeploy.toml"
TRUST_FLAG = "--trust-project-ssh"

# ssh_config keywords that run a command or load code on this host (ssh_config(5)); `Include`
# pulls in another file that could hold them. Refused from a project file even after opting in.
COMMAND_KEYWORDS = frozenset({"proxycommand", "localcommand", "permitlocalcommand", "knownhostscommand",
                              "pkcs11provider", "securitykeyprovider", "include"})
# What a project file may pass besides `-o Key=Value`: flags without an argument that change nothing outside.
PROJECT_FLAGS = frozenset({"-4", "-6", "-C", "-q", "-v"})


@dataclass
class DeviceConfig:
    aliases: dict[str, str] = field(default_factory=dict)  # lower-cased alias -> target
    ssh_hosts: list[str] = field(default_factory=list)
    ssh_config: Path | None = None
    ssh_options: list[str] = field(default_factory=list)
    source: Path | None = None


def user_config_path() -> Path | None:
    """The user's own file: $MBDEPLOY_CONFIG, else ~/.config/mbdeploy/config.toml; None if none exists."""
    if os.environ.get("MBDEPLOY_CONFIG"):
        return Path(os.environ["MBDEPLOY_CONFIG"]).expanduser()
    user = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "mbdeploy" / "config.toml"
    return user if user.is_file() else None


def project_config_path(cwd: Path | None = None) -> Path | None:
    local = Path(cwd or Path.cwd()) / PROJECT_CONFIG
    return local if local.is_file() else None


def _strings(value: object, where: str, path: Path) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput(f"{path}: {where} must be a list of strings")
    return list(value)


def _read(path: Path) -> dict:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInput(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
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
    ssh_config_path = None
    if ssh_config:
        ssh_config_path = Path(ssh_config).expanduser()
        if not ssh_config_path.is_absolute():
            ssh_config_path = path.parent / ssh_config_path
    return {"aliases": {name.lower(): target for name, target in aliases.items()},
            "hosts": _strings(ssh.get("hosts", []), "[ssh] hosts", path),
            "config": ssh_config_path, "options": _strings(ssh.get("options", []), "[ssh] options", path)}


def _keyword(text: str) -> str:
    """The keyword of `Key=Value`, `Key Value` or `Key = Value`, lower-cased as ssh compares it."""
    return re.split(r"[\s=]", text.strip(), maxsplit=1)[0].lower()


def check_project_options(options: list[str], where: Path) -> None:
    """A project file's ssh options: `-o Key=Value` pairs (or `-oKey=Value`) and a few plain flags, no command."""
    allowed = f"allowed: -o Key=Value (not {', '.join(sorted(COMMAND_KEYWORDS))}, Match exec), {', '.join(sorted(PROJECT_FLAGS))}"
    items = iter(options)
    for item in items:
        if item == "-o":
            value = next(items, None)
            if value is None:
                raise InvalidInput(f"{where}: [ssh] options ends with -o and no value; {allowed}")
        elif item.startswith("-o"):
            value = item[2:]
        elif item in PROJECT_FLAGS:
            continue
        else:
            raise InvalidInput(f"{where}: [ssh] option {item!r} is refused from a project file; {allowed}")
        keyword = _keyword(value)
        if keyword in COMMAND_KEYWORDS or keyword == "match":
            raise InvalidInput(f"{where}: [ssh] option {value!r} runs a command on this host and is refused from "
                               f"a project file (put it in your own {user_config_hint()} if you mean it); {allowed}")


def check_project_ssh_config(config: Path, where: Path) -> None:
    """An ssh config file a project names: no line that runs a command or loads code on this host."""
    try:
        lines = config.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise InvalidInput(f"{where}: [ssh] config {config} is unreadable: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, 1):
        keyword = _keyword(line)
        execs = keyword == "match" and re.search(r"(^|[\s=,])!?exec(\s|=|$)", line.strip()[5:], re.IGNORECASE)
        if keyword in COMMAND_KEYWORDS or execs:
            raise InvalidInput(f"{config}:{number}: {line.strip()!r} runs a command on this host; an ssh config "
                               f"named by a project file ({where}) may not (put it in your own ~/.ssh/config)")


def user_config_hint() -> str:
    return "$MBDEPLOY_CONFIG" if os.environ.get("MBDEPLOY_CONFIG") else "~/.config/mbdeploy/config.toml"


def load_config(cwd: Path | None = None, trust_project_ssh: bool = False) -> DeviceConfig:
    """The user's config and the project's, merged; the project's ssh options only when trusted (and safe)."""
    user_path, project_path = user_config_path(), project_config_path(cwd)
    if project_path is not None and user_path is not None and project_path.resolve() == user_path.resolve():
        project_path = None  # $MBDEPLOY_CONFIG names the project file: the user chose it
    user = _read(user_path) if user_path else None
    project = _read(project_path) if project_path else None
    config = DeviceConfig(source=user_path or project_path)
    for part in (project, user):  # the user's own aliases win
        if part:
            config.aliases.update(part["aliases"])
            config.ssh_hosts += [host for host in part["hosts"] if host not in config.ssh_hosts]
    if project and (project["options"] or project["config"]):
        if trust_project_ssh:
            check_project_options(project["options"], project_path)
            if project["config"] is not None:
                check_project_ssh_config(project["config"], project_path)
            config.ssh_options += project["options"]
            config.ssh_config = project["config"]
        else:
            warnings.warn(f"{project_path}: [ssh] options and config from a project file are ignored (they can make "
                          f"ssh run commands); put them in {user_config_hint()}, or pass {TRUST_FLAG} to use them",
                          UserWarning, stacklevel=2)
    if user:
        config.ssh_options += user["options"]
        config.ssh_config = user["config"] or config.ssh_config
    return config
