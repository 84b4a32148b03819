"""TF-Slim checkpoints as Google released them (`mobilenet_v1_*_2017_06_14.tar.gz`).

Variables: `MobilenetV1/Conv2d_0/weights`, `MobilenetV1/Conv2d_{i}_depthwise/
depthwise_weights`, `MobilenetV1/Conv2d_{i}_pointwise/weights`, each with
`.../BatchNorm/{beta,moving_mean,moving_variance}` (Slim's batch norm has
scale=False, so no gamma), and `MobilenetV1/Logits/Conv2d_1c_1x1/{weights,
biases}`. `.../ExponentialMovingAverage` shadows are preferred when present:
they are what Google evaluated.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

import numpy as np

from mbdeploy.architecture import ModelSpec, layer_plan
from mbdeploy.atomic import sha256_file
from mbdeploy.errors import WeightsError
from mbdeploy.weights import ModelWeights, check_shapes, fold_batch_norm

SLIM_BATCH_NORM_EPSILON = 0.001
SCOPE = "MobilenetV1"


def variable_names(layer_name: str, kind: str) -> dict[str, str]:
    """Slim variable names for one layer of the plan."""
    if kind == "logits":
        base = f"{SCOPE}/Logits/Conv2d_1c_1x1"
        return {"weights": f"{base}/weights", "biases": f"{base}/biases"}
    base = f"{SCOPE}/{layer_name}"
    weights = f"{base}/depthwise_weights" if kind == "depthwise" else f"{base}/weights"
    return {
        "weights": weights,
        "beta": f"{base}/BatchNorm/beta",
        "moving_mean": f"{base}/BatchNorm/moving_mean",
        "moving_variance": f"{base}/BatchNorm/moving_variance",
    }


def load_slim_checkpoint(path: Path, alpha: float) -> ModelWeights:
    path = Path(path)
    if path.name.lower().endswith((".tgz", ".tar.gz")):
        if not path.exists():
            raise WeightsError(f"checkpoint archive {path} does not exist")
        with tempfile.TemporaryDirectory(prefix="mbdeploy-ckpt-") as folder:
            prefix = _extract_checkpoint(path, Path(folder))
            weights = _read_checkpoint(prefix, alpha, origin=path.name)
        weights.sha256 = sha256_file(path)
        return weights
    prefix = _checkpoint_prefix(path)
    weights = _read_checkpoint(prefix, alpha, origin=path.name)
    weights.sha256 = checkpoint_fingerprint(path)
    return weights


def checkpoint_fingerprint(path: Path) -> str:
    """One hash over a checkpoint's .index and .data-* files."""
    import hashlib

    prefix = _checkpoint_prefix(Path(path))
    digest = hashlib.sha256()
    for part in [Path(f"{prefix}.index"), *sorted(prefix.parent.glob(f"{prefix.name}.data-*"))]:
        digest.update(sha256_file(part).encode())
    return digest.hexdigest()


def _checkpoint_prefix(path: Path) -> Path:
    """Accept the prefix itself, or its .index / .data-* / .meta file."""
    text = str(path)
    for suffix in (".index", ".meta"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    if ".data-" in text:
        text = text[: text.index(".data-")]
    prefix = Path(text)
    if not Path(f"{prefix}.index").exists():
        raise WeightsError(f"no checkpoint at {path}: {prefix}.index does not exist")
    return prefix


def _extract_checkpoint(archive: Path, folder: Path) -> Path:
    """Extract only regular checkpoint files, refusing any path that escapes."""
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if ".ckpt" in Path(m.name).name]
            for member in members:
                target = (folder / member.name).resolve()
                if not member.isfile() or not target.is_relative_to(folder.resolve()):
                    raise WeightsError(
                        f"{archive.name}: refusing archive member {member.name!r} "
                        "(not a regular file inside the archive folder)"
                    )
            tar.extractall(folder, members=members, filter="data")
    except tarfile.ReadError:
        # tarfile lists each compression it tried, one per line; the user needs one fact.
        raise WeightsError(f"{archive.name} is not a readable checkpoint archive: not a tar file "
                           "(plain, gzip, bzip2 or xz), as Google's .tgz releases are") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        reason = " ".join(str(exc).split())  # one line, whatever the library printed
        raise WeightsError(f"{archive.name} is not a readable checkpoint archive: {reason}") from None
    indexes = sorted(folder.rglob("*.ckpt.index"))
    if len(indexes) != 1:
        raise WeightsError(f"{archive.name} holds {len(indexes)} checkpoints (.ckpt.index files); expected 1")
    return Path(str(indexes[0])[: -len(".index")])


def _read_checkpoint(prefix: Path, alpha: float, origin: str) -> ModelWeights:
    from mbdeploy.tf_runtime import import_tensorflow

    tf = import_tensorflow()

    try:
        reader = tf.train.load_checkpoint(str(prefix))
        available = reader.get_variable_to_shape_map()
    except Exception as exc:  # TF raises several unrelated types for a corrupt file
        raise WeightsError(f"{origin} is not a readable TensorFlow checkpoint: {_first_line(exc)}") from None

    def tensor(name: str) -> np.ndarray:
        shadow = f"{name}/ExponentialMovingAverage"
        chosen = shadow if shadow in available else name
        if chosen not in available:
            raise WeightsError(f"{origin}: checkpoint lacks variable {name}")
        try:
            return np.asarray(reader.get_tensor(chosen), dtype=np.float32)
        except Exception as exc:
            raise WeightsError(f"{origin}: cannot read {chosen}: {_first_line(exc)}") from None

    logits_name = variable_names("Logits", "logits")["weights"]
    if logits_name not in available:
        raise WeightsError(f"{origin}: checkpoint lacks variable {logits_name} (not a MobileNet v1 checkpoint?)")
    classes = int(available[logits_name][-1])
    spec = ModelSpec(alpha, 224, classes)
    layers = {}
    for layer in layer_plan(spec):
        names = variable_names(layer.name, layer.kind)
        kernel = tensor(names["weights"])
        if tuple(kernel.shape) != layer.kernel_shape:
            raise WeightsError(
                f"{origin}: {names['weights']} has shape {tuple(kernel.shape)}, expected "
                f"{layer.kernel_shape} for alpha {alpha:g} (a checkpoint of another width multiplier?)"
            )
        if layer.kind == "logits":
            layers[layer.name] = (kernel, tensor(names["biases"]))
        else:
            layers[layer.name] = fold_batch_norm(
                kernel,
                tensor(names["beta"]),
                tensor(names["moving_mean"]),
                tensor(names["moving_variance"]),
                gamma=None,
                epsilon=SLIM_BATCH_NORM_EPSILON,
                depthwise=layer.kind == "depthwise",
            )
    weights = ModelWeights(layers, "slim-checkpoint", sha256="", trained=True, classes=classes,
                           details={"file": origin})
    check_shapes(weights, spec, origin)
    return weights


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
