"""`eval --device D`: top-1/top-5 computed by a device, through the probe mechanism of `bench --check-outputs`.

The host reads and preprocesses the images (the manifest's preprocessing, as
host eval does); a batch of them goes to the device as one float32 .npy, the
runner runs each through the artifact with the timed run's settings (threads,
delegate; an int8 input quantized with the tensor's own scale) and returns
the float outputs; the host ranks them. So a delegate, an NPU or a build of
the runtime that computes wrong answers shows as a lower top-1 than the
host's on the same images.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from mbdeploy.bench.artifacts import Artifact
from mbdeploy.bench.numerics import outputs_on_device
from mbdeploy.devices.base import Device
from mbdeploy.devices.lock import DeviceLock
from mbdeploy.errors import InvalidInput
from mbdeploy.evaluate import OnDevice
from mbdeploy.runners.base import Runner

if TYPE_CHECKING:
    import numpy as np

    from mbdeploy.evaluate import Dataset


class DeviceEval(OnDevice):
    """One device and runner for one eval: the device locked, the runner prepared, cleaned up on exit."""

    def __init__(self, device: Device, runner: Runner, run_id: str, batch: int = 32) -> None:
        self.device, self.runner, self.run_id, self.batch = device, runner, run_id, batch
        self.device_id = device.id
        options = runner.options
        self.runtime = (f"{runner.name} runner on {device.id} ({options.threads} thread(s), "
                        f"{'XNNPACK' if options.xnnpack else 'no XNNPACK'})")
        self._lock: DeviceLock | None = None

    def formats(self) -> tuple[str, ...]:
        return self.runner.formats

    def __enter__(self) -> "DeviceEval":
        reason = self.runner.cannot_run_inputs()
        if reason is not None:
            raise InvalidInput(f"eval --device {self.device.id}: {reason}")
        self._lock = DeviceLock(self.device.lock_key, name=self.device.id)
        self._lock.__enter__()
        self.device.lock = self._lock
        try:
            self.device.begin_run(self.run_id)
            self.runner.prepare(self.device)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.device.end_run()  # what eval put on the device goes, unless --keep
        finally:
            self.device.lock = None
            if self._lock is not None:
                self._lock.__exit__(None, None, None)
                self._lock = None

    def open(self, artifact: dict, path: Path) -> Callable[["np.ndarray"], list[list[float]]]:
        from mbdeploy.atomic import sha256_file

        digest = artifact.get("sha256") or sha256_file(path)
        item = Artifact(name=path.parent.name, format=artifact["format"], precision=str(artifact["precision"]),
                        path=path, sha256=digest, bytes=path.stat().st_size)
        remote = posixpath.join(self.device.workdir, "models", digest[:16], path.name)
        self.device.push(path, remote)
        return lambda xs: outputs_on_device(self.device, self.runner, item, remote, xs)


def evaluate_on_device(device_name: str, models: list[Path], dataset: "Dataset", formats: list[str] | None,
                       runner_name: str | None = None, threads: int = 1, xnnpack: bool = True, batch: int = 32,
                       adb_host: str | None = None, progress: Callable[[], None] | None = None,
                       runner_options: dict | None = None) -> list:
    """eval's results computed on the one device `device_name` names; InvalidInput for anything else."""
    import datetime
    import secrets

    from mbdeploy.devices.config import load_config
    from mbdeploy.devices.registry import resolve
    from mbdeploy.evaluate import evaluate
    from mbdeploy.runners.base import TimingOptions
    from mbdeploy.runners.registry import make_runner

    if threads < 1:
        raise InvalidInput(f"--threads must be 1 or more, got {threads}")
    if not 1 <= batch <= 1024:
        raise InvalidInput(f"--batch must be 1..1024 images per device call, got {batch}")
    devices = resolve(device_name, adb_host, load_config())
    try:
        if len(devices) != 1:
            found = ", ".join(d.id for d in devices) or "none"
            raise InvalidInput(f"--device {device_name} names {len(devices)} devices ({found}); eval runs on one")
        [device] = devices
        runner = make_runner(runner_name or device.default_runner, TimingOptions(threads=threads, xnnpack=xnnpack),
                             **(runner_options or {}))
        run_id = datetime.datetime.now(datetime.timezone.utc).strftime("eval-%Y%m%d-%H%M%S-") + secrets.token_hex(2)
        with DeviceEval(device, runner, run_id, batch) as on_device:
            return evaluate(models, dataset, formats, progress, on_device)
    finally:
        for device in devices:
            device.close()
