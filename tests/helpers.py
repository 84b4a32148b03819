"""Helpers for tests that run the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None):
    """Run the real `mbdeploy` entry point in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "mbdeploy", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )
