"""Our record schemas compiled into plain Python checks, for reading thousands of records.

jsonschema walks the schema afresh for every record (~0.3 ms a record: 11 s of a
30,000-record first read; these checks take ~0.01 ms). `compile_schema` turns a
schema into nested closures, once, that check exactly the keywords our two
schemas use, with the meaning
JSON Schema 2020-12 (and jsonschema) gives them. A keyword it does not know is
refused when compiling (`SchemaNotCompilable`), so a schema edit can never skip a
check silently: the edit fails loudly until this module learns the keyword.

Only the verdict comes from here. A record it rejects is handed to jsonschema
for the message (records/schema.py), so a message is as helpful as before and a
rejection is always confirmed by jsonschema. tests/test_compiled_schema.py checks
that the verdicts equal jsonschema's on every fixture record and on many mutations.
"""

from __future__ import annotations

import numbers
import re
from typing import Callable

Check = Callable[[object], bool]

# Keywords that describe and never constrain.
ANNOTATIONS = frozenset({"$schema", "$id", "title", "description"})
KEYWORDS = frozenset({"type", "const", "enum", "minLength", "pattern", "minimum", "maxItems", "items",
                      "required", "properties", "additionalProperties", "oneOf"}) | ANNOTATIONS


class SchemaNotCompilable(ValueError):
    """The schema uses a keyword (or a form of one) this compiler does not implement."""


def compile_schema(schema: dict) -> Check:
    """A function telling whether a value is valid under the schema (True/False, no message)."""
    return _compile(schema, "#")


def _is_number(value: object) -> bool:
    # jsonschema: any numbers.Number except bool (bool is an int in Python, not in JSON).
    return type(value) in (int, float) or (not isinstance(value, bool) and isinstance(value, numbers.Number))


def _is_integer(value: object) -> bool:
    # Draft 6 onwards: 1.0 is an integer; True is not.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


TYPES: dict[str, tuple[tuple[type, ...], Check]] = {
    # name -> (exact types accepted at once, the full test for anything else)
    "object": ((dict,), lambda v: isinstance(v, dict)),
    "array": ((list,), lambda v: isinstance(v, list)),
    "string": ((str,), lambda v: isinstance(v, str)),
    "null": ((type(None),), lambda v: v is None),
    "boolean": ((bool,), lambda v: isinstance(v, bool)),
    "integer": ((int,), _is_integer),
    "number": ((int, float), _is_number),
}


def _all(checks: list[Check]) -> Check:
    if not checks:
        return lambda value: True
    if len(checks) == 1:
        return checks[0]

    def check(value: object) -> bool:
        for one in checks:
            if not one(value):
                return False
        return True

    return check


def _compile(schema: object, where: str) -> Check:
    if not isinstance(schema, dict):
        raise SchemaNotCompilable(f"{where}: a boolean or non-object schema is not supported")
    unknown = sorted(set(schema) - KEYWORDS)
    if unknown:
        raise SchemaNotCompilable(f"{where}: keyword(s) {', '.join(unknown)} not supported by the compiled "
                                  f"checks (supported: {', '.join(sorted(KEYWORDS))})")
    checks: list[Check] = []
    if "type" in schema:
        checks.append(_type(schema["type"], where))
    if "const" in schema:
        checks.append(_enum([schema["const"]], f"{where}/const"))
    if "enum" in schema:
        checks.append(_enum(schema["enum"], f"{where}/enum"))
    if "minLength" in schema or "pattern" in schema:
        checks.append(_string(schema.get("minLength"), schema.get("pattern"), where))
    if "minimum" in schema:
        checks.append(_minimum(schema["minimum"], where))
    if "maxItems" in schema or "items" in schema:
        checks.append(_array(schema.get("maxItems"), schema.get("items"), where))
    if {"required", "properties", "additionalProperties"} & set(schema):
        checks.append(_object(schema, where))
    if "oneOf" in schema:
        checks.append(_one_of(schema["oneOf"], where))
    return _all(checks)


