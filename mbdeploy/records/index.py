"""The run index: a SQLite cache of runs already read and validated, beside the results folders.

The append-only results.jsonl files stay the source of truth; the index only
saves re-reading them. Each run folder is stored with the size, mtime and
inode of its results.jsonl, run.json and layers.jsonl as they were before it
was read; a run whose three files still match is served from the index (no
parse, no schema check), any other run is read from its files and stored again.

One index file per results root (the folder holding the run folders), named
`INDEX_FILE`. Deleting it is always safe: the next read rebuilds it. A damaged
index file is replaced with a warning; an index that cannot be written (a
read-only results folder) is skipped and the runs are read from their files.
SQLite, from the standard library, because what is needed is a keyed blob
store with atomic commits and safe concurrent readers, not analytic queries.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import warnings
from pathlib import Path

from mbdeploy.records.schema import LAYER_SCHEMA_FILE, SCHEMA_FILE
from mbdeploy.records.store import LAYERS_FILE, RECORDS_FILE, RUN_FILE

INDEX_FILE = ".mbdeploy-index.sqlite"
# Bumped when what the index stores changes; a record schema edit also invalidates it (see _version).
# 2: rows are decoded by orjson, so runs holding integers beyond 64 bits are no longer stored.
FORMAT = 2


def signature(folder: Path) -> str:
    """size, mtime and inode of a run's three files (a missing file counts as missing)."""
    parts = []
    for name in (RECORDS_FILE, RUN_FILE, LAYERS_FILE):
        try:
            stat = os.stat(Path(folder) / name)
            parts.append(f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}")
        except FileNotFoundError:
            parts.append("-")
    return "|".join(parts)


def _version() -> str:
    # Records validated against another schema are validated again.
    digest = hashlib.sha256(str(FORMAT).encode())
    for path in (SCHEMA_FILE, LAYER_SCHEMA_FILE):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _loads(text: str) -> object:
    """Stored JSON, decoded by orjson (the index's records are most of a large report's reading)."""
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN or Infinity, which json.dumps writes and orjson refuses
        return json.loads(text)


def _orjson_exact(*values: object) -> bool:
    """Whether orjson reads these values back as they are: it reads an integer beyond 64 bits as a float."""
    import orjson

    try:
        for value in values:
            orjson.dumps(value)
    except orjson.JSONEncodeError:  # such an integer (or text orjson cannot encode): the run is read from its files
        return False
    return True


class RunIndex:
    """The index of one results root; a context manager that commits what was stored on exit."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / INDEX_FILE
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not self.path.exists():
                return  # cannot create it here (read-only folder): read without an index
            warnings.warn(f"{self.path}: damaged run index ({exc}); rebuilt from the run folders", stacklevel=3)
            try:
                self.path.unlink(missing_ok=True)
                self._db = self._open()
            except (OSError, sqlite3.DatabaseError):
                self._db = None

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT)")
            db.execute("CREATE TABLE IF NOT EXISTS runs (folder TEXT PRIMARY KEY, signature TEXT, run_id TEXT,"
                       " meta TEXT, skipped TEXT, records TEXT, layers TEXT)")
            version = _version()
            row = db.execute("SELECT value FROM info WHERE key = 'version'").fetchone()
            if row is None or row[0] != version:
                db.execute("DELETE FROM runs")
                db.execute("INSERT OR REPLACE INTO info VALUES ('version', ?)", (version,))
            db.commit()
        except BaseException:
            db.close()
            raise
        return db

    @property
    def usable(self) -> bool:
        return self._db is not None

    def get(self, folder: Path, sig: str) -> dict | None:
        """The stored run (run_id, meta, skipped, records, layers) if its files are unchanged, else None."""
        if self._db is None:
            return None
        try:
            row = self._db.execute("SELECT signature, run_id, meta, skipped, records, layers FROM runs "
                                   "WHERE folder = ?", (Path(folder).name,)).fetchone()
        except sqlite3.DatabaseError as exc:
            self._drop(exc)
            return None
        if row is None or row[0] != sig:
            return None
        try:
            return {"run_id": row[1], "meta": _loads(row[2]), "skipped": _loads(row[3]),
                    "records": _loads(row[4]), "layers": _loads(row[5])}
        except (TypeError, ValueError) as exc:  # a row damaged inside a sound database file
            self._drop(exc)
            return None

    def current(self, folder: Path, sig: str) -> bool:
        """Whether the run is stored with this signature (`get` would serve it), without decoding it."""
        if self._db is None:
            return False
        try:
            row = self._db.execute("SELECT signature FROM runs WHERE folder = ?", (Path(folder).name,)).fetchone()
        except sqlite3.DatabaseError:
            return False  # `get` says what is wrong with it
        return row is not None and row[0] == sig

    def put(self, folder: Path, sig: str, run_id: str, meta: dict, skipped: list, records: list, layers: list) -> None:
        if self._db is None or not _orjson_exact(meta, skipped, records, layers):
            return
        try:
            self._db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (Path(folder).name, sig, run_id, json.dumps(meta), json.dumps(skipped),
                              json.dumps(records), json.dumps(layers)))
        except sqlite3.OperationalError:
            self._db = None  # read-only or locked for too long: this read goes without the index
        except sqlite3.DatabaseError as exc:
            self._drop(exc)

    def _drop(self, exc: Exception) -> None:
        warnings.warn(f"{self.path}: damaged run index ({exc}); deleted, the next read rebuilds it", stacklevel=3)
        self.close()
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass

    def close(self) -> None:
        if self._db is not None:
            try:
                self._db.commit()
            except sqlite3.DatabaseError:
                pass
            self._db.close()
            self._db = None

    def __enter__(self) -> "RunIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
