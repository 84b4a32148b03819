"""Which published benchmark_model a request needs, and getting it once into ~/.cache/mbdeploy.

Two flavours of the tool, with different flag sets and output:

- `litert`: the LiteRT 2.x tool (`litert/tools/benchmark_litert_model.cc`,
  CompiledModel API: CPU through XNNPACK, `--use_gpu`, `--use_npu` with
  `--dispatch_library_path`/`--compiler_plugin_library_path`). Google
  publishes it per release under `litert/binaries/<ai-edge-litert version>/
  android_arm64/` (litert-cli builds the same URL from the installed
  ai-edge-litert, arm64 only), so the default is pinned to the installed
  ai-edge-litert version.
- `tflite`: the classic TFLite tool (`tflite/tools/benchmark/
  benchmark_tflite_model.cc`: `--use_xnnpack`, `--use_nnapi`, op profiling
  to a file) and its APK. Published only in the nightly "latest" folder,
  which cannot be pinned: an explicit opt-in (`release="nightly"`), else
  `--benchmark-binary`/`--benchmark-apk`.

No sha256 of the published files could be established here (no network to
Google's bucket), so each download is trust-on-first-use: its sha256 is
recorded beside it and a later file that differs is refused; `sha256=` pins
a hash of the user's own. Google publishes Android builds only for arm64
(and 32-bit arm in the nightly folder): other ABIs get one line naming
--benchmark-binary, never a download.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mbdeploy.atomic import sha256_file, write_text
from mbdeploy.cache import cache_root
from mbdeploy.errors import InvalidInput, RunnerError

LITERT_BASE_URL = "https://storage.googleapis.com/litert/binaries"
NIGHTLY_BASE_URL = ("https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/tools/"
                    "nightly/latest")
FLAVOURS = ("litert", "tflite")
# What each flavour's published folder holds per Android ABI (file name in that folder).
LITERT_FILES = {"arm64-v8a": "android_arm64/benchmark_model"}
NIGHTLY_FILES = {"arm64-v8a": "android_aarch64_benchmark_model", "armeabi-v7a": "android_arm_benchmark_model"}


@dataclass(frozen=True)
class Release:
    """One published tool file: what the record says about the binary it ran."""

    flavour: str
    version: str
    url: str

    @property
    def file_name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


def installed_litert_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        raise InvalidInput("the pinned LiteRT benchmark_model follows the installed ai-edge-litert, which is missing: "
                           "pip install ai-edge-litert (a base dependency of mbdeploy), or pass --benchmark-binary PATH") from None


def release_for(flavour: str, abi: str, apk: bool = False, version: str | None = None,
                litert_base: str = LITERT_BASE_URL, nightly_base: str = NIGHTLY_BASE_URL) -> Release:
    """The published file for this flavour and device ABI; InvalidInput naming --benchmark-binary if there is none."""
    if flavour == "litert":
        if apk:
            raise InvalidInput("Google publishes no LiteRT 2.x benchmark APK; use --runner benchmark_model, or "
                               "--benchmark-release nightly for the classic APK")
        if abi not in LITERT_FILES:
            raise InvalidInput(f"Google publishes the LiteRT benchmark_model for arm64-v8a only, not this {abi or 'unknown'} "
                               "device; pass --benchmark-binary PATH (a build for its ABI)")
        version = version or installed_litert_version()
        return Release("litert", version, f"{litert_base.rstrip('/')}/{version}/{LITERT_FILES[abi]}")
    if abi not in NIGHTLY_FILES:
        what = "--benchmark-apk PATH" if apk else "--benchmark-binary PATH"
        raise InvalidInput(f"Google publishes benchmark_model for arm64-v8a and armeabi-v7a only, not this "
                           f"{abi or 'unknown'} device; pass {what} (a build for its ABI)")
    name = NIGHTLY_FILES[abi] + (".apk" if apk else "")
    return Release("tflite", "nightly-latest", f"{nightly_base.rstrip('/')}/{name}")


def cache_dir(release: Release) -> Path:
    return cache_root() / "benchmark_model" / release.flavour / release.version


def fetch(release: Release, cache: Path | None = None, sha256: str | None = None) -> Path:
    """The published file, downloaded once; its sha256 is recorded and a changed file refused."""
    name = release.file_name
    folder = Path(cache) if cache else cache_dir(release)
    target, record = folder / name, folder / f"{name}.sha256"
    recorded = record.read_text().split()[0] if record.exists() else None
    expected = sha256 or recorded
    if target.exists():
        digest = sha256_file(target)
        if expected and digest != expected:
            raise RunnerError(f"cached {target} has sha256 {digest}, but {expected} was recorded; delete it to download again")
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".download", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            with urllib.request.urlopen(release.url, timeout=60) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as exc:
            raise RunnerError(f"could not download {release.url} ({exc}); pass --benchmark-binary PATH instead") from None
        digest = sha256_file(tmp)
        if expected and digest != expected:
            raise RunnerError(f"downloaded {release.url} has sha256 {digest}, expected {expected}; refusing a changed file")
        tmp.chmod(0o755)
        os.replace(tmp, target)
        if not recorded:
            write_text(record, f"{digest}  {name}  {release.url}\n")
    finally:
        tmp.unlink(missing_ok=True)
    return target
