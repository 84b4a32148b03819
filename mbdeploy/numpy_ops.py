"""The few MobileNet ops in plain numpy (NHWC, SAME padding as TensorFlow).

Used where running TensorFlow would be the wrong tool: scaling random weights
at creation, and (for Core ML on Linux) executing a saved program for
verification.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mbdeploy.architecture import same_padding


def same_pad(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """Pad H and W of an NHWC batch as TensorFlow's SAME does (extra on the bottom/right)."""
    before, after = same_padding(x.shape[1], kernel, stride)
    return np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))


def _windows(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """[N, Ho, Wo, C, k, k] views of the padded input."""
    return sliding_window_view(same_pad(x, kernel, stride), (kernel, kernel), axis=(1, 2))[:, ::stride, ::stride]


def conv2d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """kernel HWIO."""
    k = kernel.shape[0]
    if k == 1 and stride == 1:
        # As one 2-D product: numpy's matmul on a strided 4-D view skips BLAS and runs ~20x slower.
        n, h, w, c = x.shape
        return (np.ascontiguousarray(x).reshape(-1, c) @ kernel[0, 0]).reshape(n, h, w, -1) + bias
    return np.einsum("nhwcij,ijco->nhwo", _windows(x, k, stride), kernel, optimize=True) + bias


def depthwise_conv2d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """kernel HWC1 (depth multiplier 1)."""
    k = kernel.shape[0]
    return np.einsum("nhwcij,ijc->nhwc", _windows(x, k, stride), kernel[:, :, :, 0], optimize=True) + bias


def relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)
