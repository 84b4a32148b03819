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

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

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
    """The file or folder an artifact entry names, confined to the manifest's folder.

    A manifest may come from anywhere (a cloned repository, a download), so its
    `path` is never trusted: it must be relative, without `..`, and must not
    leave the folder through a symlink. No host file is pushed, hashed or
    opened on a manifest's say-so.
    """
    manifest_file = Path(manifest_file)
    folder = manifest_file.parent
    raw = artifact.get("path") if isinstance(artifact, dict) else None
    allowed = "a relative path inside the model folder (no absolute path, no '..')"
    if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
        raise ManifestError(f"{manifest_file}: an artifact has no usable path ({raw!r}); expected {allowed}")
    relative = PurePosixPath(raw)
    if relative.is_absolute() or raw.startswith("~") or ".." in relative.parts or relative.parts in ((), (".",)):
        raise ManifestError(f"{manifest_file}: artifact path {raw!r} is refused; expected {allowed}")
    path = folder / relative
    try:
        inside = path.resolve().is_relative_to(folder.resolve()) and path.resolve() != folder.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise ManifestError(f"{manifest_file}: artifact path {raw!r} leaves the model folder through a symlink; "
                            f"expected {allowed}")
    return path


def checked_artifact(manifest_file: Path, artifact: dict) -> tuple[Path, int, str]:
    """(path, bytes, sha256) of a manifest entry whose file is the one the manifest describes.

    The entry must carry its size and sha256, its path must stay in the folder
    (`artifact_file`), a file format must be a regular file and a folder format
    a folder, and the size is compared before anything is hashed (so a wrong
    entry never makes us read gigabytes). Raises ManifestError naming what differs.
    """
    from mbdeploy.formats import FORMATS

    path = artifact_file(manifest_file, artifact)
    size, sha = artifact.get("bytes"), artifact.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool) or not isinstance(sha, str) or len(sha) != 64:
        raise ManifestError(f"{manifest_file}: artifact {artifact.get('path')!r} has no bytes and sha256, so its "
                            "file cannot be checked; convert it again (a plain model file can be named directly)")
    info = FORMATS.get(artifact.get("format"))
    if not path.exists():
        raise ManifestError(f"{manifest_file} lists {artifact.get('path')!r}, which does not exist")
    if info is None or not (path.is_dir() if info.folder else path.is_file()):
        kind = "folder" if info and info.folder else "regular file"
        raise ManifestError(f"{manifest_file}: artifact {artifact.get('path')!r} is not a {kind} of a known format")
    if _quick_size(path) != size:
        raise ManifestError(f"{path} changed since {manifest_file} was written (size differs); convert it again")
    actual_size, digest = artifact_digest(path)
    if digest != sha or actual_size != size:
        raise ManifestError(f"{path} changed since {manifest_file} was written (sha256 differs); convert it again")
    return path, actual_size, digest


def _quick_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in _folder_files(path))


def _folder_files(folder: Path) -> list[Path]:
    """Every file in an artifact folder, sorted; a symlink (never part of an .mlpackage) is refused."""
    files = []
    for parent, dirs, names in os.walk(folder, followlinks=False):
        for name in [*dirs, *names]:
            item = Path(parent) / name
            if item.is_symlink():
                raise ManifestError(f"{folder} holds a symlink ({item.relative_to(folder)}); an artifact folder may not")
        files += [Path(parent) / name for name in names]
    return sorted(files)


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
    for item in _folder_files(path):
        digest.update(str(item.relative_to(path)).encode())
        digest.update(sha256_file(item).encode())
        size += item.stat().st_size
    return size, digest.hexdigest()


@contextmanager
def manifest_lock(model_dir: Path) -> Iterator[None]:
    """Hold the model folder's lock (flock on the folder itself): one manifest update at a time."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(model_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def update_manifest(model_dir: Path, change: Callable[[dict | None], dict]) -> dict:
    """Re-read the manifest under the folder's lock, apply `change`, write it: no concurrent update is lost.

    `change` gets the manifest as it is on disk now (None when there is none or
    it is unreadable) and returns the manifest to write.
    """
    with manifest_lock(model_dir):
        try:
            current = load_manifest(model_dir)
        except ManifestError:
            current = None
        updated = change(current)
        save_manifest(model_dir, updated)
        return updated
