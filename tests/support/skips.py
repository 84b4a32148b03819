"""Skips for tools a test needs that this machine may not have."""

from __future__ import annotations

import shutil

import pytest

NO_ADB = "the adb server is not installed (apt-get install adb)"

needs_adb = pytest.mark.skipif(shutil.which("adb") is None, reason=NO_ADB)
