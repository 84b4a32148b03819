"""The compiled record checks (records/compiled_schema.py) give jsonschema's verdict, record for record.

The verdict of every fixture record, and of every mutation of them below (each
value replaced by values of every JSON kind, each key deleted, a key added to
each object, numbers pushed out of range), is compared with
jsonschema.Draft202012Validator's over both shipped schemas.
"""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from mbdeploy.architecture import ModelSpec
from mbdeploy.errors import ResultsError
from mbdeploy.records.compiled_schema import SchemaNotCompilable, compile_schema
from mbdeploy.records.schema import LAYER_SCHEMA_FILE, SCHEMA_FILE, validate_record
from support.records import fake_sha, make_record

SPEC = ModelSpec(0.25, 128)
SHA = fake_sha("x")

# One value of every JSON kind, and the edges the schemas draw lines at (bool vs int,
# 1.0 vs 1, negative vs minimum 0, empty string vs minLength 1, a 63-digit sha256).
REPLACEMENTS = (None, True, False, 0, 1, -1, 2, 0.0, 1.0, 2.0, -0.5, 1.5, 1e300, "", "x", "ok", "failed", "tflite",
                "round_robin", SHA, SHA[:-1], SHA.upper(), SHA + "\n", [], [1.0], [-1.0], ["a"], [[1.0, 2.0]],
                [[1.0, 2.0, 3.0]], [[None, None]], {}, {"a": 1})


def fixture_records() -> list[dict]:
    records = [
        make_record("r", SPEC, median=3.0),
        make_record("r", SPEC, median=3.0, energy_mj=4.0, precision="int8", fmt="onnx", kind="android"),
        make_record("r", SPEC, median=3.0, status="failed"),
        make_record("r", SPEC, median=3.0, between=0.03, throttled=True),
    ]
    full = make_record("r", SPEC, median=3.0, energy_mj=2.0)
    full.update({
        "stop_reason": "samples", "samples_ms": [2.9, 3.0, 3.1],
        "phases_ms": {"push": 10.0, "run": 200.0, "idle_power": None},
        "runner_extra": {"anything": [1, {"x": None}]},
        "session": {"index": 1, "of": 3},
        "numerics": {"probes": 3, "max_abs_diff": 1e-4, "max_logit_diff": None, "cosine": 0.999,
                     "top1_agreement": 1.0, "passed": True, "reference": "ref.npz", "failures": [], "notes": ["n"]},
        "grade": {"rule": "mlperf", "verdict": "valid", "reasons": [], "reported_ms": 3.0,
                  "early_stopping_p90_ms": 3.3, "queries": 1024, "query_seconds": 60.0},
        "thermal": {"throttle_reasons": ["cpu0 at 90 C"]},
    })
    full["device"].update(soc="Tensor G3", abi="arm64-v8a")
    full["runner"]["threads"] = None
    records.append(full)
    return records


def fixture_layer_records() -> list[dict]:
    whole = {"device_id": "host", "name": SPEC.name, "sha256": SHA, "config_key": "cfg1"}
    base = {
        "schema": "mbdeploy.layer_record/1", "run_id": "r", "status": "ok", "error": None, "whole": whole,
        "device": {"kind": "local", "id": "host"},
        "artifact": {"name": SPEC.name, "format": "tflite", "precision": "fp32", "sha256": SHA, "alpha": 0.25,
                     "resolution": 128},
        "runner": {"name": "litert", "threads": 1}, "config_key": "cfg1", "method": "single_layer",
        "layer": {"index": 0, "name": "Conv2d_0", "kind": "conv", "type": "CONV_2D", "macs": 1000, "params": 10,
                  "bytes_moved": 400, "input_shape": [1, 128, 128, 3], "output_shape": [1, 64, 64, 8]},
        "model": {"sha256": SHA, "bytes": 1000, "ops": ["CONV_2D"], "inputs": [[1, 128, 128, 3]]},
        "nodes": None, "schedule": "round_robin", "delegated": None,
        "latency_ms": {"median": 0.1, "mean": 0.11, "count": 50, "ci95_low": 0.09, "ci95_high": 0.12},
        "stop_reason": "samples", "samples_ms": [0.1, 0.11], "started_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:00:01Z",
    }
    op_profile = copy.deepcopy(base) | {"method": "op_profile", "model": None, "schedule": None,
                                        "nodes": [{"name": "conv", "ms": 0.1}], "delegated": "XNNPACK"}
    failed = copy.deepcopy(base) | {"status": "failed", "error": "timed out", "latency_ms": None}
    return [base, op_profile, failed]


