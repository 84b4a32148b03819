"""Single-layer models: each layer of a .tflite alone, as its own small .tflite.

The layers come from the plan (`layer_accounting.profile_layers`) and are
found in the artifact's graph in node order: every convolution, the pooling
and the softmax anchor one layer; helper ops join the layer they serve (a
weight's DEQUANTIZE in an fp16 model joins the convolution that reads it, the
squeeze after the classifier joins `Logits`). Each anchor's output shape must
be the plan's, so a graph that is not this plan's MobileNet is refused, not
mislabelled.

A single-layer model is cut out of the artifact itself: the layer's ops, its
tensors with their shapes, types and quantization parameters, and its
weights' bytes. So it has the artifact's format and precision, and an int8
layer runs with the artifact's own scales and zero points, not ones
calibrated again. Only the host reads and writes flatbuffers here (with the
schema module LiteRT ships); the device's runner times the result as it
times any model.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path

from mbdeploy.architecture import ModelSpec
from mbdeploy.atomic import write_bytes
from mbdeploy.errors import InvalidInput
from mbdeploy.layer_accounting import ProfileLayer, profile_layers

# Graph op -> the layer kinds it can anchor, in node order.
ANCHORS = {
    "CONV_2D": ("conv", "pointwise", "logits"),
    "DEPTHWISE_CONV_2D": ("depthwise",),
    "FULLY_CONNECTED": ("logits",),
    "AVERAGE_POOL_2D": ("pool",),
    "MEAN": ("pool",),
    "SOFTMAX": ("softmax",),
}


@dataclass(frozen=True)
class GraphLayer:
    """Where one profile layer sits in an artifact's graph."""

    layer: ProfileLayer
    ops: tuple[int, ...]  # operator indices in the artifact's subgraph 0, in node order
    op_names: tuple[str, ...]
    tensors: tuple[str, ...]  # names of every tensor the layer's ops produce in the artifact


