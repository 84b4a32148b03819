"""Weights for `keras.applications.MobileNet` (1000 classes, no background).

Keras names the layers `conv1`, `conv_dw_{i}`, `conv_pw_{i}` (each with a
`_bn` batch norm that, unlike Slim's, has a gamma) and `conv_preds`. Whole
`.keras` models are opened in safe mode (no arbitrary code runs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mbdeploy.architecture import ModelSpec, layer_plan
from mbdeploy.atomic import sha256_file
from mbdeploy.errors import WeightsError
from mbdeploy.weights import ModelWeights, check_shapes, fold_batch_norm

KERAS_BATCH_NORM_EPSILON = 0.001
KERAS_CLASSES = 1000


def keras_layer_name(layer_name: str) -> str:
    """Slim name -> keras.applications.MobileNet name."""
    if layer_name == "Conv2d_0":
        return "conv1"
    if layer_name == "Logits":
        return "conv_preds"
    index, kind = layer_name.split("_")[1:3]
    return f"conv_dw_{index}" if kind == "depthwise" else f"conv_pw_{index}"


def load_keras_weights(path: Path, alpha: float) -> ModelWeights:
    model = _open(path, alpha)
    try:
        classes = int(model.get_layer("conv_preds").get_weights()[0].shape[-1])
    except ValueError:
        raise WeightsError(f"{path.name}: no layer conv_preds (not a keras.applications.MobileNet?)") from None
    spec = ModelSpec(alpha, 224, classes)
    layers = {}
    for layer in layer_plan(spec):
        keras_name = keras_layer_name(layer.name)
        try:
            params = model.get_layer(keras_name).get_weights()
        except ValueError:
            raise WeightsError(f"{path.name}: no layer {keras_name} (for {layer.name})") from None
        kernel = np.asarray(params[0], dtype=np.float32)
        if tuple(kernel.shape) != layer.kernel_shape:
            raise WeightsError(
                f"{path.name}: {keras_name} kernel has shape {tuple(kernel.shape)}, expected "
                f"{layer.kernel_shape} for alpha {alpha:g}"
            )
        if layer.kind == "logits":
            layers[layer.name] = (kernel, np.asarray(params[1], dtype=np.float32))
            continue
        gamma, beta, mean, variance = (np.asarray(p, np.float32) for p in model.get_layer(f"{keras_name}_bn").get_weights())
        layers[layer.name] = fold_batch_norm(
            kernel, beta, mean, variance, gamma, KERAS_BATCH_NORM_EPSILON, depthwise=layer.kind == "depthwise"
        )
    weights = ModelWeights(layers, "keras", sha256_file(path), trained=True, classes=classes,
                           details={"file": path.name})
    check_shapes(weights, spec, path.name)
    return weights


def _open(path: Path, alpha: float):
    from mbdeploy.tf_runtime import import_tensorflow

    import_tensorflow()
    import keras

    try:
        if path.name.endswith(".keras"):
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        # Weight files carry no architecture: build the application and load into it.
        model = keras.applications.MobileNet(
            input_shape=(224, 224, 3), alpha=alpha, weights=None, classes=KERAS_CLASSES
        )
        model.load_weights(path)
        return model
    except Exception as exc:  # Keras/h5py raise many types for a bad or mismatched file
        text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise WeightsError(
            f"{path.name} could not be loaded as keras.applications.MobileNet weights for alpha "
            f"{alpha:g} (weights of another width multiplier?): {text[:300] or type(exc).__name__}"
        ) from None
