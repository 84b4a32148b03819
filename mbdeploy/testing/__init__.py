"""Stand-ins for hardware that cannot run here (a phone), used by tests and by users without one."""
