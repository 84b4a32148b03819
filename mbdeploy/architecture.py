"""The MobileNet v1 family as data: the paper's Table 1 and the resolved plan.

Everything else (MACs, params, the Keras model, the Core ML program, the ONNX
graph, weight loaders, the Table 2 breakdown) reads `layer_plan(spec)`; none
of them restates a stride or a width.

Table 1 of the paper prints the 13th depthwise layer as stride 2 on a 7x7
input, which would leave a 4x4 map. TF-Slim's released definition (and every
checkpoint Google published) uses stride 1 there; we follow Slim.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Iterator, Literal

from mbdeploy.errors import InvalidInput

# (kind, kernel, stride, depth at alpha 1.0): the body, in the order of Table 1.
# "conv" is a full convolution; "separable" is a depthwise 3x3 then a 1x1.
ARCHITECTURE: tuple[tuple[str, int, int, int], ...] = (
    ("conv", 3, 2, 32),
    ("separable", 3, 1, 64),
    ("separable", 3, 2, 128),
    ("separable", 3, 1, 128),
    ("separable", 3, 2, 256),
    ("separable", 3, 1, 256),
    ("separable", 3, 2, 512),
    ("separable", 3, 1, 512),
    ("separable", 3, 1, 512),
    ("separable", 3, 1, 512),
    ("separable", 3, 1, 512),
    ("separable", 3, 1, 512),
    ("separable", 3, 2, 1024),
    ("separable", 3, 1, 1024),
)

INPUT_CHANNELS = 3
DEFAULT_CLASSES = 1001  # the release's 1000 ImageNet classes plus "background" at 0
MAX_ALPHA = 1.4
MIN_RESOLUTION = 32
# 4.6x the largest released input. Conversion holds up to 100 calibration images and their activations
# in memory (about 1.3 GB of input alone at 1024); --res 10000 needed more than this machine's memory.
MAX_RESOLUTION = 1024

# The 16-model grid of the original release.
GRID_ALPHAS = (1.0, 0.75, 0.5, 0.25)
GRID_RESOLUTIONS = (224, 192, 160, 128)

LayerKind = Literal["conv", "depthwise", "pointwise", "logits"]


@dataclass(frozen=True)
class ModelSpec:
    """One member of the family: width multiplier, input size, head size."""

    alpha: float
    resolution: int
    classes: int = DEFAULT_CLASSES
    min_depth: int = 8

    def __post_init__(self) -> None:
        validate_alpha(self.alpha)
        validate_resolution(self.resolution)
        if not isinstance(self.classes, int) or self.classes < 1:
            raise InvalidInput(f"classes must be a positive integer, got {self.classes!r}")

    @property
    def name(self) -> str:
        return model_name(self.alpha, self.resolution)

    def depth(self, depth_at_alpha_one: int) -> int:
        """Slim's width rule: scale by alpha, never below min_depth."""
        return max(int(depth_at_alpha_one * self.alpha), self.min_depth)


@dataclass(frozen=True)
class Layer:
    """One resolved layer: everything a builder or a counter needs."""

    name: str
    kind: LayerKind
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    in_size: int  # feature-map height (== width) entering the layer
    out_size: int

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        """Weight shape in TensorFlow's HWIO (HW, channels, multiplier for depthwise)."""
        if self.kind == "depthwise":
            return (self.kernel, self.kernel, self.in_channels, 1)
        return (self.kernel, self.kernel, self.in_channels, self.out_channels)

    @property
    def groups(self) -> int:
        """Convolution groups: one per channel for a depthwise layer, else one."""
        return self.in_channels if self.kind == "depthwise" else 1

    @property
    def nchw_weight_axes(self) -> tuple[int, int, int, int]:
        """Transpose axes from `kernel_shape`'s HWIO (HWC1 for depthwise) to the OIHW (C1HW) layout NCHW
        backends (ONNX, Core ML) take: `kernel.transpose(layer.nchw_weight_axes)`."""
        return (2, 3, 0, 1) if self.kind == "depthwise" else (3, 2, 0, 1)

    @property
    def padding(self) -> tuple[int, int]:
        """SAME padding (before, after) along each spatial axis for this layer's input."""
        return same_padding(self.in_size, self.kernel, self.stride)

    @property
    def weight_count(self) -> int:
        return math.prod(self.kernel_shape)

    @property
    def macs(self) -> int:
        """Multiply-accumulates: one per weight per output position."""
        return self.weight_count * self.out_size * self.out_size


