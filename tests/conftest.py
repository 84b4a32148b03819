"""Registers the shared fixtures; they and every test helper live in tests/support/."""

from support.fixtures import (no_adb_server_left_on_the_default_port, phone, reference_dir,  # noqa: F401
                              server, small_models)
