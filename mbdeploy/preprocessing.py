"""Images in, model inputs out: the one preprocessing every path shares.

x = pixel / 127.5 - 1 on RGB, resized to the model's resolution, NHWC, as the
Slim models were trained (recorded in each manifest as `preprocessing`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from mbdeploy.errors import InvalidInput, ManifestError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


def load_image(path: Path, resolution: int) -> np.ndarray:
    """uint8 HWC RGB at the model's resolution (Pillow's bilinear resize)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((resolution, resolution), Image.BILINEAR), dtype=np.uint8)


def normalize(pixels: np.ndarray, mean: float = 127.5, std: float = 127.5) -> np.ndarray:
    """x = (pixel - mean) / std, written as pixel / std - mean / std: with the release's 127.5 that is
    exactly pixel / 127.5 - 1, the float values the calibration sets have always had."""
    return (pixels.astype(np.float32) / np.float32(std) - np.float32(mean / std)).astype(np.float32)


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def model_input(path: Path, resolution: int, preprocessing: dict) -> np.ndarray:
    """One image as a model's manifest says to feed it: RGB, bilinear resize, (pixel - mean) / std."""
    if preprocessing.get("resize", "bilinear") != "bilinear" or preprocessing.get("color", "RGB") != "RGB":
        raise ManifestError(
            f"preprocessing {preprocessing.get('color')}/{preprocessing.get('resize')} is not supported; "
            "eval runs the release's RGB input with a bilinear resize"
        )
    try:
        pixels = load_image(path, resolution)
    except OSError as exc:
        raise InvalidInput(f"image {path} is unreadable: {exc}") from None
    return normalize(pixels, float(preprocessing.get("mean", 127.5)), float(preprocessing.get("std", 127.5)))


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


def readable_images(folder: Path, limit: int | None = None) -> tuple[list[Path], list[Path]]:
    """(the first `limit` files under `folder` that decode as images, the files skipped before them).

    The one choice of calibration images: conversion reads exactly these, and
    the build key hashes exactly these.
    """
    from PIL import Image

    images, skipped = [], []
    for path in image_files(folder):
        if limit is not None and len(images) >= limit:
            break
        try:
            with Image.open(path) as image:
                image.load()
        except Exception:  # Pillow raises several types for a non-image
            skipped.append(path)
        else:
            images.append(path)
    return images, skipped


def load_image_folder(folder: Path, resolution: int, limit: int | None = None) -> np.ndarray:
    """Every readable image under `folder` (the first `limit`) as a float batch; others skipped with a warning."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"calibration folder {folder} does not exist or is not a folder")
    images, skipped = readable_images(folder, limit)
    if skipped:
        shown = ", ".join(p.name for p in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        warnings.warn(f"skipped {len(skipped)} non-image file(s) in {folder}: {shown}", stacklevel=2)
    if not images:
        raise InvalidInput(
            f"calibration folder {folder} holds no readable images "
            f"(allowed: {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    try:
        return np.stack([normalize(load_image(path, resolution)) for path in images])
    except OSError as exc:
        raise InvalidInput(f"calibration image changed while it was read: {exc}") from None


def synthetic_images(count: int, resolution: int, seed: int) -> np.ndarray:
    """Deterministic smooth images in [-1, 1]: low-frequency noise plus edges.

    Flat white noise would give activation ranges unlike a photo's; smooth
    blobs upsampled from a coarse grid are closer to natural image statistics.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        coarse = rng.integers(0, 256, size=(rng.integers(3, 9),) * 2 + (3,), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((resolution, resolution), Image.BICUBIC), np.float32)
        detail = rng.normal(0, 12, size=smooth.shape)
        images.append(normalize(np.clip(smooth + detail, 0, 255)))
    return np.stack(images).astype(np.float32)