def validate_alpha(alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or math.isnan(alpha):
        raise InvalidInput(f"alpha must be a number in (0, {MAX_ALPHA}], got {alpha!r}")
    if not 0 < alpha <= MAX_ALPHA:
        raise InvalidInput(f"alpha must be in (0, {MAX_ALPHA}], got {alpha:g}")
    # The model id carries alpha with at most 4 decimals: an alpha it cannot spell would be
    # named after another one (1e-300 -> mobilenet_v1_0.0_128).
    if float(format_alpha(alpha)) != alpha:
        raise InvalidInput(f"alpha {alpha!r} has no model id that reads back as itself; "
                           f"allowed: (0, {MAX_ALPHA}] with at most 4 decimals, e.g. 0.35")
    return float(alpha)


def validate_resolution(resolution: object) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int):
        raise InvalidInput(
            f"resolution must be an integer in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], got {resolution!r}"
        )
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise InvalidInput(f"resolution must be an integer in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], got {resolution} "
                           f"(above {MAX_RESOLUTION} the calibration images and activations do not fit in memory)")
    return resolution


def warn_if_unusual_resolution(resolution: int) -> None:
    if resolution % 32:
        warnings.warn(
            f"resolution {resolution} is not a multiple of 32: feature maps will be "
            "padded unevenly and the model is not one Google trained",
            stacklevel=2,
        )


def same_padding_out(size: int, stride: int) -> int:
    """Output size of a SAME-padded convolution."""
    return -(-size // stride)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) along one axis: an odd total puts the extra after
    (bottom/right). Keras' and MIL's `"same"` are this rule; ONNX and the numpy ops write it out."""
    total = max((same_padding_out(size, stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def layer_plan(spec: ModelSpec) -> list[Layer]:
    """Walk the architecture table for one spec, yielding Slim-named layers."""
    return list(_walk(spec))


def _walk(spec: ModelSpec) -> Iterator[Layer]:
    size = spec.resolution
    channels = INPUT_CHANNELS
    for index, (kind, kernel, stride, depth) in enumerate(ARCHITECTURE):
        out_size = same_padding_out(size, stride)
        out_channels = spec.depth(depth)
        if kind == "conv":
            yield Layer(f"Conv2d_{index}", "conv", kernel, stride, channels, out_channels, size, out_size)
        else:
            yield Layer(
                f"Conv2d_{index}_depthwise", "depthwise", kernel, stride, channels, channels, size, out_size
            )
            yield Layer(
                f"Conv2d_{index}_pointwise", "pointwise", 1, 1, channels, out_channels, out_size, out_size
            )
        size, channels = out_size, out_channels
    # Global average pool to 1x1, then the classifier as a 1x1 convolution with bias.
    yield Layer("Logits", "logits", 1, 1, channels, spec.classes, 1, 1)


# --- model ids ---------------------------------------------------------------

_NAME_PATTERN = re.compile(r"^mobilenet_v1_(?P<alpha>\d+(?:\.\d+)?)_(?P<res>\d+)$")


def format_alpha(alpha: float) -> str:
    """The release's spelling: 1.0, 0.75, 0.5, 0.25."""
    text = f"{alpha:.4f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def model_name(alpha: float, resolution: int) -> str:
    return f"mobilenet_v1_{format_alpha(alpha)}_{resolution}"


def parse_model_name(name: str) -> tuple[float, int]:
    """`mobilenet_v1_0.5_160` (or `..._0.50_160`) -> (0.5, 160)."""
    match = _NAME_PATTERN.match(name.strip())
    if not match:
        raise InvalidInput(
            f"model id {name!r} is not of the form mobilenet_v1_<alpha>_<resolution>, "
            "e.g. mobilenet_v1_0.75_192"
        )
    alpha = validate_alpha(float(match["alpha"]))
    return alpha, validate_resolution(int(match["res"]))


def grid_specs(classes: int = DEFAULT_CLASSES) -> list[ModelSpec]:
    """The 16 released models, largest first, in the release table's order."""
    return [ModelSpec(a, r, classes) for a in GRID_ALPHAS for r in GRID_RESOLUTIONS]
