"""Find devices and resolve `--device NAME`.

Resolution, like adbutils': an `ssh://` URL is taken as given; otherwise the
name is matched case-insensitively against aliases from the config file,
then against every discovered device's id and model. `all` means every
online device. No match, or more than one, is a DeviceNotFound that lists
what was seen.
"""

from __future__ import annotations

import importlib
import warnings

from mbdeploy.devices.base import Device, DeviceInfo
from mbdeploy.devices.config import DeviceConfig, load_config
from mbdeploy.devices.local import LocalDevice
from mbdeploy.devices.ssh import SshDevice
from mbdeploy.errors import DeviceError, DeviceNotFound

# Kinds whose modules are imported only when devices are listed: module -> how to call its discover().
OPTIONAL_KINDS = ("mbdeploy.devices.android", "mbdeploy.devices.ios")


def _optional_discover(module_name: str, adb_host: str | None) -> list[Device]:
    module = importlib.import_module(module_name)
    try:
        if module_name.endswith("android"):
            return list(module.discover(adb_host))
        return list(module.discover())
    except DeviceError as exc:
        # No adb server or no usbmux must not hide the local device from the list.
        warnings.warn(f"{module_name.rsplit('.', 1)[-1]} devices skipped: {exc.message}", UserWarning, stacklevel=2)
        return []


def ssh_device(target: str, config: DeviceConfig) -> SshDevice:
    return SshDevice(target, ssh_config=config.ssh_config, ssh_options=config.ssh_options)


def discover(adb_host: str | None = None, config: DeviceConfig | None = None) -> list[Device]:
    """Every device we can name: this host, configured ssh hosts, then Android and iOS when available."""
    config = config or load_config()
    devices: list[Device] = [LocalDevice()]
    devices += [ssh_device(host, config) for host in config.ssh_hosts]
    for module_name in OPTIONAL_KINDS:
        devices += _optional_discover(module_name, adb_host)
    return devices


def describe(device: Device) -> DeviceInfo:
    """The device's info, or an `offline` entry with the reason when it cannot be reached."""
    try:
        return device.info()
    except DeviceError as exc:
        return DeviceInfo(kind=device.kind, id=device.id, state="offline", extra={"error": exc.message})


def resolve(name: str | None, adb_host: str | None = None, config: DeviceConfig | None = None) -> list[Device]:
    """The device(s) `--device NAME` means; `all` gives every online one.

    Without a name, as adbutils resolves: `$ANDROID_SERIAL`, else the only
    online phone (this host is always there, so it is never "the only one").
    """
    config = config or load_config()
    if not name:
        from mbdeploy.devices import android

        return [android.resolve(None, adb_host)]
    wanted = name.strip()
    seen: set[str] = set()
    # An alias may name another alias; follow the chain, but never in a loop.
    while wanted.lower() in config.aliases and wanted.lower() not in seen:
        seen.add(wanted.lower())
        wanted = config.aliases[wanted.lower()]
    if wanted.startswith("ssh://"):
        return [ssh_device(wanted, config)]
    if wanted.lower().startswith("aihub:"):
        # Hosted phones are named, never discovered: `all` means the devices on the user's desk.
        from mbdeploy.devices.aihub import AihubDevice

        return [AihubDevice(wanted)]

    key = wanted.lower()
    # An exact id among this host and configured boards needs no phone discovery (which may start adb).
    cheap: list[Device] = [LocalDevice()] + [ssh_device(host, config) for host in config.ssh_hosts]
    by_id = [device for device in cheap if device.id.lower() == key]
    if len(by_id) == 1:
        return by_id

    devices = discover(adb_host, config)
    infos = [(device, describe(device)) for device in devices]
    chosen = _match(name, key, infos, config)
    for device in devices:
        if device not in chosen:
            device.close()  # e.g. an ssh master opened only to read the model name
    return chosen


def resolve_id(name: str, known_ids: list[str], adb_host: str | None = None,
               config: DeviceConfig | None = None) -> str:
    """The id `--device NAME` means for commands that read records (select): an id seen in the
    records as is (the device need not be attached), else resolved as `bench` resolves it."""
    by_id = [known for known in known_ids if known.lower() == name.strip().lower()]
    if by_id:
        return by_id[0]
    if name.strip().lower() == "all":
        raise DeviceNotFound("choose one device, not all; devices in these runs: " + ", ".join(known_ids), name=name)
    devices = resolve(name, adb_host, config)
    try:
        if len(devices) != 1:
            raise DeviceNotFound(f"{name!r} names {len(devices)} devices; choose one", name=name)
        return devices[0].id
    finally:
        for device in devices:
            device.close()


def _match(name: str, key: str, infos: list[tuple[Device, DeviceInfo]], config: DeviceConfig) -> list[Device]:
    if key == "all":
        online = [device for device, info in infos if info.state == "online"]
        if not online:
            raise DeviceNotFound("no online device found")
        return online

    by_id = [device for device, info in infos if info.id.lower() == key]
    matches = by_id or [device for device, info in infos if (info.model or "").lower() == key]
    # Kinds with looser names (a phone answers to serial, model, device, product name, "pixel").
    matches = matches or [device for device, _ in infos if device.matches(name)]
    if len(matches) == 1:
        return matches
    candidates = ", ".join(
        [f"{info.id} ({info.model or info.kind}, {info.state})" for _, info in infos]
        + [f"alias {alias}" for alias in sorted(config.aliases)]
    )
    if not matches:
        raise DeviceNotFound(f"no device matches {name!r}; candidates: {candidates}; or use ssh://user@host[:port] or all",
                             name=name)
    raise DeviceNotFound(f"{name!r} matches {len(matches)} devices; use an id: "
                         + ", ".join(device.id for device in matches), name=name)
