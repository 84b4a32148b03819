"""The layers a profile times, derived from the layer plan: what each costs and moves.

The layer plan (`architecture.layer_plan`) holds the layers that carry
weights: `Conv2d_0`, the 13 depthwise/pointwise pairs and `Logits`. A model
also pools and takes a softmax; a profile times those too, so the list here is
the plan with Slim's `AvgPool_1a` before `Logits` and `Predictions` (the
softmax) after it. Nothing restates a stride or a width: shapes, MACs and
params come from the plan (`accounting.layer_cost`).

Bytes moved are the activations read and written plus the weights read, in
elements times the element size of the precision: the second term of the
layer latency model (`records/layer_model.py`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mbdeploy.accounting import LAYER_TYPE_LABELS, layer_cost
from mbdeploy.architecture import ModelSpec, layer_plan
from mbdeploy.errors import InvalidInput

# Paper Table 2's four rows plus the two layers it leaves out.
PROFILE_TYPE_LABELS = {**LAYER_TYPE_LABELS, "pool": "Avg Pool", "softmax": "Softmax"}
TYPE_ORDER = tuple(PROFILE_TYPE_LABELS.values())

# Bytes per element: (activations, weights). fp16 and dynamic models compute in
# float32 on a CPU (their weights are stored smaller); int8 models in int8.
ELEMENT_BYTES = {
    "fp32": (4, 4),
    "fp16": (4, 2),
    "dynamic": (4, 1),
    "int8": (1, 1),
    "uint8": (1, 1),
}


@dataclass(frozen=True)
class ProfileLayer:
    """One layer as a profile times it alone: its place, type, cost and shapes (NHWC, batch 1)."""

    index: int
    name: str
    kind: str  # conv, depthwise, pointwise, logits (the plan's kinds), pool, softmax
    macs: int
    params: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    weight_elements: int

    @property
    def type(self) -> str:
        """The paper's Table 2 label (Conv 1x1, Conv DW 3x3, ...)."""
        return PROFILE_TYPE_LABELS[self.kind]

    @property
    def activation_elements(self) -> int:
        count = 1
        for d in self.input_shape:
            count *= d
        out = 1
        for d in self.output_shape:
            out *= d
        return count + out

    def bytes_moved(self, precision: str) -> int:
        activation, weight = element_bytes(precision)
        return self.activation_elements * activation + self.weight_elements * weight

    def to_dict(self) -> dict:
        data = asdict(self)
        data["type"] = self.type
        data["input_shape"] = list(self.input_shape)
        data["output_shape"] = list(self.output_shape)
        return data


def element_bytes(precision: str) -> tuple[int, int]:
    if precision not in ELEMENT_BYTES:
        raise InvalidInput(f"no element size for precision {precision!r}; known: {', '.join(ELEMENT_BYTES)}")
    return ELEMENT_BYTES[precision]


def profile_layers(spec: ModelSpec) -> list[ProfileLayer]:
    """Every layer a profile times, in graph order."""
    layers: list[ProfileLayer] = []

    def add(name: str, kind: str, macs: int, params: int, shape_in: tuple, shape_out: tuple, weights: int) -> None:
        layers.append(ProfileLayer(len(layers), name, kind, macs, params, shape_in, shape_out, weights))

    for layer in layer_plan(spec):
        cost = layer_cost(layer)
        if layer.kind == "logits":
            channels, size = layer.in_channels, layers[-1].output_shape[1]
            add("AvgPool_1a", "pool", 0, 0, (1, size, size, channels), (1, 1, 1, channels), 0)
            add(layer.name, "logits", cost.macs, cost.params, (1, 1, 1, channels), (1, layer.out_channels),
                cost.params)
            add("Predictions", "softmax", 0, 0, (1, layer.out_channels), (1, layer.out_channels), 0)
        else:
            add(layer.name, layer.kind, cost.macs, cost.params,
                (1, layer.in_size, layer.in_size, layer.in_channels),
                (1, layer.out_size, layer.out_size, layer.out_channels), cost.params)
    return layers
