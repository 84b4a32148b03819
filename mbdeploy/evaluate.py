"""`mbdeploy eval`: top-1/top-5 of converted models on a labelled image set.

Data: an ImageNet-style tree `DIR/<label>/*.jpg` (the label a class name, a
synset id or a class index), or a flat folder with a labels file of
`<image file> <label>` lines, or a flat folder with no labels (then only the
agreement between precisions is measured). Class indices are ImageNet's
0..999; a 1001-class model's output is shifted by the manifest's
`label_offset` (output 0 is "background").

Preprocessing is the manifest's: RGB, resized to the model's resolution,
x = (pixel - mean) / std; a model with an int8/uint8 input gets that value
quantized with the input tensor's own scale and zero point. Each image is
preprocessed once and run through every artifact of its model.

Results go into the manifest's `accuracy` section under "<format>/<precision>":
top-1/top-5 in percent, the image count, a fingerprint of the data, and for
non-fp32 artifacts the top-1 drop from fp32 (in points) and the top-1
agreement with fp32 (percent of images with the same top-1; no labels needed).
"""

from __future__ import annotations

import abc
import datetime
import hashlib
import os
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from mbdeploy.errors import InvalidInput, ManifestError, MissingDependency, RunnerError
from mbdeploy.formats import FORMATS
from mbdeploy.manifest import (artifact_key, checked_artifact, find_manifests, load_manifest, tool_versions,
                               update_manifest)
from mbdeploy.preprocessing import IMAGE_SUFFIXES, is_image_file, model_input
from mbdeploy.records import stats

if TYPE_CHECKING:
    import numpy as np

IMAGENET_CLASSES = 1000
_SYNSET = re.compile(r"^n\d{8}$")


# --- data -----------------------------------------------------------------------


@dataclass
class Dataset:
    root: Path
    images: list[Path]
    labels: list[int | None]  # ImageNet class index 0..999, or None when unlabelled

    @property
    def labelled(self) -> bool:
        return all(label is not None for label in self.labels)

    def fingerprint(self) -> str:
        """A hash of (relative path, label) pairs: two evals on the same data share it."""
        digest = hashlib.sha256()
        for image, label in zip(self.images, self.labels):
            digest.update(f"{image.relative_to(self.root).as_posix()}\t{label}\n".encode())
        return digest.hexdigest()[:16]


def _label_key(name: str) -> str:
    """A class name compared loosely: "Hot_Dog" finds "hot dog". Unlike a device name, a hyphen is
    part of the name ("black-and-tan coonhound")."""
    return re.sub(r"[\s_]+", " ", name.strip().lower())


class ClassNames:
    """Label text -> ImageNet class index, from a names file (1000 lines, or 1001 with background first).

    A line may be a name ("tiger cat"), a list of names ("hotdog, hot dog, red hot")
    or a synset followed by names ("n02123159 tiger cat"); every spelling maps.
    """

    def __init__(self, lines: list[str]) -> None:
        lines = [line.strip() for line in lines if line.strip()]
        if len(lines) == IMAGENET_CLASSES + 1 and _label_key(lines[0]) == "background":
            lines = lines[1:]
        self.names = lines
        self._index: dict[str, int] = {}
        for index, line in enumerate(lines):
            words = line.split(maxsplit=1)
            if words and _SYNSET.match(words[0]):
                self._index.setdefault(words[0], index)
                line = words[1] if len(words) > 1 else ""
            for spelling in [line, *line.split(",")]:
                if spelling.strip():
                    self._index.setdefault(_label_key(spelling), index)

    @classmethod
    def from_file(cls, path: Path) -> "ClassNames":
        try:
            return cls(Path(path).read_text().splitlines())
        except OSError as exc:
            raise InvalidInput(f"class names file {path} is unreadable: {exc}") from None

    def lookup(self, label: str) -> int | None:
        return self._index.get(label) if _SYNSET.match(label) else self._index.get(_label_key(label))


