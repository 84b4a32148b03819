"""Runners: what times a model on a device (LiteRT in Python, benchmark_model, apps)."""
