"""The per-device lock: two benches never time one device at once."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time
from pathlib import Path
from typing import Callable

from mbdeploy.cache import cache_root
from mbdeploy.errors import ResultsError


def lock_dir() -> Path:
    if os.environ.get("MBDEPLOY_LOCK_DIR"):
        return Path(os.environ["MBDEPLOY_LOCK_DIR"])
    return cache_root() / "locks"


class DeviceLock:
    """An exclusive fcntl lock per device, so two benches never time one device at once.

    The kernel drops the lock when the process dies, so a killed bench never
    leaves a stale lock behind.
    """

    def __init__(self, key: str, wait: bool = True, on_wait: Callable[[str], None] | None = None,
                 directory: Path | None = None, name: str | None = None) -> None:
        # `key` names the physical device (Device.lock_key); `name` is how messages call it (its id).
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_") or "device"
        self.device_id = name or key
        self.path = Path(directory or lock_dir()) / f"{safe}.lock"
        self.wait = wait
        self.on_wait = on_wait
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ResultsError(f"cannot create the device lock {self.path}: {exc.strerror or exc}; point "
                               "XDG_CACHE_HOME (or MBDEPLOY_LOCK_DIR) at a writable folder",
                               device=self.device_id) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            if not self.wait:
                os.close(fd)
                raise ResultsError(f"device {self.device_id} is busy: a bench ({holder}) holds {self.path}; "
                                   "wait for it or run without --no-wait", device=self.device_id) from None
            if self.on_wait:
                self.on_wait(f"device {self.device_id} is busy ({holder}); waiting for its lock")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}".encode(), 0)
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def fileno(self) -> int:
        """The locked descriptor: a child that inherits it keeps the device locked while it lives."""
        if self._fd is None:
            raise ValueError("the lock is not held")
        return self._fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "DeviceLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