@dataclass(frozen=True)
class SingleLayerModel:
    layer: ProfileLayer
    path: Path
    sha256: str
    bytes: int
    ops: tuple[str, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    input_dtypes: tuple[str, ...]
    input_quantization: tuple[dict | None, ...]  # (scale, zero point) per input, as the artifact has them


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def read_model(path: Path):
    """The artifact's flatbuffer as the schema's object tree (ModelT)."""
    schema = _schema()
    data = Path(path).read_bytes()
    if not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise InvalidInput(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    if not model.subgraphs:
        raise InvalidInput(f"{path} has no subgraph")
    return model


def _op_names(model) -> list[str]:
    schema = _schema()
    names = {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
    found = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        # Codes below 127 live in the deprecated byte; the wider field holds the rest.
        found.append(names.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"CODE_{code.builtinCode}"))
    return found


def graph_classes(model) -> int:
    """The classes a graph outputs (the last axis of its output)."""
    graph = model.subgraphs[0]
    return int(graph.tensors[graph.outputs[0]].shape[-1])


def spec_from_graph(model) -> ModelSpec:
    """The family member a graph is, read off its tensors (for a model file without a manifest).

    Resolution from the input, classes from the output, alpha from the last
    pointwise layer's width (1024 x alpha; Slim's widths all divide 1024, so
    every layer's width follows). `map_layers` then checks every layer's shape.
    """
    graph = model.subgraphs[0]
    names = _op_names(model)
    source = graph.tensors[graph.inputs[0]].shape
    sink = graph.tensors[graph.outputs[0]].shape
    pools = [i for i, name in enumerate(names) if name in ("AVERAGE_POOL_2D", "MEAN")]
    if len(source) != 4 or source[1] != source[2] or not pools:
        raise InvalidInput("the model is not a MobileNet v1 of the plan (no square NHWC input and pooling)")
    width = int(graph.tensors[graph.operators[pools[0]].inputs[0]].shape[-1])
    try:
        return ModelSpec(width / 1024, int(source[1]), graph_classes(model))
    except InvalidInput as exc:
        raise InvalidInput(f"the model is not a MobileNet v1 of the plan: {exc.message}") from None


def _is_constant(model, tensor_index: int) -> bool:
    graph = model.subgraphs[0]
    buffer = model.buffers[graph.tensors[tensor_index].buffer]
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


def _name(tensor) -> str:
    name = tensor.name
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")


def map_layers(model, layers: list[ProfileLayer], source: str = "the model") -> list[GraphLayer]:
    """Each profile layer's ops in the graph, anchors matched to the plan in node order."""
    graph = model.subgraphs[0]
    names = _op_names(model)
    producers: dict[int, int] = {}
    consumers: dict[int, list[int]] = {}
    for index, op in enumerate(graph.operators):
        for tensor in op.outputs:
            producers[int(tensor)] = index
        for tensor in op.inputs:
            if tensor >= 0:
                consumers.setdefault(int(tensor), []).append(index)

    owner: dict[int, int] = {}  # op index -> profile layer index
    anchors = [i for i, name in enumerate(names) if name in ANCHORS]
    if len(anchors) != len(layers):
        raise InvalidInput(f"{source} has {len(anchors)} convolution/pool/softmax ops where the plan of this model "
                           f"has {len(layers)} layers; it is not the plan's MobileNet v1")
    for op_index, layer in zip(anchors, layers):
        op = graph.operators[op_index]
        shape = tuple(int(d) for d in graph.tensors[op.outputs[0]].shape)
        if layer.kind not in ANCHORS[names[op_index]] or _squeezed(shape) != _squeezed(layer.output_shape):
            raise InvalidInput(f"{source}: op {op_index} ({names[op_index]}, output {list(shape)}) does not match "
                               f"plan layer {layer.name} ({layer.type}, output {list(layer.output_shape)})")
        owner[op_index] = layer.index
    # Helper ops: one fed only by constants serves its consumer; any other joins the layer of its input
    # (or, at the graph's input, the layer it feeds).
    pending = [i for i in range(len(graph.operators)) if i not in owner]
    for _ in range(len(pending) + 1):
        left = []
        for index in pending:
            op = graph.operators[index]
            feeding = [int(t) for t in op.inputs if t >= 0 and not _is_constant(model, int(t))]
            if not feeding:
                targets = [c for t in op.outputs for c in consumers.get(int(t), [])]
            else:
                targets = [producers[t] for t in feeding if t in producers] or \
                          [c for t in op.outputs for c in consumers.get(int(t), [])]
            known = [owner[t] for t in targets if t in owner]
            if known:
                owner[index] = known[0]
            else:
                left.append(index)
        if not left:
            break
        pending = left
    else:
        raise InvalidInput(f"{source}: ops {pending} belong to no layer")
    result = []
    for layer in layers:
        ops = tuple(i for i in range(len(graph.operators)) if owner.get(i) == layer.index)
        produced = [int(t) for i in ops for t in graph.operators[i].outputs]
        result.append(GraphLayer(layer, ops, tuple(names[i] for i in ops),
                                 tuple(_name(graph.tensors[t]) for t in produced)))
    return result


def _squeezed(shape) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def single_layer_flatbuffer(model, graph_layer: GraphLayer) -> bytes:
    """The layer's ops alone as a .tflite: same tensors, types, quantization and weight bytes."""
    import flatbuffers

    schema = _schema()
    graph = model.subgraphs[0]
    ops = [graph.operators[i] for i in graph_layer.ops]
    produced = {int(t) for op in ops for t in op.outputs}
    consumed = {int(t) for op in ops for t in op.inputs if t >= 0}
    used = sorted(produced | consumed)
    tensor_map = {old: new for new, old in enumerate(used)}
    buffers = [schema.BufferT()]  # buffer 0 is the empty sentinel by convention
    tensors = []
    for old in used:
        tensor = copy.copy(graph.tensors[old])
        source = model.buffers[tensor.buffer]
        if source is not None and source.data is not None and len(source.data) > 0:
            buffers.append(schema.BufferT())
            buffers[-1].data = source.data
            tensor.buffer = len(buffers) - 1
        else:
            tensor.buffer = 0
        tensors.append(tensor)
    codes: list = []
    code_map: dict[int, int] = {}
    new_ops = []
    for op in ops:
        if op.opcodeIndex not in code_map:
            code_map[op.opcodeIndex] = len(codes)
            codes.append(model.operatorCodes[op.opcodeIndex])
        new = copy.copy(op)
        new.opcodeIndex = code_map[op.opcodeIndex]
        new.inputs = [tensor_map[int(t)] if t >= 0 else -1 for t in op.inputs]
        new.outputs = [tensor_map[int(t)] for t in op.outputs]
        new_ops.append(new)
    inputs = [tensor_map[t] for t in sorted(consumed - produced) if not _is_constant(model, t)]
    outputs = [tensor_map[t] for t in sorted(produced) if t not in consumed or t in graph.outputs]
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs, subgraph.operators = tensors, inputs, outputs, new_ops
    subgraph.name = graph_layer.layer.name
    single = schema.ModelT()
    single.version = model.version or 3
    single.operatorCodes, single.subgraphs, single.buffers = codes, [subgraph], buffers
    single.description = f"mbdeploy single layer {graph_layer.layer.name}"
    builder = flatbuffers.Builder(1024)
    builder.Finish(single.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _quantization(tensor) -> dict | None:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    return {"scale": [float(s) for s in q.scale], "zero_point": [int(z) for z in q.zeroPoint]}


def build_single_layer_models(artifact_path: Path, spec: ModelSpec, out_dir: Path) -> list[SingleLayerModel]:
    """Write one .tflite per profile layer of the artifact into out_dir (names `NN_<layer>.tflite`)."""
    schema = _schema()
    dtype_names = {value: key.lower() for key, value in vars(schema.TensorType).items() if not key.startswith("_")}
    model = read_model(artifact_path)
    mapped = map_layers(model, profile_layers(spec), str(artifact_path))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graph = model.subgraphs[0]
    built = []
    for graph_layer in mapped:
        data = single_layer_flatbuffer(model, graph_layer)
        layer = graph_layer.layer
        path = out_dir / f"{layer.index:02d}_{layer.name}.tflite"
        write_bytes(path, data)
        ops = [graph.operators[i] for i in graph_layer.ops]
        produced = {int(t) for op in ops for t in op.outputs}
        feeding = sorted({int(t) for op in ops for t in op.inputs if t >= 0} - produced)
        feeding = [t for t in feeding if not _is_constant(model, t)]
        built.append(SingleLayerModel(
            layer, path, hashlib.sha256(data).hexdigest(), len(data), graph_layer.op_names,
            tuple(tuple(int(d) for d in graph.tensors[t].shape) for t in feeding),
            tuple(dtype_names.get(graph.tensors[t].type, str(graph.tensors[t].type)) for t in feeding),
            tuple(_quantization(graph.tensors[t]) for t in feeding)))
    return built