def _type(names: object, where: str) -> Check:
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names or any(name not in TYPES for name in names):
        raise SchemaNotCompilable(f"{where}/type: {names!r} is not a type name or a list of them")
    exact = frozenset(t for name in names for t in TYPES[name][0])
    tests = [TYPES[name][1] for name in names]

    def check(value: object) -> bool:
        if type(value) in exact:  # the common case: a plain JSON value
            return True
        for test in tests:
            if test(value):
                return True
        return False

    return check


def _enum(members: object, where: str) -> Check:
    # Strings and null only: jsonschema's equality between other kinds (1 == 1.0, True != 1,
    # lists, objects) is not worth reimplementing for schemas that do not use it.
    if not isinstance(members, list) or any(m is not None and not isinstance(m, str) for m in members):
        raise SchemaNotCompilable(f"{where}: only strings and null are supported as allowed values")
    strings = frozenset(m for m in members if m is not None)
    null = None in members

    def check(value: object) -> bool:
        if value is None:
            return null
        return isinstance(value, str) and value in strings

    return check


def _string(min_length: object, pattern: object, where: str) -> Check:
    if min_length is not None and (not isinstance(min_length, int) or isinstance(min_length, bool)):
        raise SchemaNotCompilable(f"{where}/minLength: {min_length!r} is not an integer")
    if pattern is not None and not isinstance(pattern, str):
        raise SchemaNotCompilable(f"{where}/pattern: {pattern!r} is not a string")
    regex = re.compile(pattern) if pattern is not None else None  # jsonschema uses re.search too
    shortest = min_length or 0

    def check(value: object) -> bool:
        if not isinstance(value, str):
            return True
        return len(value) >= shortest and (regex is None or regex.search(value) is not None)

    return check


def _minimum(minimum: object, where: str) -> Check:
    if not _is_number(minimum):
        raise SchemaNotCompilable(f"{where}/minimum: {minimum!r} is not a number")

    def check(value: object) -> bool:
        return not _is_number(value) or not value < minimum

    return check


def _array(max_items: object, items: object, where: str) -> Check:
    if max_items is not None and (not isinstance(max_items, int) or isinstance(max_items, bool)):
        raise SchemaNotCompilable(f"{where}/maxItems: {max_items!r} is not an integer")
    each = _compile(items, f"{where}/items") if items is not None else None

    def check(value: object) -> bool:
        if not isinstance(value, list):
            return True
        if max_items is not None and len(value) > max_items:
            return False
        if each is not None:
            for item in value:
                if not each(item):
                    return False
        return True

    return check


def _object(schema: dict, where: str) -> Check:
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
        raise SchemaNotCompilable(f"{where}/required: not a list of names")
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise SchemaNotCompilable(f"{where}/properties: not an object")
    named = {name: _compile(sub, f"{where}/properties/{name}") for name, sub in properties.items()}
    additional_schema = schema.get("additionalProperties", True)
    if additional_schema is True:
        other: Check | None = None
    elif additional_schema is False:
        other = lambda value: False  # noqa: E731 - no property beyond the named ones
    else:
        other = _compile(additional_schema, f"{where}/additionalProperties")
    required = tuple(required)

    def check(value: object) -> bool:
        if not isinstance(value, dict):
            return True
        for name in required:
            if name not in value:
                return False
        for name, item in value.items():
            one = named.get(name)
            if one is None:
                if other is not None and not other(item):
                    return False
            elif not one(item):
                return False
        return True

    return check


def _one_of(subschemas: object, where: str) -> Check:
    if not isinstance(subschemas, list) or not subschemas:
        raise SchemaNotCompilable(f"{where}/oneOf: not a non-empty list of schemas")
    options = [_compile(sub, f"{where}/oneOf/{i}") for i, sub in enumerate(subschemas)]

    def check(value: object) -> bool:
        return sum(1 for option in options if option(value)) == 1

    return check