def _label_index(label: str, names: ClassNames | None, where: str) -> int:
    label = label.strip()
    if label.isdigit():
        index = int(label)
        if not 0 <= index < IMAGENET_CLASSES:
            raise InvalidInput(f"{where}: class index {index} is outside 0..{IMAGENET_CLASSES - 1}")
        return index
    found = names.lookup(label) if names else None
    if found is None:
        hint = "" if names else " (pass --class-names FILE to map names or synsets to class indices)"
        raise InvalidInput(f"{where}: label {label!r} is not a class index or a known class name{hint}")
    return found


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def load_dataset(root: Path, labels_file: Path | None = None, class_names: Path | None = None,
                 limit: int | None = None) -> Dataset:
    root = Path(root)
    if not root.is_dir():
        state = "is not a folder" if root.exists() else "does not exist"
        raise InvalidInput(f"--data {root} {state}; give a folder of images (class subfolders, or flat with --labels)")
    if limit is not None and limit < 1:
        raise InvalidInput(f"limit must be a positive number of images, got {limit}")
    names = ClassNames.from_file(class_names) if class_names else None
    images: list[Path] = []
    labels: list[int | None] = []
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and _images_in(d))
    if labels_file is not None:
        try:
            label_lines = Path(labels_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"labels file {labels_file} is unreadable: {getattr(exc, 'strerror', None) or exc}") from None
        for number, line in enumerate(label_lines, 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = re.split(r"\s*[,\t]\s*|\s+", line.strip(), maxsplit=1)
            if len(parts) != 2:
                raise InvalidInput(f"{labels_file}:{number}: expected '<image file> <label>', got {line!r}")
            image = root / parts[0]
            # The labels file comes with the data, not from the user's config: its names stay in the folder
            # (no '..' or absolute names; a link the user put in the folder is theirs, so not resolved).
            if not image.is_file() or not Path(os.path.abspath(image)).is_relative_to(os.path.abspath(root)):
                raise InvalidInput(f"{labels_file}:{number}: image {parts[0]} is not in {root}")
            images.append(image)
            labels.append(_label_index(parts[1], names, f"{labels_file}:{number}"))
    elif class_dirs:
        synsets = [d.name for d in class_dirs]
        # Without a names file, synset folders follow ImageNet's convention: class
        # index = rank of the synset in sorted order, which needs all 1000 of them.
        by_rank = (names is None and all(_SYNSET.match(s) for s in synsets) and len(synsets) == IMAGENET_CLASSES)
        for rank, folder in enumerate(class_dirs):
            label = rank if by_rank else _label_index(folder.name, names, f"folder {folder}")
            for image in _images_in(folder):
                images.append(image)
                labels.append(label)
    else:
        images = _images_in(root)
        labels = [None] * len(images)
    if not images and labels_file is not None:
        raise InvalidInput(f"labels file {labels_file} lists no images ('<image file> <label>' lines)")
    if not images:
        raise InvalidInput(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root} or its class folders")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return Dataset(root, images, labels)


# --- evaluation ---------------------------------------------------------------


class OnDevice(abc.ABC):
    """Where `eval --device` computes: each artifact runs on a device, a batch of preprocessed images per call.

    The host preprocesses; the device only runs the model (bench's probe mechanism,
    bench/device_eval.py). Results are keyed `<format>/<precision>@<device id>`.
    """

    device_id: str
    runtime: str  # what computed, e.g. "litert runner (2 threads, XNNPACK)"
    batch: int = 32  # images per push and device call

    @abc.abstractmethod
    def formats(self) -> tuple[str, ...]:
        """The artifact formats its runner can run."""

    @abc.abstractmethod
    def open(self, artifact: dict, path: Path) -> "Callable[[np.ndarray], list[list[float]]]":
        """Put the artifact on the device; a function from a float32 batch (N x H x W x C) to N output rows."""


def _one_by_one(predict: Callable) -> Callable:
    return lambda xs: [predict(x) for x in xs]


@dataclass
class ArtifactResult:
    model: str
    format: str
    precision: str
    images: int = 0
    top1_percent: float | None = None
    top5_percent: float | None = None
    top1_drop_vs_fp32_points: float | None = None
    agreement_with_fp32_percent: float | None = None
    status: str = "ok"  # or "skipped: <reason>"
    top1_ci95_percent: list[float] | None = None  # Wilson 95% interval of top1_percent over `images`
    top1_drop_ci95_points: list[float] | None = None  # paired 95% interval of the drop vs fp32, same images
    device: str | None = None  # the device that computed (eval --device); None: the host
    predictions: list[int] = field(default_factory=list, repr=False)
    correct: list[bool] = field(default_factory=list, repr=False)  # top-1 right, per labelled image

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("predictions")
        data.pop("correct")
        return data


def top_k(scores, label_offset: int, k: int = 5) -> list[int]:
    """The k best ImageNet classes (0..999): the background column, if any, is dropped."""
    import numpy as np

    classes = scores[label_offset:] if len(scores) > IMAGENET_CLASSES else scores
    return [int(i) for i in np.argsort(-classes, kind="stable")[:k]]


def evaluate_manifest(manifest_file: Path, dataset: Dataset, formats: Iterable[str] | None = None,
                      progress: Callable[[], None] | None = None,
                      on_device: OnDevice | None = None) -> list[ArtifactResult]:
    """Run every artifact of one model over the data (on the host, or `on_device`); record accuracy into its manifest."""
    import numpy as np

    manifest = load_manifest(manifest_file)
    resolution = int(manifest["spec"]["resolution"])
    preprocessing = manifest.get("preprocessing", {})
    label_offset = int(preprocessing.get("label_offset", 1 if manifest["spec"].get("classes") == 1001 else 0))
    results, predictors = [], []
    # Checked as bench checks them (path inside the folder, size and sha256) before any is run:
    # a swapped file must not have its top-1 written into another artifact's entry.
    checked = {id(a): checked_artifact(manifest_file, a)[0] for a in manifest["artifacts"]
               if not formats or a["format"] in formats}
    for artifact in manifest["artifacts"]:
        result = ArtifactResult(manifest["name"], artifact["format"], artifact["precision"],
                                device=on_device.device_id if on_device is not None else None)
        results.append(result)
        if formats and artifact["format"] not in formats:
            result.status = "skipped: format not requested"
            continue
        verification = artifact.get("verification") or {}
        if verification.get("passed") is False:
            # Its top-1 would be recorded as the model's; convert --no-verify accepts it on purpose.
            result.status = ("skipped: failed verification at convert ("
                             + "; ".join(verification.get("failures") or ["see the manifest"])
                             + "); reconvert, or accept it with convert --no-verify")
            continue
        if on_device is not None and artifact["format"] not in on_device.formats():
            result.status = f"skipped: {on_device.runtime} cannot run {artifact['format']} artifacts"
            continue
        try:
            if on_device is not None:
                predictors.append((result, on_device.open(artifact, checked[id(artifact)])))
            else:
                from mbdeploy.export import predictor  # the host's runtimes; eval --device needs none of them

                predictors.append((result, _one_by_one(predictor(artifact["format"], checked[id(artifact)]))))
        except (InvalidInput, MissingDependency) as exc:
            result.status = f"skipped: {exc.message}"
        except (KeyError, ValueError, RuntimeError) as exc:  # a runtime that cannot load the file
            result.status = f"skipped: cannot load {artifact['path']}: {exc}"
    hits1 = {id(r): 0 for r, _ in predictors}
    hits5 = dict(hits1)
    evaluated, unreadable = 0, []
    batch: list[tuple["np.ndarray", int | None]] = []

    def score(batch: list) -> None:
        xs = np.stack([x for x, _ in batch])
        for result, predict in predictors:
            rows = predict(xs)
            if len(rows) != len(batch):
                raise RunnerError(f"{result.format} {result.precision}: {len(rows)} outputs for {len(batch)} images")
            for row, (_, label) in zip(rows, batch):
                best = top_k(np.asarray(row, np.float32), label_offset)
                result.predictions.append(best[0])
                if label is not None:
                    result.correct.append(best[0] == label)
                    hits1[id(result)] += best[0] == label
                    hits5[id(result)] += label in best

    size = on_device.batch if on_device is not None else 1
    for image, label in zip(dataset.images, dataset.labels):
        try:
            x = model_input(image, resolution, preprocessing)
        except InvalidInput:
            # One broken file in a large set should not cost the whole run; it is counted and named.
            unreadable.append(image.name)
            if progress:
                progress()
            continue
        evaluated += 1
        batch.append((x, label))
        if len(batch) >= size:
            score(batch)
            batch = []
        if progress:
            progress()
    if batch:
        score(batch)
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (" ..." if len(unreadable) > 5 else "")
        warnings.warn(f"skipped {len(unreadable)} unreadable image(s): {shown}", stacklevel=2)
    if not evaluated:
        raise InvalidInput(f"none of the {len(dataset.images)} images could be read")
    for result, _ in predictors:
        result.images = evaluated
        if dataset.labelled:
            result.top1_percent = 100.0 * hits1[id(result)] / result.images
            result.top5_percent = 100.0 * hits5[id(result)] / result.images
            low, high = stats.wilson_interval(hits1[id(result)], result.images)
            result.top1_ci95_percent = [100.0 * low, 100.0 * high]
    _compare_with_fp32([r for r, _ in predictors])
    if manifest.get("weights", {}).get("trained") is False and dataset.labelled:
        # Agreement between precisions still means something; top-1 of random weights does not.
        for result, _ in predictors:
            result.status = UNTRAINED_STATUS
        warnings.warn(f"{manifest['name']} has seeded random weights: its top-1 is chance level, recorded as "
                      "meaningless and used by neither select nor report", stacklevel=2)
    _record(manifest_file, results, dataset, trained=manifest.get("weights", {}).get("trained") is not False,
            evaluated={artifact_key(a): a["sha256"] for a in manifest["artifacts"]}, on_device=on_device)
    return results


UNTRAINED_STATUS = "ok (weights untrained: top-1 meaningless)"


def _compare_with_fp32(results: list[ArtifactResult]) -> None:
    """Top-1 agreement and top-1 drop of each precision against fp32 of the same format (else any fp32)."""
    fp32 = {r.format: r for r in results if r.precision == "fp32"}
    for result in results:
        reference = fp32.get(result.format) or next(iter(fp32.values()), None)
        if reference is None or result is reference:
            continue
        same = sum(a == b for a, b in zip(result.predictions, reference.predictions))
        result.agreement_with_fp32_percent = 100.0 * same / len(result.predictions) if result.predictions else None
        if result.top1_percent is not None and reference.top1_percent is not None:
            result.top1_drop_vs_fp32_points = reference.top1_percent - result.top1_percent
            only_reference = sum(a and not b for a, b in zip(reference.correct, result.correct))
            only_result = sum(b and not a for a, b in zip(reference.correct, result.correct))
            interval = stats.paired_difference_ci(only_reference, only_result, len(result.correct))
            if interval is not None:
                result.top1_drop_ci95_points = [100.0 * interval[0], 100.0 * interval[1]]


def _record(manifest_file: Path, results: list[ArtifactResult], dataset: Dataset, trained: bool,
            evaluated: dict[str, str], on_device: OnDevice | None = None) -> None:
    """Write the accuracy entries under the folder's lock, into the manifest as it is then (`update_manifest`).

    `evaluated` maps each artifact key to the sha256 that was run: an artifact
    rebuilt meanwhile by a convert gets no entry (its file is not the one measured).
    """
    update_manifest(Path(manifest_file).parent,
                    lambda current: _with_accuracy(current, manifest_file, results, dataset, trained, evaluated,
                                                   on_device))


def _with_accuracy(manifest: dict | None, manifest_file: Path, results: list[ArtifactResult], dataset: Dataset,
                   trained: bool, evaluated: dict[str, str], on_device: OnDevice | None = None) -> dict:
    if manifest is None:
        raise ManifestError(f"{manifest_file} disappeared or became unreadable while eval ran")
    accuracy = manifest.setdefault("accuracy", {})
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    tools = tool_versions()
    for artifact in manifest["artifacts"]:
        result = next((r for r in results if r.format == artifact["format"] and r.precision == artifact["precision"]), None)
        if (result is None or result.status not in ("ok", UNTRAINED_STATUS)
                or evaluated.get(artifact_key(artifact)) != artifact.get("sha256")):
            continue
        entry = {
            "images": result.images,
            "dataset": str(dataset.root),
            "dataset_fingerprint": dataset.fingerprint(),
            "evaluated_at": when,
            "runtime": FORMATS[result.format].runtime_tool,
            "runtime_version": tools.get(FORMATS[result.format].runtime_tool),
            "agreement_with_fp32_percent": result.agreement_with_fp32_percent,
        }
        key = artifact_key(artifact)
        if on_device is not None:
            # Measured on the device: its own key, so the host's (or the release's) figure is never replaced.
            key = f"{key}@{on_device.device_id}"
            entry |= {"device": on_device.device_id, "runtime": on_device.runtime, "runtime_version": None}
        if not trained:
            entry["meaningless"] = "weights untrained (seeded random): top-1 is chance level"
        if dataset.labelled:
            entry |= {"top1_percent": result.top1_percent, "top5_percent": result.top5_percent,
                      "top1_ci95_percent": result.top1_ci95_percent,
                      "top1_drop_vs_fp32_points": result.top1_drop_vs_fp32_points,
                      "top1_drop_ci95_points": result.top1_drop_ci95_points}
            accuracy[key] = entry
        else:  # agreement only: keep an earlier labelled measurement
            accuracy[key] = {**accuracy.get(key, {}),
                                                "agreement_with_fp32_percent": entry["agreement_with_fp32_percent"],
                                                "agreement_images": result.images,
                                                "agreement_dataset_fingerprint": entry["dataset_fingerprint"]}
    return manifest


def evaluate(models: Iterable[Path], dataset: Dataset, formats: Iterable[str] | None = None,
             progress: Callable[[], None] | None = None, on_device: OnDevice | None = None) -> list[ArtifactResult]:
    manifests = list(find_manifests([Path(m) for m in models]))
    if not manifests:
        raise ManifestError("no manifest.json under " + ", ".join(str(m) for m in models) + "; convert models first")
    results = []
    for manifest_file in manifests:
        results.extend(evaluate_manifest(manifest_file, dataset, formats, progress, on_device))
    return results
