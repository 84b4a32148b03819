"""Images in, model inputs out: the one preprocessing every path shares.

x = pixel / 127.5 - 1 on RGB, resized to the model's resolution, NHWC, as the
Slim models were trained (recorded in each manifest as `preprocessing`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from mbdeploy.errors import InvalidInput

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


def load_image(path: Path, resolution: int) -> np.ndarray:
    """uint8 HWC RGB at the model's resolution (Pillow's bilinear resize)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((resolution, resolution), Image.BILINEAR), dtype=np.uint8)


def normalize(pixels: np.ndarray) -> np.ndarray:
    return (pixels.astype(np.float32) / 127.5 - 1.0).astype(np.float32)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


def load_image_folder(folder: Path, resolution: int, limit: int | None = None) -> np.ndarray:
    """Every readable image under `folder` as a float batch; others skipped with a warning."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"calibration folder {folder} does not exist or is not a folder")
    batch, skipped = [], []
    for path in image_files(folder):
        if limit is not None and len(batch) >= limit:
            break
        try:
            batch.append(normalize(load_image(path, resolution)))
        except Exception:  # Pillow raises several types for a non-image
            skipped.append(path.name)
    if skipped:
        shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        warnings.warn(f"skipped {len(skipped)} non-image file(s) in {folder}: {shown}", stacklevel=2)
    if not batch:
        raise InvalidInput(
            f"calibration folder {folder} holds no readable images "
            f"(allowed: {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return np.stack(batch)


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
