"""The one device interface. Benchmark code never asks which kind it has.

Kinds: `local` (this host), `ssh` (a Linux board), `android` (adb), `ios`.
Every shell command is given as an argv list and quoted by the device, so a
file name with spaces, quotes or `;` can never run anything extra.
"""

from __future__ import annotations

import abc
import posixpath
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mbdeploy.devices.lock import DeviceLock
    from mbdeploy.devices.power import PowerMeter


@dataclass
class ShellResult:
    exit_code: int
    stdout: str
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class DeviceInfo:
    """What `mbdeploy devices` lists and what each record carries."""

    kind: str
    id: str
    model: str | None = None
    soc: str | None = None
    abi: str | None = None
    os: str | None = None
    cores: int | None = None
    governor: str | None = None
    temperature_c: float | None = None
    state: str = "online"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SensorReading:
    """One snapshot of the device's sensors; empty dicts where none exist."""

    temperatures_c: dict[str, float] = field(default_factory=dict)
    cpu_freq_khz: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def quote_argv(argv: list[str]) -> str:
    """One POSIX shell command line from an argv list, every word quoted."""
    return " ".join(shlex.quote(str(word)) for word in argv)


def device_name_key(text: str) -> str:
    """A `--device` name or a device's own name, compared loosely: case, spaces, `_` and `-` do not count."""
    return re.sub(r"[\s_\-]+", "_", text.strip().lower())


class Device(abc.ABC):
    """push, pull, shell, properties, sensors; plus a work folder on the device.

    Every capability the sweep uses is declared here with a default, so no
    caller ever probes a device for an attribute.
    """

    kind: str = "abstract"
    # The runner and formats a bench uses on this kind when the user names none.
    default_runner: str = "litert"
    default_formats: tuple[str, ...] = ("tflite",)
    # The interpreter device-side Python scripts run with (Linux kinds).
    python: str = "python3"
    # --keep: leave the device work folder in place after the run.
    keep: bool = False
    # The bench's lock on this device while a sweep holds it; work started on the device may hold it too.
    lock: "DeviceLock | None" = None

    @property
    def lock_key(self) -> str:
        """What the per-device lock is named after: one name per physical device, however it was spelled."""
        return self.id

    @property
    def settings_applied(self) -> list[str]:
        """Device settings a bench changed to steady the clocks (e.g. Android's fixed performance mode)."""
        return []

    @property
    def no_power_reason(self) -> str:
        """Why a record of this device has no power figure when `power_meter()` gives no meter."""
        return f"{self.kind} devices have no power sensor reader"

    def bounded(self, argv: list[str], seconds: float, name: str) -> list[str]:
        """`argv` as the device runs it under a deadline of its own (the device ends it, whatever the host does).

        The default runs it as is: on this host and on ssh boards the command's process group already
        dies with the bench or its session (mbdeploy/lifeline.py, the board's watcher). A phone keeps
        what a dead host started, so Android wraps it (devices/leftovers.py).
        """
        return argv

    def power_meter(self, allow_charging: bool = False) -> "PowerMeter | None":
        """The meter that reads this device's power around a timed run; None when it has no sensor reader."""
        return None

    def matches(self, name: str) -> bool:
        """Whether a loose `--device` name (model, alias, family) means this device; ids are matched elsewhere."""
        return False

    @property
    @abc.abstractmethod
    def id(self) -> str: ...

    @abc.abstractmethod
    def info(self) -> DeviceInfo: ...

    @abc.abstractmethod
    def push(self, local: Path, remote: str) -> None:
        """Copy a file to the device and check it arrived whole (size or hash)."""

    @abc.abstractmethod
    def pull(self, remote: str, local: Path) -> None: ...

    @abc.abstractmethod
    def shell(self, argv: list[str], timeout: float | None = None) -> ShellResult:
        """Run argv on the device; each word is quoted, never interpreted."""

    @abc.abstractmethod
    def properties(self) -> dict[str, str]: ...

    @abc.abstractmethod
    def sensors(self) -> SensorReading: ...

    @property
    @abc.abstractmethod
    def workdir(self) -> str:
        """The device folder mbdeploy works under."""

    def begin_run(self, run_id: str) -> None:
        """Called by a bench once it holds this device's lock, before any work on it for run `run_id`."""

    def end_run(self) -> None:
        """Called when the bench is done with the device: remove what the run put there, unless --keep."""
        if self.keep:
            return
        try:
            self.shell(["rm", "-rf", "--", posixpath.join(self.workdir, "models")], timeout=60)
        except Exception:  # noqa: BLE001 - best effort: the records matter more
            pass

    def close(self) -> None:
        """Release connections; the default has none."""
