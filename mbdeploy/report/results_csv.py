"""A report's results.csv, with the rows of unchanged runs copied from the previous report's.

After one new run, a report over 30,000 records would format 29,400 rows exactly as
last time. Each run's rows are a slice of results.csv, keyed by what they are made
of: the run folder and its files' signature when read (records/index.py), a digest
of every manifest the rows took figures from, the --device/--model focus, and the
code that makes and writes rows. The report folder keeps `CACHE_FILE` with each
slice's key, offset, length and sha256; the next report into the same folder copies a
slice whose key matches and whose bytes are intact, and formats the others (a new or
changed run, a changed manifest, a damaged file). Deleting the file, or the report,
is safe: every row is formatted again.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from mbdeploy.atomic import read_regular_file, write_bytes, write_text
from mbdeploy.records.reader import COLUMNS, csv_header, csv_lines

CACHE_FILE = ".mbdeploy-csv.json"
CSV_FILE = "results.csv"
# What decides a row's cells: the records package (reader, stats, sessions, ...), the
# release table, the model naming, and this module.
_CODE = ("records", "published.py", "architecture.py", "report/results_csv.py")


@lru_cache(maxsize=1)
def _code() -> str:
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(json.dumps(COLUMNS).encode())
    for name in _CODE:
        path = root / name
        for source in sorted(path.glob("*.py")) if path.is_dir() else [path]:
            digest.update(source.read_bytes())
    return digest.hexdigest()


def chunk_key(run, manifests_digest: str, focus: tuple) -> str:  # noqa: ANN001 - reader.Run
    """What one run's rows in results.csv are made of."""
    if not run.signature:
        return ""  # read without a signature: never reused
    text = json.dumps([_code(), str(Path(run.path).resolve()), run.signature, manifests_digest, list(focus)])
    return hashlib.sha256(text.encode()).hexdigest()


def write_results_csv(out_dir: Path, previous: Path | None, chunks: list[tuple[str, list[dict]]],
                      tail: list[dict]) -> list[str]:
    """Write out_dir/results.csv: the header, each (key, rows) chunk in order, then `tail` (always formatted).

    A chunk whose key the previous report's cache lists is copied from its results.csv.
    Returns the keys of the chunks that were formatted.
    """
    old = _read_entries(previous / CACHE_FILE) if previous is not None else {}
    old_csv: bytes | None = None
    parts = [csv_header().encode()]
    offset = len(parts[0])
    entries: dict[str, list] = {}
    formatted = []
    for key, rows in chunks:
        data = None
        entry = old.get(key) if key else None
        if entry is not None:
            if old_csv is None:
                old_csv = read_regular_file(previous / CSV_FILE) or b""  # never a FIFO or a link out
            data = _slice(old_csv, entry)
        if data is None:
            data = csv_lines(rows).encode()
            formatted.append(key)
        if key and key not in entries:
            entries[key] = [offset, len(data), hashlib.sha256(data).hexdigest()]
        parts.append(data)
        offset += len(data)
    parts.append(csv_lines(tail).encode())
    write_bytes(out_dir / CSV_FILE, b"".join(parts))
    write_text(out_dir / CACHE_FILE, json.dumps(entries) + "\n")
    return formatted


def _slice(data: bytes, entry: object) -> bytes | None:
    """The entry's bytes of the previous results.csv, if they are still what was written."""
    try:
        start, length, sha = int(entry[0]), int(entry[1]), str(entry[2])
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    piece = data[start:start + length]
    if len(piece) != length or hashlib.sha256(piece).hexdigest() != sha:  # edited or damaged since
        return None
    return piece


def _read_entries(path: Path) -> dict:
    data = read_regular_file(path)
    try:
        entries = json.loads(data) if data is not None else {}
    except ValueError:
        return {}
    return entries if isinstance(entries, dict) else {}
