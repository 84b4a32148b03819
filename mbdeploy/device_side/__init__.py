"""Scripts that run on the device itself (copied there by a runner)."""
