"""`manifest.json`: the one place a converted model's metadata lives.

Nothing downstream recovers metadata from a file name: bench, eval, report
and select read the manifest beside the model files.

Layout (see README, "Manifest"):
    {
      "schema": "mbdeploy.manifest/1",
      "name": "mobilenet_v1_0.75_192",
      "spec": {"alpha": 0.75, "resolution": 192, "classes": 1001},
      "macs": ..., "params": ...,
      "weights": {"source": "random|slim-checkpoint|keras|tflite", "sha256": ..., "trained": bool, ...},
      "preprocessing": {...},
      "tools": {"mbdeploy": ..., "tensorflow": ..., ...},
      "artifacts": [{"format", "precision", "path", "bytes", "sha256", "macs", "params",
                     "build_key", "verification": {...}}],
      "accuracy": {"<format>/<precision>": {...}}     # written by `mbdeploy eval`
    }
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Iterable, Iterator

from mbdeploy import __version__
from mbdeploy.atomic import sha256_file, write_json
from mbdeploy.errors import ManifestError

MANIFEST_NAME = "manifest.json"
SCHEMA = "mbdeploy.manifest/1"

# Inputs are scaled to [-1, 1] as the released Slim models were trained:
# x = pixel / 127.5 - 1, RGB, NHWC, resized to the model's resolution.
PREPROCESSING = {
    "layout": "NHWC",
    "color": "RGB",
    "range": [-1.0, 1.0],
    "mean": 127.5,
    "std": 127.5,
    "resize": "bilinear",
    "label_offset": 1,  # output 0 is "background" when classes == 1001
}

# Distributions whose versions decide what an artifact contains.
TOOL_DISTRIBUTIONS = {
    "tensorflow": ("tensorflow-cpu", "tensorflow"),
    "ai-edge-litert": ("ai-edge-litert",),
    "coremltools": ("coremltools",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime",),
}


def tool_versions() -> dict[str, str]:
    """Installed versions, read from package metadata (no heavy imports)."""
    versions = {"mbdeploy": __version__}
    for tool, distributions in TOOL_DISTRIBUTIONS.items():
        for distribution in distributions:
            try:
                versions[tool] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def manifest_path(model_dir: Path) -> Path:
    return Path(model_dir) / MANIFEST_NAME


def load_manifest(model_dir_or_file: Path) -> dict:
    path = Path(model_dir_or_file)
    if path.is_dir():
        path = manifest_path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest {path} is unreadable: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ManifestError(f"{path} is not an mbdeploy manifest (schema {SCHEMA} expected)")
    for key in ("name", "spec", "artifacts"):
        if key not in data:
            raise ManifestError(f"manifest {path} lacks {key!r}")
    return data


def save_manifest(model_dir: Path, data: dict) -> Path:
    path = manifest_path(model_dir)
    write_json(path, data)
    return path


def find_manifests(paths: Iterable[Path]) -> Iterator[Path]:
    """Every manifest.json at or below the given folders (or the files themselves)."""
    for root in paths:
        root = Path(root)
        if root.is_file() and root.name == MANIFEST_NAME:
            yield root
        elif root.is_dir():
            yield from sorted(root.rglob(MANIFEST_NAME))


def artifact_file(manifest_file: Path, artifact: dict) -> Path:
    return Path(manifest_file).parent / artifact["path"]


def artifact_key(artifact: dict) -> str:
    return f"{artifact['format']}/{artifact['precision']}"


def artifact_digest(path: Path) -> tuple[int, str]:
    """Bytes and sha256 of an artifact: a model file, or a folder (`.mlpackage`) hashed file by file.

    The one definition: convert writes it into the manifest, bench and eval check it.
    """
    path = Path(path)
    if path.is_file():
        return path.stat().st_size, sha256_file(path)
    digest = hashlib.sha256()
    size = 0
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(path)).encode())
        digest.update(sha256_file(item).encode())
        size += item.stat().st_size
    return size, digest.hexdigest()
