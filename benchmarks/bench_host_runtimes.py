"""Seconds per image of each format's host runtime (`predictor(path)`, what verify and eval use).

Converts one model (default 1.0_224, random weights, no verification) in
TFLite fp32, Core ML fp16 and ONNX fp32, then times each format's predictor
on the same synthetic images in alternating rounds, one image per call as
eval feeds it. Prints the median and range per format and each one's ratio
to the fastest: Core ML off macOS is the numpy executor, the slow one.

    .venv/bin/python benchmarks/bench_host_runtimes.py [--alpha 1.0] [--res 224] [--images 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mbdeploy.convert import ConvertRequest, convert_model  # noqa: E402
from mbdeploy.export import installed_formats, predictor  # noqa: E402
from mbdeploy.preprocessing import synthetic_images  # noqa: E402

PRECISION = {"tflite": "fp32", "coreml": "fp16", "onnx": "fp32"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    formats = installed_formats()
    with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-weights notice
        result = convert_model(ConvertRequest(args.alpha, args.res, out_dir=Path(out), formats=formats,
                                              precisions=[f"{f}:{PRECISION.get(f, 'fp32')}" for f in formats],
                                              verify=False))
        folder = result.manifest_path.parent
        predictors = {f"{a['format']}/{a['precision']}": predictor(a["format"], folder / a["path"])
                      for a in result.manifest["artifacts"]}
        images = synthetic_images(args.images, args.res, seed=1)
        for predict in predictors.values():
            predict(images[0])  # warm-up: first-call allocation is not per-image cost
        times: dict[str, list[float]] = {name: [] for name in predictors}
        for _ in range(args.rounds):  # alternate formats so machine load hits all alike
            for name, predict in predictors.items():
                for image in images:
                    begin = time.perf_counter()
                    predict(image)
                    times[name].append(time.perf_counter() - begin)
    medians = {name: statistics.median(values) for name, values in times.items()}
    fastest = min(medians.values())
    print(f"{result.manifest['name']}: seconds per image, {args.rounds} rounds x {args.images} images")
    for name, values in times.items():
        print(f"  {name:12s} median {medians[name]:7.3f} s  range {min(values):.3f}-{max(values):.3f}  "
              f"x{medians[name] / fastest:5.1f} of the fastest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
