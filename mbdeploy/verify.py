"""Verification figures and the one table of numerical tolerances.

Every artifact is compared with the Keras reference on the same fixed probe
inputs (synthetic images, plus real photos when `--calib` names them).

- Float exports (fp32, fp16) are judged on logits, not probabilities: the
  models output softmax probabilities, and log p_i - log p_top is exactly the
  logit gap to the top class, whatever the softmax normalisation. On trained
  weights and real photos the probabilities are peaked, and a fixed
  probability bound fails fp16 rounding that moves no decision (0.5_160 on
  three photos: probability diff 6.7e-3, logit diff 0.06).
- Quantized exports are judged by cosine similarity of the probabilities and
  by top-1 agreement on decisive probes, once there are enough of them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    max_logit_diff: float | None = None  # nats, on the logit gap to the reference's top class
    min_cosine: float | None = None  # on probabilities, mean over probes
    min_top1_agreement: float | None = None  # on decisive probes
    why: str = ""


# Keyed by (format, precision). Measured (benchmarks/bench_verification.py, Google's
# 0.25_128 and 0.5_160 weights on three photos + 8 synthetic probes, and seeded random
# weights): fp32 logit diff <= 3e-5 everywhere; TFLite fp16 0.007 (random) to 0.078
# (trained); Core ML fp16 (fp16 compute too) 0.013 to 0.11, and the real runtime may also
# accumulate in fp16 inside a conv, hence a looser bound. A wrong layer moves logits by
# whole nats. Cosine of int8 exports 0.98-0.99 with trained weights and photos (>= 0.998
# with random ones); the bounds leave room for other calibration sets. ONNX int8 uses
# uint8 weights: int8 ones saturate in onnxruntime's x86 AVX2 (no VNNI) kernels.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("tflite", "fp32"): Tolerance(max_logit_diff=1e-3, why="same float graph"),
    ("tflite", "fp16"): Tolerance(max_logit_diff=0.25, why="fp16-rounded weights, fp32 compute"),
    ("tflite", "dynamic"): Tolerance(min_cosine=0.95, min_top1_agreement=0.75, why="int8 weights, float activations"),
    ("tflite", "int8"): Tolerance(min_cosine=0.90, min_top1_agreement=0.6, why="int8 weights and activations"),
    ("onnx", "fp32"): Tolerance(max_logit_diff=1e-3, why="same float graph"),
    ("onnx", "int8"): Tolerance(min_cosine=0.90, min_top1_agreement=0.6, why="static QDQ, uint8 weights and activations"),
    ("coreml", "fp32"): Tolerance(max_logit_diff=1e-3, why="same float program"),
    ("coreml", "fp16"): Tolerance(max_logit_diff=0.5, why="fp16 weights and fp16 compute"),
    ("coreml", "int8"): Tolerance(min_cosine=0.95, min_top1_agreement=0.75, why="int8 weights, fp16 compute"),
    ("coreml", "w8a8"): Tolerance(min_cosine=0.90, min_top1_agreement=0.6, why="int8 weights and activations"),
}

# A probe counts for top-1 agreement only where the reference is decisive: a
# near-tie (common for trained weights on synthetic images) flips under any
# rounding and says nothing about the export.
DECISIVE_MARGIN = 0.1
# Below this many decisive probes, top-1 agreement is reported but decides
# nothing: one flip among two probes is 50% and proves no fault.
MIN_DECISIVE_PROBES = 5
# Logits are compared on the classes either side gives at least this
# probability: above fp16's smallest normal number (6.1e-5), so an fp16
# output still carries them at full precision.
LOGIT_FLOOR = 1e-4


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    per_row = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return float(per_row.mean())


def max_logit_diff(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Largest change of a logit gap to the reference's top class, in nats.

    log p_i - log p_top equals logit_i - logit_top for a softmax output, so
    this compares logits without needing them. A class one side puts at zero
    while the other gives it >= LOGIT_FLOOR is an infinite difference.
    """
    outputs, reference = outputs.astype(np.float64), reference.astype(np.float64)
    rows = np.arange(len(reference))
    top = reference.argmax(1)
    considered = (reference >= LOGIT_FLOOR) | (outputs >= LOGIT_FLOOR)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap_ref = np.log(reference) - np.log(reference[rows, top])[:, None]
        gap_out = np.log(np.maximum(outputs, 0)) - np.log(np.maximum(outputs[rows, top], 0))[:, None]
        diff = np.abs(gap_out - gap_ref)[considered]
    diff = np.where(np.isnan(diff), np.inf, diff)  # -inf - -inf: both sides lost the class
    return float(diff.max()) if diff.size else 0.0


def compare(fmt: str, precision: str, outputs: np.ndarray, reference: np.ndarray, verifier: str) -> dict:
    """Figures for the manifest, and whether they are within tolerance."""
    tolerance = TOLERANCES[(fmt, precision)]
    outputs = np.asarray(outputs, np.float32).reshape(reference.shape)
    ranked = np.sort(reference, axis=1)
    decisive = (ranked[:, -1] - ranked[:, -2]) >= DECISIVE_MARGIN
    agree = outputs.argmax(1) == reference.argmax(1)
    # Infinite where one side zeroes a class the other gives >= LOGIT_FLOOR (normal for int8 outputs).
    logit_diff = max_logit_diff(outputs, reference)
    figures = {
        "verifier": verifier,
        "probes": int(len(reference)),
        "max_abs_diff": float(np.max(np.abs(outputs - reference))),
        "max_logit_diff": logit_diff if math.isfinite(logit_diff) else None,  # JSON has no Infinity
        "cosine": cosine(outputs, reference),
        "top1_agreement": float(np.mean(agree[decisive])) if decisive.any() else None,
        "decisive_probes": int(decisive.sum()),
        "top1_agreement_all": float(np.mean(agree)),
    }
    failures, notes = [], []
    if tolerance.max_logit_diff is not None and not logit_diff <= tolerance.max_logit_diff:
        failures.append(f"max logit diff {logit_diff:.2e} > {tolerance.max_logit_diff:g}" if math.isfinite(logit_diff)
                        else f"max logit diff infinite (a class given >= {LOGIT_FLOOR:g} on one side is 0 on the "
                             f"other) > {tolerance.max_logit_diff:g}")
    if tolerance.min_cosine is not None and not figures["cosine"] >= tolerance.min_cosine:
        failures.append(f"cosine {figures['cosine']:.4f} < {tolerance.min_cosine}")
    agreement = figures["top1_agreement"]
    if tolerance.min_top1_agreement is not None:
        if figures["decisive_probes"] < MIN_DECISIVE_PROBES:
            notes.append(f"top-1 agreement not judged: {figures['decisive_probes']} decisive probes "
                         f"< {MIN_DECISIVE_PROBES}")
        elif agreement < tolerance.min_top1_agreement:
            failures.append(f"top-1 agreement {agreement:.2f} < {tolerance.min_top1_agreement} "
                            f"on {figures['decisive_probes']} decisive probes")
    figures["tolerance"] = {k: v for k, v in asdict(tolerance).items() if v not in (None, "")}
    figures["passed"] = not failures
    figures["failures"] = failures
    figures["notes"] = notes
    return figures
