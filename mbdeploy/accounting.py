"""MACs and parameters, derived from the layer plan and never typed in.

Conventions (those of TF-Slim's docstring and the paper):
- a MAC is one multiply-accumulate; a layer costs weights x output positions;
- params count convolution and classifier weights plus the classifier bias;
  batch-norm statistics are not parameters (they fold into the conv bias at
  export), which is how Slim's golden figures and the paper's tables count.
"""

from __future__ import annotations

from dataclasses import dataclass

from mbdeploy.architecture import Layer, ModelSpec, layer_plan

# Paper Table 2's rows, keyed by our layer kinds.
LAYER_TYPE_LABELS = {
    "pointwise": "Conv 1x1",
    "depthwise": "Conv DW 3x3",
    "conv": "Conv 3x3",
    "logits": "Fully Connected",
}


@dataclass(frozen=True)
class Cost:
    macs: int
    params: int


def layer_cost(layer: Layer) -> Cost:
    bias = layer.out_channels if layer.kind == "logits" else 0
    return Cost(macs=layer.macs, params=layer.weight_count + bias)


def model_cost(spec: ModelSpec, include_logits: bool = True) -> Cost:
    layers = [l for l in layer_plan(spec) if include_logits or l.kind != "logits"]
    costs = [layer_cost(l) for l in layers]
    return Cost(sum(c.macs for c in costs), sum(c.params for c in costs))


def breakdown_from_costs(costs_by_kind: dict[str, Cost]) -> list[dict[str, object]]:
    """Paper Table 2: each layer type's share of Mult-Adds and parameters."""
    total_macs = sum(c.macs for c in costs_by_kind.values()) or 1
    total_params = sum(c.params for c in costs_by_kind.values()) or 1
    rows = []
    for kind, label in LAYER_TYPE_LABELS.items():
        cost = costs_by_kind.get(kind, Cost(0, 0))
        rows.append(
            {
                "type": label,
                "kind": kind,
                "macs": cost.macs,
                "params": cost.params,
                "macs_percent": 100.0 * cost.macs / total_macs,
                "params_percent": 100.0 * cost.params / total_params,
            }
        )
    return rows


def layer_type_breakdown(spec: ModelSpec) -> list[dict[str, object]]:
    by_kind: dict[str, Cost] = {}
    for layer in layer_plan(spec):
        cost = layer_cost(layer)
        previous = by_kind.get(layer.kind, Cost(0, 0))
        by_kind[layer.kind] = Cost(previous.macs + cost.macs, previous.params + cost.params)
    return breakdown_from_costs(by_kind)