def paths(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path inside a record."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append(prefix + (key,))
            found += paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append(prefix + (index,))
            found += paths(item, prefix + (index,))
    return found


def containers(value: object, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if isinstance(value, dict) else []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found += containers(item, prefix + (key,))
    return found


def at(record: object, path: tuple) -> object:
    for part in path:
        record = record[part]
    return record


def mutations(record: dict):
    """The record with one thing changed, many ways."""
    for path in paths(record):
        for value in REPLACEMENTS:
            mutated = copy.deepcopy(record)
            at(mutated, path[:-1])[path[-1]] = copy.deepcopy(value)
            yield mutated
        mutated = copy.deepcopy(record)
        del at(mutated, path[:-1])[path[-1]]
        yield mutated
    for path in containers(record):
        for value in (None, 1, "x", {}):
            mutated = copy.deepcopy(record)
            at(mutated, path)["extra_key"] = value
            yield mutated
    for value in REPLACEMENTS:
        yield value  # not a record at all


def verdicts(schema_file, records):
    schema = json.loads(schema_file.read_text())
    reference = jsonschema.Draft202012Validator(schema)
    compiled = compile_schema(schema)
    disagreements, counts = [], {True: 0, False: 0}
    for record in records:
        expected = reference.is_valid(record)
        counts[expected] += 1
        if compiled(record) != expected:
            disagreements.append((expected, record))
    return disagreements, counts


@pytest.mark.parametrize("schema_file, make", [(SCHEMA_FILE, fixture_records), (LAYER_SCHEMA_FILE, fixture_layer_records)],
                         ids=["record", "layer_record"])
def test_compiled_verdict_equals_jsonschemas_on_fixtures_and_mutations(schema_file, make):
    fixtures = make()
    disagreements, counts = verdicts(schema_file, fixtures)
    assert not disagreements and counts == {True: len(fixtures), False: 0}
    mutated = [m for record in fixtures for m in mutations(record)]
    disagreements, counts = verdicts(schema_file, mutated)
    assert not disagreements, disagreements[:3]
    # Both verdicts occur in numbers: the mutations do exercise rejections and acceptances.
    assert counts[False] > 1000 and counts[True] > 500, counts


def test_python_values_json_cannot_hold_get_jsonschemas_verdict_too():
    record = make_record("r", SPEC, median=3.0)

    class Text(str):
        pass

    cases = []
    for path, value in [(("artifact", "macs"), 10.0), (("artifact", "macs"), 10.5), (("artifact", "bytes"), True),
                        (("latency_ms", "median"), False), (("device", "kind"), Text("local")),
                        (("run_id",), Text("")), (("latency_ms",), (1, 2)), (("device",), (("kind", "local"),))]:
        mutated = copy.deepcopy(record)
        at(mutated, path[:-1])[path[-1]] = value
        cases.append(mutated)
    disagreements, _ = verdicts(SCHEMA_FILE, cases)
    assert not disagreements


@pytest.mark.parametrize("schema, refused", [
    ({"type": "object", "properties": {"a": {"maximum": 3}}}, "maximum"),
    ({"anyOf": [{"type": "null"}]}, "anyOf"),
    ({"properties": {"a": {"$ref": "#/x"}}}, "$ref"),
    ({"enum": [1, 2]}, "strings and null"),
    ({"items": [{"type": "string"}]}, "boolean or non-object"),
    ({"type": "decimal"}, "type"),
])
def test_a_keyword_the_compiler_does_not_know_is_refused_not_skipped(schema, refused):
    with pytest.raises(SchemaNotCompilable, match=refused.replace("$", r"\$")):
        compile_schema(schema)


def test_a_rejected_record_still_gets_jsonschemas_message():
    record = make_record("r", SPEC, median=3.0)
    record["artifact"]["sha256"] = "not-a-hash"
    with pytest.raises(ResultsError, match=r"at artifact/sha256: 'not-a-hash' does not match '\^\[0-9a-f\]\{64\}\$'"):
        validate_record(record)
    del record["artifact"]
    with pytest.raises(ResultsError, match=r"at \(record\): 'artifact' is a required property"):
        validate_record(record)
    record = make_record("r", SPEC, median=3.0)
    record["latency_ms"]["mean"] = float("nan")
    with pytest.raises(ResultsError, match="at latency_ms/mean: nan is not a finite number"):
        validate_record(record)
    record["latency_ms"]["mean"] = 10 ** 400
    with pytest.raises(ResultsError, match="at latency_ms/mean: an integer of 1329 bits is not a finite number"):
        validate_record(record)


def test_a_schema_the_compiler_refuses_is_still_checked_by_jsonschema(tmp_path):
    import mbdeploy.records.schema as schema_module

    path = tmp_path / "edited.schema.json"
    path.write_text(json.dumps({"type": "object", "properties": {"a": {"maximum": 3}}}))
    schema_module._validate({"a": 2}, path)
    with pytest.raises(ResultsError, match="at a: 5 is greater than the maximum of 3"):
        schema_module._validate({"a": 5}, path)
