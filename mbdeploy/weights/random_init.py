"""Seeded random weights: same seed, same bytes. For latency and power only.

Plain He-initialised weights fade through ReLU6 layers (activations shrink
to ~0.05 by the classifier, so every class gets ~1/1001 probability and
quantized exports cannot be checked meaningfully). Each layer is therefore
rescaled once, data-dependently, on a small synthetic batch so its
pre-activations have a working spread, as trained networks do. Scale factors
are rounded so tiny float differences between machines cannot change bytes.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mbdeploy import numpy_ops
from mbdeploy.architecture import DEFAULT_CLASSES, ModelSpec, layer_plan
from mbdeploy.weights import ModelWeights

SCALING_RESOLUTION = 64
PRE_ACTIVATION_STD = 2.0  # spreads values over ReLU6's 0..6 range
LOGIT_STD = 3.0  # a confident but not saturated softmax


def random_weights(alpha: float, seed: int = 0, classes: int = DEFAULT_CLASSES) -> ModelWeights:
    from mbdeploy.preprocessing import synthetic_images

    spec = ModelSpec(alpha, SCALING_RESOLUTION, classes)
    rng = np.random.default_rng(seed)
    x = synthetic_images(4, SCALING_RESOLUTION, seed=seed).astype(np.float64)
    layers = {}
    for layer in layer_plan(spec):
        fan_in = layer.kernel * layer.kernel * (1 if layer.kind == "depthwise" else layer.in_channels)
        kernel = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=layer.kernel_shape)
        bias = rng.normal(0.0, 0.1, size=(layer.out_channels,))
        if layer.kind == "logits":
            x = x.mean(axis=(1, 2), keepdims=True)
        op = numpy_ops.depthwise_conv2d if layer.kind == "depthwise" else numpy_ops.conv2d
        z = op(x, kernel, np.zeros_like(bias), layer.stride)
        target = LOGIT_STD if layer.kind == "logits" else PRE_ACTIVATION_STD
        scale = float(f"{target / (z.std() + 1e-12):.3g}")
        kernel, z = kernel * scale, z * scale
        if layer.kind != "logits":
            bias = bias + float(f"{0.5 - z.mean():.3g}")  # centre a little above zero: about half active
        layers[layer.name] = (kernel.astype(np.float32), bias.astype(np.float32))
        if layer.kind != "logits":
            x = numpy_ops.relu6(z + bias)
    return ModelWeights(layers, "random", random_identity(alpha, seed, classes), trained=False, classes=classes,
                        details={"seed": seed})


def random_identity(alpha: float, seed: int, classes: int = DEFAULT_CLASSES) -> str:
    """What stands for a file hash for random weights: the recipe, hashed."""
    return hashlib.sha256(f"random:v2:alpha={alpha!r}:seed={seed}:classes={classes}".encode()).hexdigest()
