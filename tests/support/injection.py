"""A file name that runs a command if a path reaches a shell unquoted, and the check that it did not."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

INJECTION_NAME = "a b; touch pwned 'x.tflite"


@contextmanager
def no_new_pwned(*folders: Path):
    """Assert that nothing named `pwned` appears in the folders while the block runs."""
    before = {folder: (folder / "pwned").exists() for folder in folders}
    yield
    for folder in folders:
        if not before[folder]:
            assert not (folder / "pwned").exists(), f"a file name was run as a command in {folder}"
