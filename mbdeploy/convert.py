"""`mbdeploy convert`: spec + weights -> verified artifacts + manifest.

An artifact whose inputs are unchanged (spec, weights hash, format,
precision, calibration, tool versions) is not rebuilt: the check reads only
the manifest and file hashes, so a re-run over an up-to-date grid never
imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mbdeploy.accounting import model_cost
from mbdeploy.architecture import ModelSpec, model_name, validate_alpha, validate_resolution, warn_if_unusual_resolution
from mbdeploy.atomic import check_writable_folder, sha256_file
from mbdeploy.errors import InvalidInput, ManifestError, VerificationError
from mbdeploy.export import FORMATS, plan_exports
from mbdeploy.manifest import (MANIFEST_NAME, PREPROCESSING, SCHEMA, artifact_digest, checked_artifact, load_manifest,
                               manifest_lock, manifest_path, update_manifest, tool_versions)
from mbdeploy.preprocessing import image_files, readable_images
from mbdeploy.tf_runtime import require_tensorflow
from mbdeploy.weights import source_of

SYNTHETIC_CALIBRATION = 16  # enough for stable ranges of a 28-layer net, quick to run
CALIBRATION_LIMIT = 100
PROBES = 8
# Options that change what a format's artifact contains (and so its build key).
FORMAT_OPTIONS = {"coreml": ("coreml_target", "labels")}
PROBE_SEED = 20170417  # the paper's arXiv date: fixed, and unlike the calibration seed


@dataclass
class ConvertRequest:
    alpha: float
    resolution: int
    weights: Path | None = None
    out_dir: Path = Path("models")
    formats: list[str] | None = None
    precisions: list[str] | None = None
    calib_dir: Path | None = None
    verify: bool = True
    seed: int = 0
    options: dict = field(default_factory=dict)  # format-specific, e.g. coreml_target
    force: bool = False  # replace a model built from trained weights with random ones


@dataclass
class ConvertResult:
    manifest_path: Path
    manifest: dict
    built: list[str]
    reused: list[str]

    def to_dict(self) -> dict:
        return {"manifest": str(self.manifest_path), "built": self.built, "reused": self.reused,
                "name": self.manifest["name"], "artifacts": self.manifest["artifacts"]}


Progress = Callable[[str], None]


def validate_request(request: ConvertRequest) -> list[tuple[str, str]]:
    """Everything checkable before work starts; returns the (format, precision) plan."""
    validate_alpha(request.alpha)
    validate_resolution(request.resolution)
    require_tensorflow()  # every format is built from the Keras reference
    pairs = plan_exports(request.formats, request.precisions)
    if request.weights is not None:
        weights = Path(request.weights)
        is_prefix = source_of(weights) == "slim-checkpoint" and not weights.name.lower().endswith((".tgz", ".tar.gz"))
        if not is_prefix and not weights.exists():  # a .ckpt prefix names files, not itself
            raise InvalidInput(f"weights file {weights} does not exist")
        if not is_prefix and not weights.is_file():
            raise InvalidInput(f"weights {weights} is not a file")
    if request.calib_dir is not None:
        folder = Path(request.calib_dir)
        if not folder.is_dir():
            raise InvalidInput(f"calibration folder {folder} does not exist or is not a folder")
        if not image_files(folder):
            raise InvalidInput(f"calibration folder {folder} is empty")
    if any(fmt == "coreml" for fmt, _ in pairs):
        target = str(request.options.get("coreml_target") or "iOS16")
        if not re.fullmatch(r"(iOS|macOS|tvOS|watchOS|visionOS)\d+", target):
            raise InvalidInput(f"Core ML target {target!r} is not of the form iOS16, iOS17, macOS14, ...")
    check_writable(Path(request.out_dir))
    if request.weights is None and not request.force:
        refuse_replacing_trained_weights(Path(request.out_dir) / model_name(request.alpha, request.resolution))
    return pairs


def refuse_replacing_trained_weights(model_dir: Path) -> None:
    """Random weights would start the folder over and lose a trained model: only when asked."""
    if not manifest_path(model_dir).exists():
        return
    try:
        weights = load_manifest(model_dir).get("weights", {})
    except Exception:  # an unreadable manifest is rebuilt anyway
        return
    if weights.get("trained"):
        raise InvalidInput(
            f"{model_dir} holds a model converted from trained weights ({weights.get('source')}); random weights "
            f"would replace it: pass --force to replace it, --weights to rebuild from trained weights, "
            f"or --out another folder"
        )


def check_writable(folder: Path) -> None:
    check_writable_folder(folder, "output folder")


def weights_fingerprint(path: Path | None, alpha: float, seed: int) -> str:
    """The weights' identity without loading them (what the cache keys on)."""
    if path is None:
        from mbdeploy.weights.random_init import random_identity

        return random_identity(alpha, seed)
    path = Path(path)
    if source_of(path) == "slim-checkpoint" and not path.name.lower().endswith((".tgz", ".tar.gz")):
        from mbdeploy.weights.slim import checkpoint_fingerprint

        return checkpoint_fingerprint(path)
    return sha256_file(path)


