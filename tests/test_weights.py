"""Weight loaders: each source, folded, against an unfolded reference."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mbdeploy import numpy_ops
from mbdeploy.architecture import ModelSpec, layer_plan
from mbdeploy.errors import WeightsError
from mbdeploy.weights import load_weights
from mbdeploy.weights.slim import SLIM_BATCH_NORM_EPSILON, variable_names

ALPHA, RES = 0.25, 64


def slim_variables(alpha: float, seed: int = 1) -> dict[str, np.ndarray]:
    """A complete, random MobileNet v1 checkpoint's variables, Slim-named."""
    rng = np.random.default_rng(seed)
    variables = {}
    for layer in layer_plan(ModelSpec(alpha, 224)):
        names = variable_names(layer.name, layer.kind)
        fan_in = np.prod(layer.kernel_shape[:3]) if layer.kind != "depthwise" else 9
        variables[names["weights"]] = rng.normal(0, np.sqrt(2 / fan_in), layer.kernel_shape).astype(np.float32)
        if layer.kind == "logits":
            variables[names["weights"]] *= 20  # a peaked softmax, so differences show in probabilities
            variables[names["biases"]] = rng.normal(0, 0.1, layer.out_channels).astype(np.float32)
            continue
        variables[names["beta"]] = rng.normal(0, 0.2, layer.out_channels).astype(np.float32)
        variables[names["moving_mean"]] = rng.normal(0, 0.2, layer.out_channels).astype(np.float32)
        variables[names["moving_variance"]] = rng.uniform(0.5, 2.0, layer.out_channels).astype(np.float32)
    return variables


def save_checkpoint(prefix: Path, variables: dict[str, np.ndarray]) -> Path:
    """Write a TF (V2 format) checkpoint with exactly these variable names, as Slim's Saver did."""
    import tensorflow as tf

    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(variables[n]) for n in names])
    return prefix


def unfolded_forward(variables: dict[str, np.ndarray], alpha: float, x: np.ndarray, ema: bool = False) -> np.ndarray:
    """Slim's graph with batch norm applied explicitly, in numpy."""
    def get(name):
        shadow = f"{name}/ExponentialMovingAverage"
        return variables[shadow] if ema and shadow in variables else variables[name]

    for layer in layer_plan(ModelSpec(alpha, x.shape[1])):
        names = variable_names(layer.name, layer.kind)
        if layer.kind == "logits":
            x = x.mean(axis=(1, 2), keepdims=True)
            logits = numpy_ops.conv2d(x, get(names["weights"]), get(names["biases"]), 1)
            return numpy_ops.softmax(logits.reshape(len(x), -1))
        op = numpy_ops.depthwise_conv2d if layer.kind == "depthwise" else numpy_ops.conv2d
        z = op(x, get(names["weights"]), 0.0, layer.stride)
        z = (z - get(names["moving_mean"])) / np.sqrt(get(names["moving_variance"]) + SLIM_BATCH_NORM_EPSILON)
        x = numpy_ops.relu6(z + get(names["beta"]))
    raise AssertionError("unreachable")


def keras_probabilities(weights, alpha: float, x: np.ndarray) -> np.ndarray:
    from mbdeploy.keras_model import build_keras_model

    model = build_keras_model(ModelSpec(alpha, x.shape[1], weights.classes), weights)
    return np.asarray(model.predict(x, verbose=0))


@pytest.fixture(scope="module")
def probe() -> np.ndarray:
    from mbdeploy.preprocessing import synthetic_images

    return synthetic_images(2, RES, seed=3).astype(np.float64)


def test_random_weights_are_deterministic():
    a, b = load_weights(None, ALPHA, seed=7), load_weights(None, ALPHA, seed=7)
    c = load_weights(None, ALPHA, seed=8)
    assert a.sha256 == b.sha256 != c.sha256
    for name, (kernel, bias) in a.layers.items():
        assert kernel.tobytes() == b.layers[name][0].tobytes() and bias.tobytes() == b.layers[name][1].tobytes()
    assert not np.array_equal(a.layers["Conv2d_0"][0], c.layers["Conv2d_0"][0])
    assert a.trained is False and a.manifest_entry()["source"] == "random"


def test_slim_checkpoint_folds_batch_norm_exactly(tmp_path, probe):
    variables = slim_variables(ALPHA)
    prefix = save_checkpoint(tmp_path / "mobilenet_v1_0.25_128.ckpt", variables)
    weights = load_weights(prefix, ALPHA)
    assert weights.source == "slim-checkpoint" and weights.classes == 1001 and weights.trained
    ours = keras_probabilities(weights, ALPHA, probe.astype(np.float32))
    np.testing.assert_allclose(ours, unfolded_forward(variables, ALPHA, probe), atol=2e-5)
    # The .index and .data files name the same checkpoint as the prefix does.
    assert load_weights(Path(f"{prefix}.index"), ALPHA).sha256 == weights.sha256


def test_slim_checkpoint_prefers_moving_average_shadows(tmp_path, probe):
    variables = slim_variables(ALPHA)
    shadow_name = "MobilenetV1/Conv2d_3_pointwise/weights"
    variables[f"{shadow_name}/ExponentialMovingAverage"] = variables[shadow_name] * 0.5
    weights = load_weights(save_checkpoint(tmp_path / "ema.ckpt", variables), ALPHA)
    ours = keras_probabilities(weights, ALPHA, probe.astype(np.float32))
    np.testing.assert_allclose(ours, unfolded_forward(variables, ALPHA, probe, ema=True), atol=2e-5)
    assert np.abs(ours - unfolded_forward(variables, ALPHA, probe, ema=False)).max() > 1e-3


