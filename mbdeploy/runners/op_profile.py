"""benchmark_model's op profile: the per-node rows of one run, from the file the tool writes.

With `--enable_op_profiling=true --op_profiling_output_mode=proto
--op_profiling_output_file=PATH` the tool writes a `tflite.profiling.
BenchmarkProfilingData` message (`tflite/profiling/proto/profiling_info.proto`;
`ProfileSummaryProtoFormatter::HandleOutput`): the initialization profile and
the runtime profile, each per subgraph and per delegate, one `OpProfileData`
per node with its timing stats in microseconds. ai_edge_litert ships the
compiled schema as `profiling_info_pb2`; its descriptor is loaded into a
private pool here (TensorFlow registers the same names globally).

Older builds print only the text tables (`parse_node_type_table`), which
give the per-type summary but no per-node rows.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from mbdeploy.errors import RunnerError

_PREFIX = re.compile(r"^\s*(?:INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG): ")


@functools.cache
def profiling_data_class():
    """The BenchmarkProfilingData message class, from the schema ai_edge_litert ships, in a pool of its own.

    Importing `ai_edge_litert.profiling_info_pb2` would register `tflite.profiling.*` in protobuf's global
    pool, and TensorFlow registers the same names from its own copy: whichever comes second then fails to
    import. So the module's serialized descriptor is read from its source (not run) into a private pool.
    """
    import ast
    import importlib.util

    from google.protobuf import descriptor_pool, message_factory

    spec = importlib.util.find_spec("ai_edge_litert.profiling_info_pb2")
    if spec is None or not spec.origin:
        raise RunnerError("reading an op profile needs ai_edge_litert (pip install ai-edge-litert, "
                          "a base dependency of mbdeploy)")
    tree = ast.parse(Path(spec.origin).read_text())
    serialized = next((node.args[0].value for node in ast.walk(tree)
                       if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile"
                       and node.args and isinstance(node.args[0], ast.Constant)), None)
    if not isinstance(serialized, bytes):
        raise RunnerError(f"{spec.origin} holds no serialized profiling_info.proto schema")
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(serialized)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tflite.profiling.BenchmarkProfilingData"))


def parse_op_profile(data: bytes, phase: str = "runtime") -> list[dict]:
    """The per-node rows of the runtime (or "init") profile in a BenchmarkProfilingData file, in run order.

    One row per node and subgraph/delegate: name, node type, run order, avg/first/min/max/std microseconds,
    count, times called, memory KB. RunnerError if the bytes are not such a message.
    """
    from google.protobuf.message import DecodeError

    message = profiling_data_class()()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise RunnerError(f"the op profile file is not a BenchmarkProfilingData message ({exc})") from None
    profile = message.runtime_profile if phase == "runtime" else message.init_profile
    rows: list[dict] = []
    for subgraph in profile.subgraph_profiles:
        where = {"subgraph": subgraph.subgraph_name or str(subgraph.subgraph_index), "delegate": None}
        rows += [_row(op, where) for op in subgraph.per_op_profiles]
    for delegate in profile.delegate_profiles:
        where = {"subgraph": None, "delegate": delegate.delegate_name}
        rows += [_row(op, where) for op in delegate.per_op_profiles]
    if not rows and len(data):
        raise RunnerError("the op profile file holds no per-node rows for the timed runs")
    return sorted(rows, key=lambda row: (row["delegate"] is not None, row["run_order"]))


def _row(op, where: dict) -> dict:
    timing = op.inference_microseconds
    return {
        "name": op.name,
        "node_type": op.node_type,
        "run_order": op.run_order,
        **where,
        "avg_us": float(timing.avg),
        "first_us": float(timing.first),
        "min_us": float(timing.min),
        "max_us": float(timing.max),
        "std_us": float(timing.stddev),
        "count": int(timing.count),
        "times_called": int(op.times_called),
        "mem_kb": float(op.mem_kb.avg),
    }


def by_node_type(rows: list[dict]) -> list[dict]:
    """The per-type summary (like the tool's `Summary by node type` table) from per-node rows."""
    nodes = [row for row in rows if row["delegate"] is None]
    total_us = sum(row["avg_us"] for row in nodes) or 1.0
    types: dict[str, dict] = {}
    for row in nodes:
        entry = types.setdefault(row["node_type"], {"node_type": row["node_type"], "count": 0, "avg_ms": 0.0,
                                                     "mem_kb": 0.0, "times_called": 0})
        entry["count"] += 1
        entry["avg_ms"] += row["avg_us"] / 1000
        entry["mem_kb"] += row["mem_kb"]
        entry["times_called"] += row["times_called"]
    table, cdf = [], 0.0
    for entry in sorted(types.values(), key=lambda e: -e["avg_ms"]):
        percent = entry["avg_ms"] * 1000 / total_us * 100
        cdf += percent
        table.append({**entry, "avg_ms": round(entry["avg_ms"], 3), "avg_percent": round(percent, 3),
                      "cdf_percent": round(cdf, 3)})
    return table


def node_type_tables(lines: list[str]) -> list[list[dict]]:
    """Every `Summary by node type` text table (StatsCalculator::GetStatsByNodeType) in `lines`, in order.

    Cells are tab-separated in current builds and space-aligned in others; a node type has no spaces
    of its own, so the last six fields of a row are its figures either way.
    """
    tables: list[list[dict]] = []
    rows: list[dict] | None = None
    for line in lines:
        text = _PREFIX.sub("", line).strip()
        if text.startswith("[Node type]"):
            rows = []
            tables.append(rows)
            continue
        if rows is None:
            continue
        fields = text.split()
        try:
            if len(fields) < 7:
                raise ValueError
            count, avg_ms, avg_pct, cdf_pct, mem_kb, called = fields[-6:]
            rows.append({
                "node_type": " ".join(fields[:-6]),
                "count": int(count),
                "avg_ms": float(avg_ms),
                "avg_percent": float(avg_pct.rstrip("%")),
                "cdf_percent": float(cdf_pct.rstrip("%")),
                "mem_kb": float(mem_kb),
                "times_called": int(called),
            })
        except ValueError:
            rows = None  # the table ended
    return [table for table in tables if table]