def calibration_fingerprint(calib_dir: Path | None, seed: int) -> str:
    """Exactly the images calibration reads (the first CALIBRATION_LIMIT that decode), by relative path and content."""
    if calib_dir is None:
        return f"synthetic:{SYNTHETIC_CALIBRATION}:seed={seed}"
    digest = hashlib.sha256()
    images, _ = readable_images(Path(calib_dir), CALIBRATION_LIMIT)
    for path in images:
        digest.update(path.relative_to(calib_dir).as_posix().encode() + b"\0")
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def build_key(fmt: str, precision: str, fingerprint: str, request: ConvertRequest, calib: str, tools: dict) -> str:
    quantized = precision in ("int8", "w8a8")
    key = {
        "alpha": request.alpha,
        "resolution": request.resolution,
        "weights": fingerprint,
        "format": fmt,
        "precision": precision,
        "calibration": calib if quantized else None,
        "options": {k: _option_identity(k, request.options.get(k)) for k in FORMAT_OPTIONS.get(fmt, ())},
        "tools": tools,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _option_identity(key: str, value: object) -> object:
    """An option as it enters the build key: files by their content."""
    if key == "labels" and value:
        return sha256_file(Path(str(value)))
    return value


def artifact_filename(name: str, fmt: str, precision: str) -> str:
    return f"{name}_{precision}{FORMATS[fmt].suffix}"


def up_to_date(model_dir: Path, artifact: dict | None, key: str) -> bool:
    if not artifact or artifact.get("build_key") != key:
        return False
    try:  # the path stays in the folder, the size is compared before hashing
        checked_artifact(manifest_path(model_dir), artifact)
    except ManifestError:
        return False  # rebuilt, and the entry replaced with the file's true path
    return True


def convert_model(request: ConvertRequest, progress: Progress | None = None) -> ConvertResult:
    say = progress or (lambda _message: None)
    pairs = validate_request(request)
    if request.resolution % 32:
        warn_if_unusual_resolution(request.resolution)
    name = model_name(request.alpha, request.resolution)
    model_dir = Path(request.out_dir) / name
    tools = tool_versions()
    fingerprint = weights_fingerprint(request.weights, request.alpha, request.seed)
    calib = calibration_fingerprint(request.calib_dir, request.seed)
    keys = {pair: build_key(*pair, fingerprint, request, calib, tools) for pair in pairs}

    _remove_stale_temporaries(model_dir)
    with manifest_lock(model_dir):
        manifest = _existing_manifest(model_dir, fingerprint)
        if manifest is None and manifest_path(model_dir).exists():
            _supersede(model_dir, say)
    current = {(a["format"], a["precision"]): a for a in manifest["artifacts"]} if manifest else {}
    todo = [pair for pair in pairs if not up_to_date(model_dir, current.get(pair), keys[pair])]
    reused = [f"{f}/{p}" for f, p in pairs if (f, p) not in todo]
    if not todo:
        say(f"{name}: up to date")
        return ConvertResult(manifest_path(model_dir), manifest, [], reused)

    job = _prepare_job(request, todo, say)
    fresh = _new_manifest(job, tools)
    probes = _write_probes(model_dir, job)
    failures, built = [], []
    for fmt, precision in todo:
        say(f"{name}: {fmt} {precision}")
        artifact = _build_artifact(job, fmt, precision, model_dir, request, keys[(fmt, precision)])

        def merge(current: dict | None, artifact: dict = artifact) -> dict:
            # Re-read under the lock: another convert or an eval may have written since we started.
            if current is None or current.get("weights", {}).get("sha256") != fingerprint:
                current = dict(fresh, artifacts=[])
            current["tools"] = tools
            current["probes"] = probes
            current["artifacts"] = [a for a in current["artifacts"]
                                    if (a.get("format"), a.get("precision")) != (artifact["format"], artifact["precision"])
                                    ] + [artifact]
            # Accuracy measured on the old file says nothing about the new one.
            key = f"{artifact['format']}/{artifact['precision']}"
            for measured in [k for k in current.get("accuracy", {}) if k == key or k.startswith(f"{key}@")]:
                current["accuracy"].pop(measured)  # the host's figure and every device's
            return current

        manifest = update_manifest(model_dir, merge)  # after each artifact: an interrupt keeps what is done
        built.append(f"{fmt}/{precision}")
        verification = artifact["verification"]
        if not verification.get("skipped") and not verification["passed"]:
            failures.append(f"{fmt}/{precision}: {'; '.join(verification['failures'])}")
    if failures:
        hint = "" if request.calib_dir else "; int8 was calibrated on synthetic images: try --calib DIR"
        raise VerificationError(
            f"{name} failed verification ({' | '.join(failures)}); the artifacts are kept and marked "
            f"failed in the manifest; use --no-verify to accept them{hint}",
            result=ConvertResult(manifest_path(model_dir), manifest, built, reused),
        )
    return ConvertResult(manifest_path(model_dir), manifest, built, reused)


def _remove_stale_temporaries(model_dir: Path) -> None:
    """Temporary files a killed convert left behind (never under a final name)."""
    import shutil

    if model_dir.is_dir():
        for leftover in model_dir.glob(".*.tmp"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()


def _supersede(model_dir: Path, say: Progress) -> None:
    """Other weights (or an unreadable manifest) in this folder: move its model files and manifest aside.

    They go to `superseded-<UTC time>/` inside the folder (the manifest renamed
    `manifest.json.old`), so nothing of the user's is deleted, and bench, which
    times only what a manifest lists where one exists, never times them.
    """
    import datetime
    import shutil

    from mbdeploy.formats import FORMATS

    if not model_dir.is_dir():
        return
    suffixes = {info.suffix for info in FORMATS.values()}
    old = [p for p in sorted(model_dir.iterdir())
           if p.name == MANIFEST_NAME or (p.suffix in suffixes and not p.name.startswith("."))]
    if not old:
        return
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    aside = model_dir / f"superseded-{stamp}"
    aside.mkdir(exist_ok=True)
    for path in old:
        shutil.move(str(path), aside / (path.name + ".old" if path.name == MANIFEST_NAME else path.name))
    warnings.warn(f"{model_dir} held a model from other weights: {len(old)} file(s) moved to {aside}", stacklevel=3)
    say(f"moved {len(old)} superseded file(s) to {aside}")


def _existing_manifest(model_dir: Path, fingerprint: str) -> dict | None:
    if not manifest_path(model_dir).exists():
        return None
    try:
        manifest = load_manifest(model_dir)
    except Exception:  # an unreadable old manifest is rebuilt, not trusted
        return None
    # Other weights in the same folder: start over rather than mix artifacts.
    return manifest if manifest.get("weights", {}).get("sha256") == fingerprint else None


QUANTIZED = ("int8", "w8a8")


def _prepare_job(request: ConvertRequest, pairs: list[tuple[str, str]], say: Progress):
    import numpy as np

    from mbdeploy.export import ExportJob
    from mbdeploy.keras_model import build_keras_model
    from mbdeploy.preprocessing import load_image_folder, synthetic_images
    from mbdeploy.weights import load_weights

    say("loading weights")
    weights = load_weights(request.weights, request.alpha, seed=request.seed)
    if not weights.trained:
        warnings.warn(
            "no --weights given: using seeded random weights; accuracy is meaningless "
            "(latency and power are still representative)",
            stacklevel=2,
        )
    spec = ModelSpec(request.alpha, request.resolution, weights.classes)
    say("building the Keras reference")
    model = build_keras_model(spec, weights)
    if request.calib_dir is not None:
        calibration = load_image_folder(Path(request.calib_dir), spec.resolution, limit=CALIBRATION_LIMIT)
    else:
        calibration = synthetic_images(SYNTHETIC_CALIBRATION, spec.resolution, seed=request.seed)
        if weights.trained and any(p in QUANTIZED for _, p in pairs):
            warnings.warn(
                "int8 of trained weights calibrated on synthetic images: activation ranges will not fit "
                "photos and verification on synthetic probes cannot show it; pass --calib DIR with real images",
                stacklevel=2,
            )
    probes = synthetic_images(PROBES, spec.resolution, seed=PROBE_SEED)
    if request.calib_dir is not None:
        # Real images make top-1 agreement meaningful; keep a few beside the synthetic ones.
        probes = np.concatenate([calibration[:PROBES], probes])
    reference = np.asarray(model.predict(probes, batch_size=1, verbose=0), np.float32)
    options = dict(request.options, calibration_source=str(request.calib_dir) if request.calib_dir else "synthetic")
    return ExportJob(spec, weights, model, calibration, probes, reference, options)


PROBES_FILE = "probes.npz"


def _write_probes(model_dir: Path, job) -> dict:
    """The verification probes and the Keras reference's outputs on them, beside the manifest:
    `bench --check-outputs` runs the same inputs on a device and compares with these outputs
    (which stay right even if an artifact file is later replaced)."""
    import io

    import numpy as np

    from mbdeploy.atomic import write_bytes

    model_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, inputs=np.asarray(job.probes, np.float32), reference=job.reference)
    data = buffer.getvalue()
    write_bytes(model_dir / PROBES_FILE, data)
    calibration = len(job.probes) - PROBES
    return {"path": PROBES_FILE, "sha256": hashlib.sha256(data).hexdigest(), "count": int(len(job.probes)),
            "synthetic": PROBES, "calibration_images": max(calibration, 0), "reference": "Keras reference at convert"}


def _new_manifest(job, tools: dict) -> dict:
    cost = model_cost(job.spec)
    return {
        "schema": SCHEMA,
        "name": job.spec.name,
        "spec": {"alpha": job.spec.alpha, "resolution": job.spec.resolution, "classes": job.spec.classes},
        "macs": cost.macs,
        "params": cost.params,
        "weights": job.weights.manifest_entry(),
        "preprocessing": dict(PREPROCESSING, label_offset=1 if job.spec.classes == 1001 else 0),
        "tools": tools,
        "artifacts": [],
    }


def _build_artifact(job, fmt: str, precision: str, model_dir: Path, request: ConvertRequest, key: str) -> dict:
    from mbdeploy.export import exporter

    module = exporter(fmt)
    filename = artifact_filename(job.spec.name, fmt, precision)
    path = model_dir / filename
    module.export(job, precision, path)
    if request.verify:
        verification = module.verify(job, precision, path)
    else:
        verification = {"skipped": True, "passed": None}
    cost = model_cost(job.spec)
    size, digest = artifact_digest(path)
    return {
        "format": fmt,
        "precision": precision,
        "path": filename,
        "bytes": size,
        "sha256": digest,
        "macs": cost.macs,
        "params": cost.params,
        "build_key": key,
        "verification": verification,
        # Which images set the activation ranges (quantized precisions only).
        "calibration": job.options.get("calibration_source") if precision in QUANTIZED else None,
    }
