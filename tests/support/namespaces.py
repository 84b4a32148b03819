"""A real tmpfs or read-only mount for one command, in a user and mount namespace (`unshare -rm`).

Lets tests fill a disk or make a folder read-only for real, even as root (who ignores permission bits),
without touching the machine's mounts.
"""

from __future__ import annotations

import functools
import shutil
import subprocess


@functools.lru_cache(maxsize=1)
def namespaces_unavailable_reason() -> str | None:
    """None when `unshare -rm` can mount a tmpfs here; else why not (for pytest.skip)."""
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=8k tmpfs /tmp 2>&1"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot mount a tmpfs in a user namespace: {probe.stdout.strip()}"
