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


def runners_under(folder: Path | str) -> list[int]:
    """Pids of litert runner scripts (a Python whose script is `litert_runner.py`) working under `folder`.

    Matched on the program and its script, not on text anywhere in the command line, so an ssh
    client or a shell that merely mentions the script is never taken for the runner.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [word.decode(errors="replace") for word in argv]
        if (len(words) > 2 and "python" in Path(words[0]).name and words[1].endswith("litert_runner.py")
                and any(str(folder) in word for word in words[2:])):
            found.append(int(entry.name))
    return found
