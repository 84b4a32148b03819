"""Hosted phones on Qualcomm AI Hub, reached through the pinned `qai-hub` client.

A hosted phone has no shell: "pushing" a model uploads it (once per sha256
and hub; a re-run reuses the uploaded model), and the `aihub` runner submits
one profiling job per model and reads the profile back. The client keeps the
credentials in its own configuration (`~/.qai_hub/client.ini`, or the file
`QAIHUB_CLIENT_INI` names); mbdeploy never reads, stores or prints the token.

    --device 'aihub:Samsung Galaxy S24'                        a device by its hub name
    --device 'aihub:chipset:qualcomm-snapdragon-8-elite'       any device with that attribute

Hosted devices join a bench only when named: `--device all` means the
devices on the user's desk.
"""

from __future__ import annotations

import configparser
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from mbdeploy.atomic import write_json
from mbdeploy.devices.base import Device, DeviceInfo, SensorReading, ShellResult
from mbdeploy.errors import DeviceError, InvalidInput, MissingDependency

PREFIX = "aihub:"
PROVIDER = "Qualcomm AI Hub"
DEVICE_LIST_MAX_AGE_S = 24 * 3600
CONFIGURE_HINT = ("configure the qai-hub client with `qai-hub configure --api_token TOKEN` "
                  "(it writes ~/.qai_hub/client.ini), or point QAIHUB_CLIENT_INI at such a file")


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mbdeploy" / "aihub"


def _client():
    """The qai-hub client, configured from its own files; one `Error:` line when it cannot be."""
    try:
        from qai_hub.client import Client, UserError
    except ImportError:
        raise MissingDependency("qai_hub", "aihub") from None
    client = Client()
    try:
        config = client.config
    except (UserError, configparser.Error) as exc:  # configparser: a client.ini that is not an INI file
        raise DeviceError(f"AI Hub is not configured ({_first_line(exc)}); {CONFIGURE_HINT}") from None
    client.set_verbose(False)  # mbdeploy draws its own progress
    return client, config


def _first_line(exc: BaseException) -> str:
    lines = [line.strip(" |-") for line in str(exc).splitlines() if line.strip(" |-")]
    return lines[0] if lines else type(exc).__name__


def hub_error(exc: BaseException, doing: str) -> DeviceError:
    """A client exception as one line; an authentication failure says how to configure the token."""
    from qai_hub.client import UserError

    text = _first_line(exc)
    if isinstance(exc, UserError) and "authenticate" in str(exc):
        return DeviceError(f"AI Hub rejected the API token while {doing}; {CONFIGURE_HINT}")
    return DeviceError(f"AI Hub failed while {doing}: {text}")


@dataclass(frozen=True)
class HostedDevice:
    """One device the hub offers, as its device list says."""

    name: str
    os: str
    attributes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def chipset(self) -> str | None:
        return next((a.split(":", 1)[1] for a in self.attributes if a.startswith("chipset:")), None)

    def to_dict(self) -> dict:
        return {"name": self.name, "os": self.os, "chipset": self.chipset, "attributes": list(self.attributes)}


def hosted_devices(refresh: bool = False) -> list[HostedDevice]:
    """The hub's device list, cached for a day per hub address (`--refresh` asks again)."""
    client, config = _client()
    cache = _cache_dir() / "devices.json"
    try:
        saved = json.loads(cache.read_text())
    except (OSError, ValueError):
        saved = {}
    entry = saved.get(config.api_url) if isinstance(saved, dict) else None
    if not refresh and isinstance(entry, dict) and time.time() - entry.get("fetched", 0) < DEVICE_LIST_MAX_AGE_S:
        return [HostedDevice(d["name"], d["os"], tuple(d["attributes"])) for d in entry["devices"]]
    try:
        found = [HostedDevice(d.name, d.os, tuple(d.attributes)) for d in client.get_devices()]
    except Exception as exc:  # noqa: BLE001 - the client raises several kinds; each becomes one line
        raise hub_error(exc, "listing its devices") from None
    saved = saved if isinstance(saved, dict) else {}
    saved[config.api_url] = {"fetched": time.time(), "devices": [d.to_dict() for d in found]}
    try:
        write_json(cache, saved)
    except OSError:
        pass  # a cache that cannot be written costs one request next time, nothing more
    return found


