"""The record schema: every record is validated against it before it is stored.

Runner output comes from a device and is untrusted; the schema is the contract
between every runner and every reader.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from mbdeploy.errors import ResultsError

RECORD_SCHEMA = "mbdeploy.record/1"
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "record.schema.json"


@lru_cache(maxsize=1)
def record_schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def validate_record(record: dict) -> None:
    """Raise ResultsError naming the first violation of the record schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(record_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(record))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(record)"
        raise ResultsError(f"record rejected by the schema at {where}: {error.message}")


