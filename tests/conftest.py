"""Registers the shared fixtures; they and every test helper live in tests/support/."""

from support.fixtures import phone, reference_dir, server, small_models  # noqa: F401
