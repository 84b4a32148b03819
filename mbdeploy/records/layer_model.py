"""A layer-level latency model, fitted from profiles: time = a_type x MACs + b_type x bytes + c_type.

MACs alone do not say where the time goes: a depthwise layer moves as many
bytes as a pointwise one for a ninth of the MACs, and the first layers' large
activation maps cost more than their MACs. So each layer type (the paper's
Table 2 rows plus the pooling and the softmax) gets three costs, fitted from
the profiled layers of a few models on one device, format, precision and
runner config:

    a  ms per GMAC        (compute)
    b  ms per MB moved    (activations read and written, weights read)
    c  ms per layer       (fixed cost: a kernel's start, thread wake-ups)

Fitting is least squares weighted by 1 / (the layer's model's whole time), so
every profiled model counts alike, with no negative cost: a coefficient that
comes out negative is dropped and the rest refitted (active set), and a
feature that does not vary within a type (the softmax's bytes when every
model has 1001 classes) is left to c. A layer alone is not the layer in the
graph, so the whole model is then

    whole = scale x (sum of layers) + per_activation_mb x (activation MB)

both fitted on the profiled models' whole times (relative least squares).
`per_activation_mb` comes out negative where a layer's input, which in the
graph the layer before has just written into the cache, costs more to read
when the layer is timed alone; `scale` takes what is proportional (one
invoke's fixed cost paid per layer instead of once, on small models).

Per-type costs cannot see what one width's channel counts do to each kernel
(how they tile into the CPU's vector registers and caches): on this host the
type model alone is 3-5% off at the median. So at a width that was profiled,
each layer keeps its own measured residual: the layer's time is the type
model's time for the target resolution times

    k = (measured layer time / type model's time) x (whole / sum of measured layers)

from the profiled model(s) of that width (averaged over several), and the
whole model is the sum of those. At the profiled model itself this gives its
measured whole time back; at another resolution of the same width, the type
model carries the change of resolution and the residuals the width's own
behaviour. At any other width the type model and the two graph terms predict
alone (interpolating residuals between widths made it worse here).

The honest error is out of sample: `loo_errors` refits without each profiled
model and predicts its whole time; `select` reports the error on the
measured models the fit did not see when there are any.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np

from mbdeploy.architecture import ModelSpec
from mbdeploy.errors import InvalidInput, ResultsError
from mbdeploy.layer_accounting import ELEMENT_BYTES, ProfileLayer, element_bytes, profile_layers

FEATURES = ("ms_per_gmac", "ms_per_mb", "ms_fixed")


@dataclass(frozen=True)
class LayerSample:
    """One profiled layer: what it is, what it cost, and the whole time of the model it belongs to."""

    model: str
    kind: str
    macs: int
    bytes_moved: int
    ms: float
    activation_bytes: int = 0  # the activations it reads and writes (part of bytes_moved)


@dataclass(frozen=True)
class ProfiledModel:
    name: str
    whole_ms: float
    layers: tuple[LayerSample, ...]  # in the plan's order (layer_accounting.profile_layers)
    spec: ModelSpec | None = None  # the family member, when known: its width gets residuals


@dataclass(frozen=True)
class WidthResiduals:
    """One profiled width's per-layer factors: layer time = type model's time x factor (+ fixed_ms)."""

    alpha: float
    factors: tuple[float, ...]
    fixed_ms: tuple[float, ...]  # a layer the type model gives no time: its measured share, as is
    models: tuple[str, ...]


@dataclass(frozen=True)
class TypeCost:
    ms_per_gmac: float
    ms_per_mb: float
    ms_fixed: float
    layers: int  # profiled layers this type was fitted on

    def ms(self, macs: float, bytes_moved: float) -> float:
        return self.ms_per_gmac * macs / 1e9 + self.ms_per_mb * bytes_moved / 1e6 + self.ms_fixed


@dataclass(frozen=True)
class LayerModel:
    precision: str
    costs: dict[str, TypeCost]
    scale: float  # whole = scale x (sum of predicted layers) + per_activation_mb x activation MB
    per_activation_mb: float
    models: tuple[str, ...]
    loo_errors: tuple[float, ...] = field(default=())  # signed relative errors, one per profiled model left out
    widths: tuple[WidthResiduals, ...] = field(default=())
    # Signed relative errors on each profiled model, fitted without every profile of its width: what a
    # prediction at a width nobody profiled can expect.
    width_out_errors: tuple[float, ...] = field(default=())

    @property
    def loo_median_abs_error(self) -> float | None:
        return statistics.median(abs(e) for e in self.loo_errors) if self.loo_errors else None

    @property
    def width_out_median_abs_error(self) -> float | None:
        return statistics.median(abs(e) for e in self.width_out_errors) if self.width_out_errors else None

    def layer_ms(self, layer: ProfileLayer) -> float:
        if layer.kind not in self.costs:
            raise ResultsError(f"the layer model has no {layer.type} layers to predict {layer.name} from")
        return self.costs[layer.kind].ms(layer.macs, layer.bytes_moved(self.precision))

    def sum_of_layers(self, spec: ModelSpec) -> float:
        return sum(self.layer_ms(layer) for layer in profile_layers(spec))

    def residuals_for(self, spec: ModelSpec) -> WidthResiduals | None:
        """The profiled width's residuals that a prediction for `spec` uses, if its width was profiled."""
        layers = len(profile_layers(spec))
        return next((w for w in self.widths if abs(w.alpha - spec.alpha) < 1e-9 and len(w.factors) == layers), None)

    def predict(self, spec: ModelSpec) -> float:
        """The whole model's latency (ms) of any family member, on the grid or off it."""
        width = self.residuals_for(spec)
        if width is not None:
            return sum(self.layer_ms(layer) * k + fixed
                       for layer, k, fixed in zip(profile_layers(spec), width.factors, width.fixed_ms))
        activation = element_bytes(self.precision)[0]
        moved = sum(layer.activation_elements * activation for layer in profile_layers(spec))
        return self.scale * self.sum_of_layers(spec) + self.per_activation_mb * moved / 1e6

    def to_dict(self) -> dict:
        return {"precision": self.precision, "scale": self.scale, "per_activation_mb": self.per_activation_mb,
                "models": list(self.models), "loo_errors": list(self.loo_errors),
                "width_out_errors": list(self.width_out_errors),
                "width_out_median_abs_error": self.width_out_median_abs_error,
                "widths": [{"alpha": w.alpha, "models": list(w.models), "factors": list(w.factors),
                            "fixed_ms": list(w.fixed_ms)} for w in self.widths],
                "loo_median_abs_error": self.loo_median_abs_error,
                "costs": {kind: {"ms_per_gmac": c.ms_per_gmac, "ms_per_mb": c.ms_per_mb, "ms_fixed": c.ms_fixed,
                                 "layers": c.layers} for kind, c in self.costs.items()}}