def make_release_archive(tmp_path: Path, variables: dict, extra_member: tarfile.TarInfo | None = None) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_checkpoint(folder / "mobilenet_v1_0.25_128.ckpt", variables)
    archive = tmp_path / "mobilenet_v1_0.25_128_2017_06_14.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted(folder.iterdir()):
            tar.add(item, arcname=f"./{item.name}")
        if extra_member is not None:
            tar.addfile(extra_member, io.BytesIO(b"x" * extra_member.size))
    return archive


def test_release_archive_loads(tmp_path):
    variables = slim_variables(ALPHA)
    archive = make_release_archive(tmp_path, variables)
    weights = load_weights(archive, ALPHA)
    np.testing.assert_allclose(weights.layers["Logits"][1], variables["MobilenetV1/Logits/Conv2d_1c_1x1/biases"])


def test_archive_with_escaping_member_is_refused(tmp_path):
    evil = tarfile.TarInfo("../../evil.ckpt.data-00000-of-00001")
    evil.size = 4
    archive = make_release_archive(tmp_path, slim_variables(ALPHA), extra_member=evil)
    with pytest.raises(WeightsError, match="refusing archive member"):
        load_weights(archive, ALPHA)
    assert not (tmp_path.parent / "evil.ckpt.data-00000-of-00001").exists()


def test_checkpoint_of_another_alpha_names_the_variable(tmp_path):
    prefix = save_checkpoint(tmp_path / "half.ckpt", slim_variables(0.5))
    with pytest.raises(WeightsError, match=r"MobilenetV1/Conv2d_0/weights has shape \(3, 3, 3, 16\), expected \(3, 3, 3, 8\)"):
        load_weights(prefix, ALPHA)


def test_checkpoint_missing_a_variable(tmp_path):
    variables = slim_variables(ALPHA)
    del variables["MobilenetV1/Conv2d_5_depthwise/BatchNorm/moving_mean"]
    with pytest.raises(WeightsError, match="lacks variable MobilenetV1/Conv2d_5_depthwise/BatchNorm/moving_mean"):
        load_weights(save_checkpoint(tmp_path / "partial.ckpt", variables), ALPHA)


def test_corrupt_checkpoint(tmp_path):
    prefix = save_checkpoint(tmp_path / "c.ckpt", slim_variables(ALPHA))
    index = Path(f"{prefix}.index")
    index.write_bytes(index.read_bytes()[:40])
    with pytest.raises(WeightsError, match="not a readable TensorFlow checkpoint"):
        load_weights(prefix, ALPHA)


@pytest.fixture(scope="module")
def keras_application():
    """keras.applications.MobileNet with non-trivial batch-norm statistics."""
    from mbdeploy.tf_runtime import import_tensorflow

    import_tensorflow()
    import keras

    model = keras.applications.MobileNet(input_shape=(RES, RES, 3), alpha=ALPHA, weights=None, classes=1000)
    rng = np.random.default_rng(5)
    for layer in model.layers:
        if layer.name.endswith("_bn"):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                               rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
    return model


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_keras_weights_match_the_keras_application(tmp_path, keras_application, probe, suffix):
    path = tmp_path / f"mobilenet{suffix}"
    if suffix == ".keras":
        keras_application.save(path)
    else:
        keras_application.save_weights(path)
    weights = load_weights(path, ALPHA)
    assert weights.source == "keras" and weights.classes == 1000
    x = probe.astype(np.float32)
    expected = np.asarray(keras_application.predict(x, verbose=0))
    np.testing.assert_allclose(keras_probabilities(weights, ALPHA, x), expected, atol=2e-5)


def test_keras_weights_for_another_alpha(tmp_path, keras_application):
    path = tmp_path / "m.weights.h5"
    keras_application.save_weights(path)
    with pytest.raises(WeightsError, match="alpha 0.5"):
        load_weights(path, 0.5)


def test_tflite_weights_from_the_official_model(reference_dir):
    weights = load_weights(reference_dir / "mobilenet_v1_0.5_160_quant.tflite", 0.5)
    assert weights.source == "tflite" and weights.classes == 1001 and weights.trained
    kernel, bias = weights.layers["Conv2d_0"]
    assert kernel.shape == (3, 3, 3, 16) and bias.shape == (16,)
    assert np.abs(kernel).max() > 0.05  # dequantized, not raw uint8 codes
    assert np.abs(kernel).max() < 50


def test_tflite_of_another_alpha(reference_dir):
    with pytest.raises(WeightsError, match="Conv2d_0 .* expected \\(3, 3, 3, 24\\) for alpha 0.75"):
        load_weights(reference_dir / "mobilenet_v1_0.5_160_quant.tflite", 0.75)


@pytest.mark.parametrize("content", [b"", b"TFL3 not really a model" * 10])
def test_corrupt_tflite(tmp_path, content):
    path = tmp_path / "broken.tflite"
    path.write_bytes(content)
    with pytest.raises(WeightsError):
        load_weights(path, 0.5)


def test_truncated_tflite(tmp_path, reference_dir):
    path = tmp_path / "truncated.tflite"
    path.write_bytes((reference_dir / "mobilenet_v1_0.25_128_quant.tflite").read_bytes()[:100_000])
    with pytest.raises(WeightsError):
        load_weights(path, 0.25)
