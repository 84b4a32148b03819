"""Registers the shared fixtures; they and every test helper live in tests/support/."""

from support.fixtures import (no_adb_server_left_on_the_default_port, no_default_adb_server,  # noqa: F401
                              phone, reference_dir, server, small_models)
