"""Which artifacts a bench times: manifest entries (checked against their digest) and plain model files."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from mbdeploy.atomic import sha256_file
from mbdeploy.errors import InvalidInput, ManifestError
from mbdeploy.formats import FORMAT_NAMES, PLAIN_SUFFIXES
from mbdeploy.manifest import MANIFEST_NAME, artifact_digest, artifact_file, checked_artifact, find_manifests, load_manifest


@dataclass
class Artifact:
    """One model file to time, with what its manifest (or `inspect`) says about it."""

    name: str
    format: str
    precision: str
    path: Path
    sha256: str
    bytes: int
    macs: int | None = None
    params: int | None = None
    alpha: float | None = None
    resolution: int | None = None
    manifest: str | None = None
    weights_source: str | None = None
    probes: Path | None = None  # the model's probe inputs and reference outputs from convert (bench --check-outputs)

    def record_fields(self) -> dict:
        fields = asdict(self)
        fields.pop("path")
        fields.pop("probes")
        return fields


def _inspect_counts(path: Path) -> dict:
    """MACs/params/precision of a plain model file, read by `mbdeploy.inspection`."""
    from mbdeploy.inspection import inspect_tflite

    try:
        return inspect_tflite(path)
    except Exception:  # noqa: BLE001 - an uninspectable file is still benchable; counts stay null
        return {}


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _from_manifest(manifest_file: Path, manifest: dict, entry: dict) -> Artifact:
    path, size, digest = checked_artifact(manifest_file, entry)
    spec = manifest.get("spec", {})
    return Artifact(
        name=manifest["name"], format=entry["format"], precision=str(entry["precision"]), path=path,
        sha256=digest, bytes=size,
        macs=_int_or_none(entry.get("macs", manifest.get("macs"))),
        params=_int_or_none(entry.get("params", manifest.get("params"))),
        alpha=spec.get("alpha"), resolution=spec.get("resolution"), manifest=str(manifest_file),
        weights_source=(manifest.get("weights") or {}).get("source"),
        probes=probes_file(manifest_file, manifest),
    )


def probes_file(manifest_file: Path, manifest: dict) -> Path | None:
    """The probes file convert wrote beside the manifest (inside its folder), if it names one that exists."""
    entry = manifest.get("probes")
    name = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        return None  # a bare file name beside the manifest, nothing else
    path = artifact_file(manifest_file, entry)
    if not path.is_file() or not isinstance(entry.get("sha256"), str):
        return None  # no digest to hold it to: the outputs are then not checked (the record says why)
    if sha256_file(path) != entry["sha256"]:
        raise ManifestError(f"{path} changed since {manifest_file} was written (sha256 differs); convert it again")
    return path


def _plain(path: Path) -> Artifact:
    counts = _inspect_counts(path)
    size, digest = artifact_digest(path)
    return Artifact(
        name=path.stem, format=PLAIN_SUFFIXES[path.suffix], precision=str(counts.get("precision") or "unknown"),
        path=path, sha256=digest, bytes=size,
        macs=_int_or_none(counts.get("macs")), params=_int_or_none(counts.get("params")),
    )


def _under_a_manifest(path: Path, root: Path) -> bool:
    folder = path.parent
    while True:
        if (folder / MANIFEST_NAME).is_file():
            return True
        if folder == root or folder == folder.parent:
            return False
        folder = folder.parent


def collect_artifacts(paths: Sequence[Path], precisions: Sequence[str] | None = None,
                      formats: Sequence[str] = ("tflite",)) -> list[Artifact]:
    """Artifacts listed by manifests under `paths`, plus plain model files named directly or in folders without one."""
    bad = sorted(set(formats) - set(FORMAT_NAMES))
    if bad:
        raise InvalidInput(f"unknown format(s) {bad}; allowed: {', '.join(FORMAT_NAMES)}")
    found: list[Artifact] = []
    listed: set[Path] = set()
    plain: list[Path] = []
    for root in map(Path, paths):
        if not root.exists():
            raise InvalidInput(f"--models {root} does not exist")
        manifests = list(find_manifests([root]))
        if root.is_file() and root.name != "manifest.json":
            beside = root.parent / "manifest.json"
            manifests = [beside] if beside.is_file() else []
            plain.append(root)
        elif root.is_dir():
            # Where a manifest exists, it says what the folder holds: a stray or superseded file
            # beside it (or below it) is not timed as a plain file. A plain file the user names is.
            plain += sorted(p for p in root.rglob("*") if p.suffix in PLAIN_SUFFIXES and p.is_file()
                            and not _under_a_manifest(p, root))
        for manifest_file in manifests:
            manifest = load_manifest(manifest_file)
            for entry in manifest["artifacts"]:
                path = artifact_file(manifest_file, entry).resolve()
                listed.add(path)
                if root.is_file() and root.name != "manifest.json" and path != root.resolve():
                    continue  # a single file was named: only its own entry
                if entry.get("format") not in formats or (precisions and str(entry.get("precision")) not in precisions):
                    continue  # not asked for: neither hashed nor checked
                found.append(_from_manifest(manifest_file, manifest, entry))
    for path in plain:
        if path.resolve() not in listed and path.suffix in PLAIN_SUFFIXES:
            found.append(_plain(path))
    unique = {(a.sha256, a.format, a.precision, a.name): a for a in found}
    chosen = [a for a in unique.values() if a.format in formats and (not precisions or a.precision in precisions)]
    return sorted(chosen, key=lambda a: (a.name, a.format, a.precision))