def nonnegative_least_squares(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least squares with every coefficient >= 0 (drop the most negative, refit; a small active set)."""
    active = [j for j in range(x.shape[1]) if np.any(x[:, j] != 0)]
    w = np.sqrt(weights)[:, None]
    while active:
        solution, *_ = np.linalg.lstsq(x[:, active] * w, y * w[:, 0], rcond=None)
        if np.all(solution >= 0):
            coefficients = np.zeros(x.shape[1])
            coefficients[active] = solution
            return coefficients
        active.pop(int(np.argmin(solution)))
    return np.zeros(x.shape[1])


def _type_cost(samples: Sequence[LayerSample], weights: Sequence[float]) -> TypeCost:
    macs = np.array([s.macs / 1e9 for s in samples])
    moved = np.array([s.bytes_moved / 1e6 for s in samples])
    columns = [macs, moved, np.ones(len(samples))]
    # A feature constant within the type says nothing c does not: leave it to c, so the split stays unique.
    for j in (0, 1):
        if np.ptp(columns[j]) <= 1e-12 * max(1.0, float(np.max(np.abs(columns[j])))):
            columns[j] = np.zeros(len(samples))
    x = np.stack(columns, axis=1)
    y = np.array([s.ms for s in samples])
    a, b, c = nonnegative_least_squares(x, y, np.array(weights))
    return TypeCost(float(a), float(b), float(c), len(samples))


def _costs_and_graph_terms(models: Sequence[ProfiledModel], precision: str) -> tuple[dict[str, TypeCost], float, float]:
    by_kind: dict[str, list[tuple[LayerSample, float]]] = {}
    for model in models:
        for sample in model.layers:
            by_kind.setdefault(sample.kind, []).append((sample, 1.0 / model.whole_ms))
    costs = {kind: _type_cost([s for s, _ in rows], [w for _, w in rows]) for kind, rows in by_kind.items()}
    sums = np.array([sum(costs[s.kind].ms(s.macs, s.bytes_moved) for s in model.layers) for model in models])
    moved = np.array([sum(s.activation_bytes for s in model.layers) / 1e6 for model in models])
    wholes = np.array([model.whole_ms for model in models])
    w = (1.0 / wholes)[:, None]
    scale, per_mb = 0.0, 0.0
    if len(models) >= 2 and np.ptp(moved) > 0:
        scale, per_mb = np.linalg.lstsq(np.stack([sums, moved], axis=1) * w, wholes * w[:, 0], rcond=None)[0]
    if scale <= 0:  # one model, or a fit that makes no sense: the ratio alone
        scale, per_mb = float(np.sum(sums / wholes) / np.sum(sums ** 2 / wholes ** 2)), 0.0
    return costs, float(scale), float(per_mb)


def _width_residuals(models: Sequence[ProfiledModel], costs: dict[str, TypeCost]) -> tuple[WidthResiduals, ...]:
    """Each profiled width's per-layer factors (see the module's docstring), averaged over its models."""
    by_width: dict[float, list[tuple[str, list[float], list[float]]]] = {}
    for model in models:
        if model.spec is None or len(model.layers) != len(profile_layers(model.spec)):
            continue
        graph = model.whole_ms / sum(s.ms for s in model.layers)
        factors, fixed = [], []
        for sample in model.layers:
            typed = costs[sample.kind].ms(sample.macs, sample.bytes_moved)
            factors.append(sample.ms / typed * graph if typed > 0 else 0.0)
            fixed.append(0.0 if typed > 0 else sample.ms * graph)
        by_width.setdefault(round(model.spec.alpha, 9), []).append((model.name, factors, fixed))
    return tuple(WidthResiduals(alpha, tuple(np.mean([f for _, f, _ in rows], axis=0).tolist()),
                                tuple(np.mean([x for _, _, x in rows], axis=0).tolist()),
                                tuple(name for name, _, _ in rows))
                 for alpha, rows in sorted(by_width.items()))


def _fitted(models: Sequence[ProfiledModel], precision: str) -> LayerModel:
    costs, scale, per_mb = _costs_and_graph_terms(models, precision)
    return LayerModel(precision, costs, scale, per_mb, tuple(m.name for m in models),
                      widths=_width_residuals(models, costs))


def _left_out_error(rest: LayerModel, left_out: ProfiledModel) -> float | None:
    """The refitted model's signed relative error on the profiled model it did not see (None: a kind unseen)."""
    if any(s.kind not in rest.costs for s in left_out.layers):
        return None
    if left_out.spec is not None:
        predicted = rest.predict(left_out.spec)
    else:  # no spec: the type model on its own layers, and the graph terms
        total = sum(rest.costs[s.kind].ms(s.macs, s.bytes_moved) for s in left_out.layers)
        predicted = rest.scale * total + rest.per_activation_mb * sum(s.activation_bytes for s in left_out.layers) / 1e6
    return (predicted - left_out.whole_ms) / left_out.whole_ms


