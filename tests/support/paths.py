"""Where the project and the ../shared reference data are."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
REFERENCE = SHARED / "reference"
REFERENCE_MODEL = REFERENCE / "mobilenet_v1_0.25_128_quant.tflite"
