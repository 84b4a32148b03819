"""Verification figures of every export, trained and random weights side by side.

Where the tolerances in mbdeploy/verify.py come from: converts Google's
0.25_128 and 0.5_160 quant models (../shared/reference) calibrated and probed
on the three reference photos, and seeded random weights at 0.25_128, into
every installed format and default precision, and prints for each artifact
the probability and logit differences, cosine, decisive probes and top-1
agreement beside the tolerance that judged it.

    .venv/bin/python benchmarks/bench_verification.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REFERENCE = ROOT.parent / "shared" / "reference"

from mbdeploy.convert import ConvertRequest, convert_model  # noqa: E402
from mbdeploy.errors import VerificationError  # noqa: E402


def cases(photos: Path) -> list[tuple[str, ConvertRequest]]:
    found = [("random 0.25_128", ConvertRequest(0.25, 128))]
    for alpha, res in ((0.25, 128), (0.5, 160)):
        weights = REFERENCE / f"mobilenet_v1_{alpha}_{res}_quant.tflite"
        if weights.exists():
            found.append((f"Google {alpha}_{res} + photos", ConvertRequest(alpha, res, weights, calib_dir=photos)))
    return found


def main() -> int:
    if not REFERENCE.is_dir():
        print(f"reference data absent ({REFERENCE}): only random weights are measured")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for photo in ("bird.bmp", "cat.bmp", "hot_dog.jpg"):
            if (REFERENCE / photo).exists():
                os.symlink(REFERENCE / photo, photos / photo)
        print(f"{'weights':26s} {'artifact':15s} {'prob|d|':>8s} {'logit|d|':>9s} {'cosine':>7s} "
              f"{'decisive':>8s} {'top1':>5s}  verdict (tolerance)")
        for label, request in cases(photos):
            request.out_dir = Path(tmp) / "models"
            try:
                manifest = convert_model(request).manifest
            except VerificationError as exc:
                manifest = exc.fields["result"].manifest
            for artifact in manifest["artifacts"]:
                v = artifact["verification"]
                top1 = "n/a" if v["top1_agreement"] is None else f"{v['top1_agreement']:.2f}"
                print(f"{label:26s} {artifact['format'] + '/' + artifact['precision']:15s} {v['max_abs_diff']:8.1e} "
                      f"{'inf' if v['max_logit_diff'] is None else format(v['max_logit_diff'], '.1e'):>9s} {v['cosine']:7.4f} {v['decisive_probes']:8d} {top1:>5s}  "
                      f"{'ok' if v['passed'] else 'FAILED'} {v['tolerance']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