def parse_target(name: str) -> dict:
    """`aihub:NAME` or `aihub:chipset:CHIPSET` (any `key:value` attribute) as the client's Device fields."""
    rest = name[len(PREFIX):].strip() if name.lower().startswith(PREFIX) else ""
    if not rest:
        raise InvalidInput(f"{name!r} names no hosted device; use aihub:DEVICE NAME or aihub:chipset:CHIPSET "
                           "(see `mbdeploy devices --hosted`)")
    key, _, value = rest.partition(":")
    if value and key.lower() in ("chipset", "os", "vendor", "framework", "format"):
        return {"name": "", "attributes": f"{key.lower()}:{value.strip()}"}
    return {"name": rest, "attributes": []}


class AihubDevice(Device):
    """A hosted phone; the `aihub` runner times models on it through profiling jobs."""

    kind = "aihub"
    default_runner = "aihub"

    def __init__(self, target: str) -> None:
        self._target = parse_target(target)
        self._id = PREFIX + rest_of(target)
        self._client = None
        self._hosted: HostedDevice | None = None
        self._models: dict[str, object] = {}  # remote path -> the hub's Model

    @property
    def id(self) -> str:
        return self._id

    @property
    def workdir(self) -> str:
        return "aihub"

    @property
    def no_power_reason(self) -> str:
        return "a hosted phone: AI Hub reports no power or energy, and its load is not under our control"

    def client(self):
        if self._client is None:
            self._client, _ = _client()
        return self._client

    def hub_device(self):
        """The client's Device for this target (what a job is submitted to)."""
        from qai_hub.client import Device as HubDevice

        return HubDevice(name=self._target["name"], attributes=self._target["attributes"])

    def hosted(self) -> HostedDevice:
        """The hub's own description of the device a job on this target runs on."""
        if self._hosted is None:
            client = self.client()
            try:
                found = client.get_devices(name=self._target["name"], attributes=self._target["attributes"])
            except Exception as exc:  # noqa: BLE001
                raise hub_error(exc, f"looking up {self.id}") from None
            if not found:
                raise DeviceError(f"AI Hub offers no device matching {self.id}; see `mbdeploy devices --hosted`")
            self._hosted = HostedDevice(found[0].name, found[0].os, tuple(found[0].attributes))
        return self._hosted

    def info(self) -> DeviceInfo:
        hosted = self.hosted()
        return DeviceInfo(kind=self.kind, id=self.id, model=hosted.name, soc=hosted.chipset, abi=None,
                          os=f"{_os_family(hosted.attributes)} {hosted.os}".strip(),
                          extra={"source": "hosted", "provider": PROVIDER, "hub_device": hosted.to_dict()})

    # Transport: a push uploads the model once per content and hub.
    def push(self, local: Path, remote: str) -> None:
        from mbdeploy.manifest import artifact_digest

        local = Path(local)
        _, digest = artifact_digest(local)
        self._models[remote] = self._uploaded(local, digest)

    def _uploaded(self, local: Path, digest: str):
        client = self.client()
        index_file = _cache_dir() / "models.json"
        try:
            index = json.loads(index_file.read_text())
        except (OSError, ValueError):
            index = {}
        key = f"{client.config.api_url} {digest}"
        if isinstance(index, dict) and key in index:
            try:
                return client.get_model(index[key])  # uploaded by an earlier bench: reuse it
            except Exception:  # noqa: BLE001 - expired or deleted on the hub: upload again
                pass
        try:
            model = client.upload_model(str(local), name=local.name)
        except Exception as exc:  # noqa: BLE001
            raise hub_error(exc, f"uploading {local.name}") from None
        index = index if isinstance(index, dict) else {}
        index[key] = model.model_id
        try:
            write_json(index_file, index)
        except OSError:
            pass
        return model

    def uploaded_model(self, remote: str):
        if remote not in self._models:
            raise DeviceError(f"{remote} was not uploaded to AI Hub in this session; push it first")
        return self._models[remote]

    def pull(self, remote: str, local: Path) -> None:
        raise DeviceError("a hosted AI Hub device has no files to pull; results come back with its jobs")

    def shell(self, argv: list[str], timeout: float | None = None) -> ShellResult:
        raise DeviceError("a hosted AI Hub device has no shell; the aihub runner submits profiling jobs instead")

    def properties(self) -> dict[str, str]:
        hosted = self.hosted()
        return {"name": hosted.name, "os": hosted.os, "chipset": hosted.chipset or "",
                "attributes": ",".join(hosted.attributes)}

    def sensors(self) -> SensorReading:
        return SensorReading()  # a hosted phone's temperatures and clocks are not reported


def rest_of(target: str) -> str:
    return target[len(PREFIX):].strip()


def _os_family(attributes: tuple[str, ...]) -> str:
    found = next((a.split(":", 1)[1] for a in attributes if a.startswith("os:")), "")
    return {"android": "Android", "ios": "iOS", "windows": "Windows"}.get(found, found)
