"""Run folders and the append-only record file.

    results/<run-id>/run.json        host, tool versions, options, devices (rewritten atomically)
    results/<run-id>/results.jsonl   one record per (device, artifact, runner config), append-only
    results/<run-id>/layers.jsonl    `mbdeploy profile`: one record per layer, tied to a results.jsonl record

Every record is validated against `schemas/record.schema.json` before it is
stored: runner output comes from a device and is untrusted. Lines are
appended with one write each (`atomic.append_line`); a reader drops a last
line without its newline, so a killed process never leaves a half record
that anyone reads.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Callable

from mbdeploy.atomic import append_line, write_bytes, write_json
from mbdeploy.errors import InvalidInput, ResultsError
from mbdeploy.records.schema import validate_layer_record, validate_record

RUN_SCHEMA = "mbdeploy.run/1"
RUN_FILE = "run.json"
RECORDS_FILE = "results.jsonl"
LAYERS_FILE = "layers.jsonl"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a short random suffix."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def record_key(record: dict) -> tuple[str, str, str, str]:
    """What --resume matches on: the same device, artifact (name and bytes) and runner config.

    The name counts too: two artifacts may share bytes (a copied model) and each gets its record.
    """
    return record["device"]["id"], record["artifact"]["name"], record["artifact"]["sha256"], record["config_key"]


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a finite number")


def parse_record_line(raw: bytes) -> dict:
    """One results.jsonl line as a record; ValueError saying why it is not one.

    NaN and Infinity (which Python's json would accept), integers beyond its
    digit limit and nesting beyond its recursion limit are refused here, so a
    hostile or damaged line costs one line, never the run.
    """
    try:
        record = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as exc:  # also JSONDecodeError, UnicodeDecodeError and the int digit limit
        raise ValueError(str(exc)[:120]) from None
    if not isinstance(record, dict):
        raise ValueError(f"a JSON {type(record).__name__}, not a record object")
    return record


def read_numbered_records(path: Path, on_skip: Callable[[int, str], None] | None = None) -> list[tuple[int, dict]]:
    """(line number, record) for every whole record in a results.jsonl.

    A last line without a newline is a write cut short by a crash and is
    ignored; an unparsable line elsewhere (a damaged disk, an old full-disk
    bug, an edited file) is reported through `on_skip(line_number, reason)`
    and skipped: every other record is still read.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    whole, partial = lines[:-1], lines[-1]
    if partial and on_skip:
        on_skip(len(lines), "partial last line (interrupted write) ignored")
    records = []
    for number, raw in enumerate(whole, start=1):
        if not raw.strip():
            continue
        try:
            records.append((number, parse_record_line(raw)))
        except ValueError as exc:
            if on_skip:
                on_skip(number, f"unparsable line skipped: {exc}")
    return records


def read_records(path: Path, on_skip: Callable[[int, str], None] | None = None) -> list[dict]:
    """Every whole record in a results.jsonl (see `read_numbered_records`)."""
    return [record for _, record in read_numbered_records(path, on_skip)]


class RunFolder:
    """One run: `run.json` plus the append-only `results.jsonl`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def records_file(self) -> Path:
        return self.path / RECORDS_FILE

    @classmethod
    def create(cls, root: Path, meta: dict, run_id: str | None = None) -> "RunFolder":
        run_id = run_id or new_run_id()
        if not RUN_ID_PATTERN.match(run_id):
            raise InvalidInput(f"run id {run_id!r} may contain only letters, digits, '.', '_' and '-'")
        folder = cls(Path(root) / run_id)
        if folder.path.exists():
            raise ResultsError(f"run folder {folder.path} already exists; use --resume {run_id} to continue it")
        try:
            folder.path.mkdir(parents=True)
            write_json(folder.run_file, {"schema": RUN_SCHEMA, "run_id": run_id, "created_at": utc_now(), **meta})
        except OSError as exc:
            raise ResultsError(f"cannot create run folder {folder.path}: {exc.strerror or exc}") from None
        return folder

    @classmethod
    def open(cls, root: Path, run: str) -> "RunFolder":
        """An existing run, by id under `root` or by its folder path."""
        candidate = Path(run)
        folder = cls(candidate if (candidate / RUN_FILE).is_file() else Path(root) / run)
        if not folder.run_file.is_file():
            raise ResultsError(f"no run {run!r} under {root} (expected {folder.run_file})")
        folder.meta()  # fail early on a damaged run.json
        return folder

    def meta(self) -> dict:
        try:
            data = json.loads(self.run_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ResultsError(f"{self.run_file} is unreadable: {exc}") from None
        if data.get("schema") != RUN_SCHEMA:
            raise ResultsError(f"{self.run_file} is not an mbdeploy run (schema {RUN_SCHEMA} expected)")
        return data

    def update_meta(self, **fields: object) -> None:
        write_json(self.run_file, {**self.meta(), **fields})

    def records(self, on_skip: Callable[[int, str], None] | None = None) -> list[dict]:
        return read_records(self.records_file, on_skip)

    def recorded_keys(self) -> set[tuple[str, str, str, str]]:
        """Keys of the `ok` records: what --resume skips. A failed record (a phone unplugged, a
        crash on the device) is tried again, and its new record is appended after the old one."""
        keys = set()
        for record in self.records():
            try:
                # A session of --repeat alone is no finished artifact: its aggregate is.
                if record.get("status") == "ok" and "session" not in record:
                    keys.add(record_key(record))
            except (KeyError, TypeError, AttributeError):
                continue
        return keys

    @property
    def layers_file(self) -> Path:
        return self.path / LAYERS_FILE

    def layer_records(self, on_skip: Callable[[int, str], None] | None = None) -> list[dict]:
        return read_records(self.layers_file, on_skip)

    def recorded_layer_keys(self) -> set[tuple[str, ...]]:
        """(device id, artifact name, sha256, config key, layer name) of every `ok` layer record."""
        keys = set()
        for record in self.layer_records():
            try:
                if record.get("status") == "ok":
                    keys.add((*record_key(record), record["layer"]["name"]))
            except (KeyError, TypeError, AttributeError):
                continue
        return keys

    def append_layer(self, record: dict) -> None:
        """Validate against the layer schema, then append as one line of layers.jsonl."""
        validate_layer_record(record)
        self._append_line(self.layers_file, record)

    def _append_line(self, path: Path, record: dict) -> None:
        """One record as one line; a failed write leaves the file as it was and stops the run with how to resume."""
        try:
            append_line(path, json.dumps(record, separators=(",", ":"), allow_nan=False))
        except OSError as exc:
            raise ResultsError(
                f"cannot store a record in {path}: {exc.strerror or exc}; the run stops here with "
                f"every stored record whole: free space, then finish it with --resume {self.run_id}",
                run_id=self.run_id,
            ) from None

    def drop_partial_line(self) -> int:
        """Before appending to a run a crash interrupted, cut its half-written last line; return bytes cut.

        Only bytes after the last newline go: never a whole record. The next
        append then starts on a clean line, so every line of the file parses.
        """
        cut = 0
        for file in (self.records_file, self.layers_file):
            try:
                data = file.read_bytes()
            except FileNotFoundError:
                continue
            keep = data.rfind(b"\n") + 1
            if keep < len(data):
                os.truncate(file, keep)
                cut += len(data) - keep
        return cut

    def repair(self) -> tuple[int, Path | None]:
        """Before appending to an old run: drop every line a reader would skip; (lines dropped, .bad copy).

        A half-written last line is cut as `drop_partial_line` does. Whole lines
        that do not parse or break the schema (left by a disk that filled up
        before appends were checked, or by a hand edit) are dropped too, after
        the file as it was is kept beside it as `results.jsonl.bad`.
        """
        self.drop_partial_line()
        try:
            data = self.records_file.read_bytes()
        except FileNotFoundError:
            return 0, None
        good, dropped = [], 0
        for raw in data.split(b"\n")[:-1]:
            if not raw.strip():
                continue
            try:
                validate_record(parse_record_line(raw))
            except (ValueError, ResultsError):
                dropped += 1
                continue
            good.append(raw + b"\n")
        if not dropped:
            return 0, None
        bad = self.records_file.with_name(RECORDS_FILE + ".bad")
        number = 1
        while bad.exists():
            bad = self.records_file.with_name(f"{RECORDS_FILE}.bad.{number}")
            number += 1
        try:
            write_bytes(bad, data)
            write_bytes(self.records_file, b"".join(good))
        except OSError as exc:
            raise ResultsError(f"cannot repair {self.records_file}: {exc.strerror or exc}") from None
        return dropped, bad

    def remove_if_empty(self) -> bool:
        """Remove a run that never stored a record (only its run.json); True if it was removed."""
        try:
            if self.records_file.exists() and self.records_file.stat().st_size > 0:
                return False
            if {entry.name for entry in self.path.iterdir()} - {RUN_FILE, RECORDS_FILE}:
                return False  # something else is in there: not ours to delete
            self.records_file.unlink(missing_ok=True)
            self.run_file.unlink(missing_ok=True)
            self.path.rmdir()
        except OSError:
            return False
        return True

    def append(self, record: dict) -> None:
        """Validate, then append the record as one line; a failed write leaves the file as it was."""
        validate_record(record)
        self._append_line(self.records_file, record)
