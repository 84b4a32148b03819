"""An on-device op profile (benchmark_model, the benchmark APK) mapped to the plan's layers.

The row shape is upstream's `OpProfileData` (LiteRT `profiling_info.proto`,
which the tools write with `--op_profiling_output_mode=proto`), one row per
profiled node in run order:

    {"name": "[<output tensor>, ...]:<node index>", "node_type": "CONV_2D",
     "run_order": 3, "avg_us": 812.0, "count": 50}

Names follow upstream's ProfileSummarizer (`tensorflow/lite/profiling/
profile_summarizer.cc`): a node is named by its output tensors and its node
index; a delegate kernel is one node (type e.g. `TfLiteXNNPackDelegate`)
named by the partition's outputs; events a delegate reports from inside
(`DelegateOpInvoke`, named `Delegate/<op>:<n>`) are not graph nodes and are
left out here, as are rows a runner marks with the `delegate` that profiled them
(the proto's `delegate_profiles`). The Android runners put these rows in
`runner_extra["op_profile"]` (issue 11's pulled profile file).

Mapping: each node's output tensors name the artifact's op that produced them,
hence its layer (`slicing.map_layers`). A node typed by one of the graph's ops
gives its layer its time (a layer of several ops sums its nodes); a delegate node that swallowed several layers gives them no
individual time, and each of those layers says which node swallowed it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mbdeploy.errors import RunnerError
from mbdeploy.profile.slicing import GraphLayer

DELEGATE_INTERNAL = "DelegateOpInvoke"


@dataclass
class LayerTime:
    graph_layer: GraphLayer
    avg_ms: float | None
    count: int | None
    nodes: list[dict]
    delegated: str | None  # "<node type> <node name> (first..last layer)" when a delegate node swallowed it


def node_outputs(name: str) -> list[str]:
    """`[a, b]:12` -> ["a", "b"]; RunnerError for a name not in upstream's shape."""
    head, sep, index = name.rpartition(":")
    if not sep or not index.isdigit() or not (head.startswith("[") and head.endswith("]")):
        raise RunnerError(f"op profile node name {name!r} is not of the form [tensor, ...]:index")
    return [part for part in head[1:-1].split(", ") if part]


def map_nodes(rows: list[dict], graph_layers: list[GraphLayer]) -> list[LayerTime]:
    """One entry per layer, in plan order, from node rows in run order."""
    layer_of_tensor = {}
    for position, graph_layer in enumerate(graph_layers):
        for tensor in graph_layer.tensors:
            layer_of_tensor[tensor] = position
    # A node typed by one of the graph's own ops ran that op; any other node type is a delegate's kernel.
    builtin = {name for g in graph_layers for name in g.op_names}
    result = [LayerTime(g, None, None, [], None) for g in graph_layers]
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    covered = -1  # the last layer a node reached, in plan order
    # A delegate's own profile of what ran inside it (rows with `delegate` set) is not graph nodes.
    nodes = [r for r in rows if r.get("node_type") != DELEGATE_INTERNAL and not r.get("delegate")]
    for row in sorted(nodes, key=lambda r: r["run_order"]):
        outputs = node_outputs(str(row["name"]))
        reached = [layer_of_tensor[t] for t in outputs if t in layer_of_tensor]
        if not reached:
            raise RunnerError(f"op profile node {row['name']} produces no tensor of the model's layers")
        last = max(reached)
        delegate = str(row["node_type"]).split("/")[0] not in builtin
        first = covered + 1 if delegate and last > covered else last
        span = range(first, last + 1)
        avg_ms = float(row["avg_us"]) / 1e3
        if len(span) == 1:
            sums[last] = sums.get(last, 0.0) + avg_ms
            counts[last] = int(row.get("count") or 0)
            result[last].nodes.append(row)
        else:
            label = (f"{row['node_type']} {row['name']} ({graph_layers[first].layer.name}.."
                     f"{graph_layers[last].layer.name})")
            for position in span:
                result[position].delegated = label
                result[position].nodes.append(row)
        covered = max(covered, last)
    for position, total in sums.items():
        if result[position].delegated is None:
            result[position].avg_ms, result[position].count = total, counts[position]
    missing = [r.graph_layer.layer.name for r in result if not r.nodes]
    if missing:
        raise RunnerError(f"the op profile has no node for layer(s) {', '.join(missing)}")
    return result


def profiling_proto():
    """LiteRT's generated `profiling_info_pb2`; TensorFlow's copy when TF registered the same proto first."""
    import sys

    loaded = sys.modules.get("tensorflow.lite.profiling.proto.profiling_info_pb2")
    if loaded is not None:
        return loaded
    from ai_edge_litert import profiling_info_pb2

    return profiling_info_pb2


def rows_from_proto(data: bytes) -> list[dict]:
    """Node rows of subgraph 0's runtime profile from a `BenchmarkProfilingData` proto file."""
    message = profiling_proto().BenchmarkProfilingData()
    try:
        message.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise RunnerError(f"the op profile file is not a BenchmarkProfilingData proto: {exc}") from None
    graphs = [g for g in message.runtime_profile.subgraph_profiles if g.subgraph_index == 0]
    if not graphs:
        raise RunnerError("the op profile file holds no runtime profile of subgraph 0")
    return [{"name": op.name, "node_type": op.node_type, "run_order": int(op.run_order),
             "avg_us": float(op.inference_microseconds.avg), "count": int(op.inference_microseconds.count)}
            for op in graphs[0].per_op_profiles]