def fit_layer_model(models: Sequence[ProfiledModel], precision: str) -> LayerModel:
    """Fit the per-type costs, the graph's two terms and the profiled widths' residuals; leave-one-model-out
    errors with >= 3 models."""
    if not models:
        raise ResultsError("cannot fit a layer model without a profiled model")
    if any(m.whole_ms <= 0 or not m.layers for m in models):
        raise ResultsError("every profiled model needs a positive whole time and its layers")
    model = _fitted(models, precision)
    loo: list[float] = []
    if len(models) >= 3:
        for i, left_out in enumerate(models):
            error = _left_out_error(_fitted([m for j, m in enumerate(models) if j != i], precision), left_out)
            if error is None:
                loo = []
                break
            loo.append(error)
    width_out: list[float] = []
    for width in model.widths if len(model.widths) >= 2 else ():
        rest = _fitted([m for m in models if m.name not in width.models], precision)
        for left_out in (m for m in models if m.name in width.models):
            error = _left_out_error(rest, left_out)
            if error is not None:
                width_out.append(error)
    return replace(model, loo_errors=tuple(loo), width_out_errors=tuple(width_out))


# --- from records -----------------------------------------------------------------


def profiled_models(whole_records: Iterable[dict], layer_records: Iterable[dict],
                    statistic: str = "median") -> dict[tuple, list[ProfiledModel]]:
    """Profiles with every layer timed, grouped by (device, format, precision, config key).

    `statistic`: which figure of the latency blocks to fit (the median; `min` is a load-robust diagnostic).
    """
    from mbdeploy.records.layers import latest_layers, layer_time, whole_key

    wholes = {}
    for record in sorted(whole_records, key=lambda r: r.get("started_at") or ""):
        if record.get("status") == "ok" and (record.get("latency_ms") or {}).get(statistic):
            wholes[whole_key(record)] = record
    groups: dict[tuple, dict[str, ProfiledModel]] = {}
    for key, layers in sorted(latest_layers(layer_records).items()):
        whole = wholes.get(key)
        times = [layer_time(r, statistic)[0] for r in layers]
        if whole is None or any(t is None or t <= 0 for t in times):
            continue
        artifact = layers[0]["artifact"]
        activation = element_bytes(artifact["precision"])[0] if artifact["precision"] in ELEMENT_BYTES else 4
        samples = tuple(LayerSample(artifact["name"], r["layer"]["kind"], r["layer"]["macs"], r["layer"]["bytes_moved"],
                                    t, activation * (math.prod(r["layer"]["input_shape"])
                                                     + math.prod(r["layer"]["output_shape"])))
                        for r, t in zip(layers, times))
        group = (key[0], artifact["format"], artifact["precision"], key[3])
        groups.setdefault(group, {})[artifact["name"]] = ProfiledModel(artifact["name"],
                                                                       whole["latency_ms"][statistic], samples,
                                                                       _spec_of(artifact, layers))
    return {group: list(models.values()) for group, models in groups.items()}


def _spec_of(artifact: dict, layers: list[dict]) -> ModelSpec | None:
    """The family member a profile timed, when its record says so and its layers are that plan's, in order."""
    try:
        spec = ModelSpec(float(artifact["alpha"]), int(artifact["resolution"]), int(layers[-1]["layer"]["output_shape"][-1]))
    except (KeyError, TypeError, ValueError, IndexError, ResultsError, InvalidInput):
        return None
    plan = profile_layers(spec)
    if [layer.name for layer in plan] != [r["layer"]["name"] for r in layers]:
        return None
    return spec


def fit_layer_models(whole_records: Iterable[dict], layer_records: Iterable[dict]) -> dict[tuple, LayerModel]:
    """One layer model per (device, format, precision, config key) with at least one complete profile."""
    return {group: fit_layer_model(models, group[2])
            for group, models in profiled_models(list(whole_records), list(layer_records)).items()}
