"""The one cache folder: `$XDG_CACHE_HOME/mbdeploy` (default `~/.cache/mbdeploy`).

Downloaded tools, the per-device locks and the local device's work folder
live under it, each in its own subfolder.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Read at each call, so a test (or a user) can point XDG_CACHE_HOME elsewhere."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mbdeploy"
