"""Small TFLite files converted with TensorFlow, for tests that need a real model but not MobileNet."""

from __future__ import annotations

import functools
from pathlib import Path


@functools.lru_cache(maxsize=None)
def _tiny_tflite_bytes(channels: int, size: int) -> bytes:
    """A small float conv net converted with TensorFlow (a different width gives a different file)."""
    import tensorflow as tf

    tf.random.set_seed(channels)
    model = tf.keras.Sequential([
        tf.keras.Input((size, size, 3)),
        tf.keras.layers.Conv2D(channels, 3, strides=2, activation="relu"),
        tf.keras.layers.DepthwiseConv2D(3, activation="relu"),
        tf.keras.layers.Conv2D(channels * 2, 1, activation="relu"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(10),
    ])
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def tiny_tflite(path: Path, channels: int = 8, size: int = 64) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_tiny_tflite_bytes(channels, size))
    return path
