"""Devices: one interface (`Device`), several kinds behind it."""
