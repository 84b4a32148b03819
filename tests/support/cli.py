"""Running the real `mbdeploy` command line in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.paths import ROOT

PYTHON = sys.executable


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None):
    """Run the real `mbdeploy` entry point in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "mbdeploy", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )


def harness_env(tmp_path: Path) -> dict:
    """Environment for a CLI subprocess: its own cache (device work folder, locks), no user config."""
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env.pop("MBDEPLOY_CONFIG", None)
    env.pop("MBDEPLOY_LOCK_DIR", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def mbdeploy(args: list[str], cwd: Path, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run `mbdeploy args` in cwd with env (from harness_env); the caller checks the exit code."""
    return subprocess.run([PYTHON, "-m", "mbdeploy", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
