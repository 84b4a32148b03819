"""Import TensorFlow quietly: its C++ and absl start-up chatter is not our output."""

from __future__ import annotations

import os
from contextlib import contextmanager


VERBOSE_ENV = "MBDEPLOY_VERBOSE"  # set by `mbdeploy --verbose`: library logs are shown


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def require_tensorflow() -> None:
    """Converting needs TensorFlow, an extra: say which one when it is missing (without importing it)."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        from mbdeploy.errors import MissingDependency

        raise MissingDependency("tensorflow", "convert")


def import_tensorflow():
    import logging
    import sys

    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        require_tensorflow()
        # absl prints "All log messages before absl::InitializeLog()..." and oneDNN's notice
        # (twice: two copies of absl load) whatever TF_CPP_MIN_LOG_LEVEL says.
        with native_output_silenced():
            import tensorflow  # noqa: F401
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    return tf


@contextmanager
def native_output_silenced():
    """Hide what TensorFlow/LiteRT C++ code prints straight to fds 1 and 2.

    Their banners ("Created TensorFlow Lite XNNPACK delegate", quantizer
    settings) are not our output; failures still surface as exceptions.
    `mbdeploy --verbose` lets them through.
    """
    import sys

    if verbose():
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
