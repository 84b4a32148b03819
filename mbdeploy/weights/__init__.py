"""Trained (or seeded random) weights for one member of the family.

Every loader returns `ModelWeights`: per Slim layer name, a kernel in
TensorFlow's HWIO layout (HW1C... see `Layer.kernel_shape`) and a bias, with
batch norm already folded in. Deployed models fold batch norm anyway, and one
representation lets every exporter share one weight path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mbdeploy.architecture import ModelSpec, layer_plan
from mbdeploy.errors import InvalidInput, WeightsError

# (source name, what the user passes)
SOURCES = {
    "random": "nothing: seeded random weights (latency and power only)",
    "slim-checkpoint": "a TF-Slim checkpoint: the release .tgz/.tar.gz or the .ckpt prefix",
    "keras": "keras.applications.MobileNet weights: .keras, .weights.h5 or .h5",
    "tflite": "an existing MobileNet v1 .tflite (float or quantized)",
}


@dataclass
class ModelWeights:
    layers: dict[str, tuple[np.ndarray, np.ndarray]]  # layer name -> (kernel HWIO, bias)
    source: str
    sha256: str
    trained: bool
    classes: int
    details: dict = field(default_factory=dict)

    def manifest_entry(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "trained": self.trained,
                "classes": self.classes, **self.details}


def source_of(path: Path | None) -> str:
    if path is None:
        return "random"
    name = Path(path).name.lower()
    if name.endswith((".tgz", ".tar.gz")) or ".ckpt" in name:
        return "slim-checkpoint"
    if name.endswith((".keras", ".h5")):
        return "keras"
    if name.endswith(".tflite"):
        return "tflite"
    allowed = "; ".join(f"{desc}" for desc in SOURCES.values())
    raise InvalidInput(f"cannot tell what kind of weights {path} holds; allowed: {allowed}")


def load_weights(path: Path | None, alpha: float, seed: int = 0) -> ModelWeights:
    """Load weights for width `alpha`; the class count comes from the weights."""
    source = source_of(path)
    if source == "random":
        from mbdeploy.weights.random_init import random_weights

        return random_weights(alpha, seed=seed)
    path = Path(path)
    if source == "slim-checkpoint":
        from mbdeploy.weights.slim import load_slim_checkpoint

        return load_slim_checkpoint(path, alpha)
    if not path.exists():
        raise WeightsError(f"weights file {path} does not exist")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file {path} is empty")
    if source == "keras":
        from mbdeploy.weights.keras_app import load_keras_weights

        return load_keras_weights(path, alpha)
    from mbdeploy.weights.tflite_import import load_tflite_weights

    return load_tflite_weights(path, alpha)


def expected_shapes(spec: ModelSpec) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    return {l.name: (l.kernel_shape, (l.out_channels,)) for l in layer_plan(spec)}


def check_shapes(weights: ModelWeights, spec: ModelSpec, origin: str) -> None:
    """Every layer present with the plan's shape, or one clear error naming it."""
    for name, (kernel_shape, bias_shape) in expected_shapes(spec).items():
        if name not in weights.layers:
            raise WeightsError(f"{origin}: no weights for layer {name}")
        kernel, bias = weights.layers[name]
        if tuple(kernel.shape) != kernel_shape:
            raise WeightsError(
                f"{origin}: {name} kernel has shape {tuple(kernel.shape)}, expected {kernel_shape} "
                f"for alpha {spec.alpha:g} (weights for another width multiplier?)"
            )
        if tuple(bias.shape) != bias_shape:
            raise WeightsError(f"{origin}: {name} bias has shape {tuple(bias.shape)}, expected {bias_shape}")


def fold_batch_norm(
    kernel: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    variance: np.ndarray,
    gamma: np.ndarray | None,
    epsilon: float,
    depthwise: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Fold y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta into the conv."""
    scale = (1.0 if gamma is None else gamma) / np.sqrt(variance + epsilon)
    # Output channels are the last axis, except depthwise where they are the input axis.
    folded = kernel * (scale[None, None, :, None] if depthwise else scale[None, None, None, :])
    return folded.astype(np.float32), (beta - mean * scale).astype(np.float32)
