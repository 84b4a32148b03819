"""The record schema: every record is validated against it before it is stored.

Runner output comes from a device and is untrusted; the schema is the contract
between every runner and every reader.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

from mbdeploy.errors import ResultsError

RECORD_SCHEMA = "mbdeploy.record/1"
LAYER_RECORD_SCHEMA = "mbdeploy.layer_record/1"
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
SCHEMA_FILE = SCHEMA_DIR / "record.schema.json"
LAYER_SCHEMA_FILE = SCHEMA_DIR / "layer_record.schema.json"


@lru_cache(maxsize=2)
def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def record_schema() -> dict:
    return _load(SCHEMA_FILE)


def validate_record(record: dict) -> None:
    """Raise ResultsError naming the first violation of the record schema (or a non-finite number)."""
    _validate(record, SCHEMA_FILE)


def validate_layer_record(record: dict) -> None:
    """The same for a per-layer record of `mbdeploy profile` (layers.jsonl)."""
    _validate(record, LAYER_SCHEMA_FILE)


@lru_cache(maxsize=2)
def _validator(path: Path):
    # Built once per schema: building one per record cost more than checking the record.
    import jsonschema

    return jsonschema.Draft202012Validator(_load(path))


@lru_cache(maxsize=2)
def _compiled(path: Path):
    # The verdict for every record read (records/compiled_schema.py); jsonschema only explains a rejection.
    from mbdeploy.records.compiled_schema import SchemaNotCompilable, compile_schema

    try:
        return compile_schema(_load(path))
    except SchemaNotCompilable:
        # A schema edited to use a keyword the compiler lacks (tests/test_compiled_schema.py fails
        # until it learns it): checked by jsonschema, slower but never less.
        return _validator(path).is_valid


def _validate(record: dict, path: Path) -> None:
    _check_finite(record)
    if _compiled(path)(record):  # the common case; the compiled checks agree with jsonschema's verdict
        return
    import jsonschema

    try:
        error = jsonschema.exceptions.best_match(_validator(path).iter_errors(record))
    except RecursionError:
        raise ResultsError("record rejected: nested too deeply") from None
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(record)"
        raise ResultsError(f"record rejected by the schema at {where}: {error.message}")


FLOAT_MAX = 1.7976931348623157e308


def _check_finite(record: object) -> None:
    """NaN, Infinity and integers no float can hold are not measurements (JSON Schema's `number` allows them).

    Walked with a stack, not recursion: a record is untrusted and may nest deeply. The
    first walk only looks (no paths built, it runs on every record read); a second one
    finds where the bad number is.
    """
    if _all_finite(record):
        return
    stack: list[tuple[str, object]] = [("", record)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{where}/{key}", item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{where}/{index}", item) for index, item in enumerate(value))
        elif _not_finite(value):
            text = repr(value) if isinstance(value, float) else f"an integer of {value.bit_length()} bits"
            raise ResultsError(f"record rejected at {where.lstrip('/') or '(record)'}: {text} is not a finite number")


def _not_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value) or (
        isinstance(value, int) and not isinstance(value, bool) and abs(value) > FLOAT_MAX)


def _all_finite(record: object) -> bool:
    stack = [record]
    pop, push, extend, isfinite = stack.pop, stack.append, stack.extend, math.isfinite
    while stack:
        value = pop()
        kind = type(value)
        if kind is str or value is None or kind is bool:
            continue
        if kind is dict:
            extend(value.values())
        elif kind is list:
            extend(value)
        elif kind is float:
            if not isfinite(value):
                return False
        elif kind is int:
            if value > FLOAT_MAX or value < -FLOAT_MAX:
                return False
        elif isinstance(value, (dict, list)):
            push(dict(value) if isinstance(value, dict) else list(value))
        elif _not_finite(value):
            return False
    return True
