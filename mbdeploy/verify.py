"""Verification figures and the one table of numerical tolerances.

Every artifact is compared with the Keras reference on the same fixed probe
inputs: float exports by the largest absolute difference of the output
probabilities, quantized ones by top-1 agreement and cosine similarity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    max_abs_diff: float | None = None  # on probabilities
    min_cosine: float | None = None
    min_top1_agreement: float | None = None
    why: str = ""


# Keyed by (format, precision). fp16 keeps fp16 weights (LiteRT dequantizes them
# at load; Core ML also computes in fp16), so it gets a looser absolute bound.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("tflite", "fp32"): Tolerance(max_abs_diff=1e-4, why="same float graph"),
    ("tflite", "fp16"): Tolerance(max_abs_diff=5e-3, why="fp16-rounded weights, fp32 compute"),
    ("tflite", "dynamic"): Tolerance(min_cosine=0.95, min_top1_agreement=0.75, why="int8 weights, float activations"),
    ("tflite", "int8"): Tolerance(min_cosine=0.90, min_top1_agreement=0.6, why="int8 weights and activations"),
    # ONNX and Core ML, measured (benchmarks/bench_coreml_onnx.py; the 0.5_160 official
    # weights on 3 photos + 8 synthetic probes): fp32 <= 1.3e-6 for both; Core ML fp16
    # 1.5e-3 (random weights) to 6.4e-3 (trained: peaked probabilities), and the real
    # runtime may also accumulate in fp16 inside a conv, hence 2e-2; cosine of int8
    # ONNX 0.988, Core ML int8 0.984, w8a8 0.982 with trained weights (>= 0.998 with
    # random ones), top-1 agreement 1.0 everywhere: the bounds leave room for other
    # calibration sets. ONNX int8 uses uint8 weights: int8 ones saturate in onnxruntime's
    # x86 AVX2 (no VNNI) kernels (cosine 0.74 on the same model and probes).
    ("onnx", "fp32"): Tolerance(max_abs_diff=1e-4, why="same float graph"),
    ("onnx", "int8"): Tolerance(min_cosine=0.90, min_top1_agreement=0.6, why="static QDQ, uint8 weights and activations"),
    ("coreml", "fp32"): Tolerance(max_abs_diff=1e-4, why="same float program"),
    ("coreml", "fp16"): Tolerance(max_abs_diff=2e-2, why="fp16 weights and fp16 compute"),
    ("coreml", "int8"): Tolerance(min_cosine=0.95, min_top1_agreement=0.75, why="int8 weights, fp16 compute"),
    ("coreml", "w8a8"): Tolerance(min_cosine=0.90, min_top1_agreement=0.6, why="int8 weights and activations"),
}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    per_row = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return float(per_row.mean())


# A probe counts for top-1 agreement only where the reference is decisive: a
# near-tie (common for trained weights on synthetic images) flips under any
# rounding and says nothing about the export.
DECISIVE_MARGIN = 0.1


def compare(fmt: str, precision: str, outputs: np.ndarray, reference: np.ndarray, verifier: str) -> dict:
    """Figures for the manifest, and whether they are within tolerance."""
    tolerance = TOLERANCES[(fmt, precision)]
    outputs = np.asarray(outputs, np.float32).reshape(reference.shape)
    ranked = np.sort(reference, axis=1)
    decisive = (ranked[:, -1] - ranked[:, -2]) >= DECISIVE_MARGIN
    agree = outputs.argmax(1) == reference.argmax(1)
    figures = {
        "verifier": verifier,
        "probes": int(len(reference)),
        "max_abs_diff": float(np.max(np.abs(outputs - reference))),
        "cosine": cosine(outputs, reference),
        "top1_agreement": float(np.mean(agree[decisive])) if decisive.any() else None,
        "decisive_probes": int(decisive.sum()),
        "top1_agreement_all": float(np.mean(agree)),
    }
    failures = []
    if tolerance.max_abs_diff is not None and figures["max_abs_diff"] > tolerance.max_abs_diff:
        failures.append(f"max abs diff {figures['max_abs_diff']:.2e} > {tolerance.max_abs_diff:.0e}")
    if tolerance.min_cosine is not None and figures["cosine"] < tolerance.min_cosine:
        failures.append(f"cosine {figures['cosine']:.4f} < {tolerance.min_cosine}")
    agreement = figures["top1_agreement"]
    if tolerance.min_top1_agreement is not None and agreement is not None and agreement < tolerance.min_top1_agreement:
        failures.append(f"top-1 agreement {figures['top1_agreement']:.2f} < {tolerance.min_top1_agreement}")
    figures["tolerance"] = {k: v for k, v in asdict(tolerance).items() if v not in (None, "")}
    figures["passed"] = not failures
    figures["failures"] = failures
    return figures
