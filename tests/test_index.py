"""The run index (records/index.py): unchanged runs are served from it, changed ones re-read, a lost or
damaged index is rebuilt."""

from __future__ import annotations

import warnings

import pytest

from mbdeploy.architecture import ModelSpec
from mbdeploy.records import reader
from mbdeploy.records.index import INDEX_FILE
from support.records import make_record, write_run

SPEC = ModelSpec(0.25, 128)


@pytest.fixture
def parses(monkeypatch):
    """How many results.jsonl / layers.jsonl files the reader parsed."""
    seen: list[str] = []
    real = reader.read_numbered_records

    def counting(path, on_skip=None):
        seen.append(path.name)
        return real(path, on_skip)

    monkeypatch.setattr(reader, "read_numbered_records", counting)
    return seen


def _runs(root, count=2):
    for i in range(count):
        write_run(root, f"run-{i}", [make_record(f"run-{i}", SPEC, median=3.0 + i, device=f"dev{i}")])


def test_an_unchanged_run_is_not_parsed_again_and_a_changed_one_is(tmp_path, parses):
    _runs(tmp_path)
    first = reader.load_runs([tmp_path])
    assert parses.count("results.jsonl") == 2 and (tmp_path / INDEX_FILE).is_file()
    parses.clear()
    again = reader.load_runs([tmp_path])
    assert parses == []
    assert [r.records for r in again] == [r.records for r in first]
    assert [r.meta for r in again] == [r.meta for r in first]
    # One run gains a record (append-only, as bench writes): only that run is read again.
    with (tmp_path / "run-1" / "results.jsonl").open("a") as out:
        import json
        out.write(json.dumps(make_record("run-1", SPEC, median=9.0, device="dev1", fmt="onnx")) + "\n")
    third = reader.load_runs([tmp_path])
    assert parses.count("results.jsonl") == 1
    assert len(third[1].records) == 2 and third[1].records[1]["latency_ms"]["median"] == 9.0
    # A new run folder is read; the others are not.
    parses.clear()
    write_run(tmp_path, "run-9", [make_record("run-9", SPEC, median=1.0)])
    assert len(reader.load_runs([tmp_path])) == 3 and parses.count("results.jsonl") == 1


def test_a_deleted_index_is_rebuilt(tmp_path, parses):
    _runs(tmp_path)
    reader.load_runs([tmp_path])
    (tmp_path / INDEX_FILE).unlink()
    parses.clear()
    assert len(reader.load_runs([tmp_path])) == 2
    assert parses.count("results.jsonl") == 2 and (tmp_path / INDEX_FILE).is_file()
    parses.clear()
    reader.load_runs([tmp_path])
    assert parses == []


def test_a_damaged_index_is_rebuilt_with_a_warning(tmp_path, parses):
    _runs(tmp_path)
    reader.load_runs([tmp_path])
    (tmp_path / INDEX_FILE).write_bytes(b"not a database at all" * 100)
    parses.clear()
    with pytest.warns(UserWarning, match="damaged run index"):
        runs = reader.load_runs([tmp_path])
    assert [len(r.records) for r in runs] == [1, 1] and parses.count("results.jsonl") == 2
    parses.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reader.load_runs([tmp_path])
    assert parses == []


def test_a_damaged_row_in_a_sound_index_file_is_rebuilt_with_a_warning(tmp_path, parses):
    import sqlite3

    _runs(tmp_path)
    reader.load_runs([tmp_path])
    db = sqlite3.connect(tmp_path / INDEX_FILE)
    db.execute("UPDATE runs SET meta = '{not json'")
    db.commit()
    db.close()
    parses.clear()
    with pytest.warns(UserWarning, match="damaged run index"):
        runs = reader.load_runs([tmp_path])
    assert [len(r.records) for r in runs] == [1, 1] and parses.count("results.jsonl") == 2


def test_a_bad_line_warns_every_time_even_from_the_index(tmp_path, parses):
    path = write_run(tmp_path, "run-0", [make_record("run-0", SPEC, median=3.0)])
    with (path / "results.jsonl").open("a") as out:
        out.write("{broken\n")
    for _ in range(2):
        with pytest.warns(UserWarning, match=r"results.jsonl:2: unparsable line skipped"):
            runs = reader.load_runs([tmp_path])
        assert len(runs[0].records) == 1
    assert parses.count("results.jsonl") == 1  # the second read came from the index


def test_a_read_only_results_folder_is_read_without_an_index(tmp_path, parses):
    import os

    _runs(tmp_path)
    os.chmod(tmp_path, 0o555)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert len(reader.load_runs([tmp_path])) == 2
    finally:
        os.chmod(tmp_path, 0o755)
    assert not (tmp_path / INDEX_FILE).exists()


def test_a_run_is_served_from_the_index_exactly_as_read_including_what_orjson_refuses(tmp_path, parses):
    import json
    import math

    record = make_record("run-0", SPEC, median=3.0, device="dev0")
    record["device"]["label"] = "caf\u00e9 \U0001f4f1"  # non-ASCII text survives the round trip
    folder = write_run(tmp_path, "run-0", [record])
    # run.json is the user's to annotate and is not schema-checked: json writes NaN, orjson refuses it.
    meta = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**meta, "ambient_c": float("nan")}))
    first = reader.load_runs([tmp_path])
    parses.clear()
    again = reader.load_runs([tmp_path])
    assert parses == []  # from the index
    assert again[0].records == first[0].records and again[0].records[0]["device"]["label"] == "caf\u00e9 \U0001f4f1"
    assert math.isnan(again[0].meta["ambient_c"]) and math.isnan(first[0].meta["ambient_c"])


def test_an_integer_beyond_64_bits_is_read_as_the_integer_it_is_every_time(tmp_path, parses):
    import json

    folder = write_run(tmp_path, "run-0", [make_record("run-0", SPEC, median=3.0, device="dev0")])
    meta = json.loads((folder / "run.json").read_text())  # run.json is the user's to annotate
    (folder / "run.json").write_text(json.dumps({**meta, "ci_job": 2**64, "offset": -(2**63) - 1}))
    for _ in range(2):
        run = reader.load_runs([tmp_path])[0]
        assert (run.meta["ci_job"], run.meta["offset"]) == (2**64, -(2**63) - 1)
        assert type(run.meta["ci_job"]) is int and type(run.meta["offset"]) is int  # orjson reads both as floats
