"""Watching real processes in tests: wait for one to appear, learn from the kernel when one ends, and
kill whatever a test started, pass or fail (no test leaves a process running)."""

from __future__ import annotations

import os
import select
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import pytest


def wait_for(predicate, timeout: float, what: str):  # noqa: ANN001, ANN201
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def processes_mentioning(*words: str) -> list[int]:
    """Pids whose command line contains every word (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(word in cmdline for word in words):
            found.append(int(entry.name))
    return found


def exits_within(pid: int, timeout: float) -> bool:
    """Whether process `pid` ends within `timeout` s, told by the kernel through a pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


@contextmanager
def killed_afterwards(*words: str):
    """Whatever runs mentioning `words` when the block ends is SIGKILLed: no test leaves a process behind."""
    try:
        yield
    finally:
        for pid in processes_mentioning(*words):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
