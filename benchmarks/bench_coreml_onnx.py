"""Wall time of the Core ML and ONNX exports, with verification, for 0.75_192.

Target (issue 3): Core ML fp16 + int8 and ONNX fp32 + int8 of
mobilenet_v1_0.75_192, each verified, in <= 40 s on this machine. Runs the
real `convert_model` (fresh output folder, random weights, synthetic
calibration) and prints the time of each stage as the pipeline reports it,
the total, its ratio to the target, and the verification figures.

    .venv/bin/python benchmarks/bench_coreml_onnx.py [--alpha 0.75] [--res 192]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mbdeploy.convert import ConvertRequest, convert_model  # noqa: E402

TARGET_S = 40.0
PRECISIONS = ["coreml:fp16", "coreml:int8", "onnx:fp32", "onnx:int8"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("--res", type=int, default=192)
    args = parser.parse_args()
    stages: list[tuple[str, float]] = []
    start = time.perf_counter()

    def progress(message: str) -> None:
        stages.append((message, time.perf_counter()))

    with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-weights notice
        request = ConvertRequest(args.alpha, args.res, out_dir=Path(out), formats=["coreml", "onnx"],
                                 precisions=PRECISIONS)
        result = convert_model(request, progress=progress)
    total = time.perf_counter() - start

    print(f"convert {result.manifest['name']} ({', '.join(PRECISIONS)}), verified:")
    marks = [("start", start)] + stages + [("end", start + total)]
    for (name, begin), (_, end) in zip(marks[:-1], marks[1:]):
        print(f"  {end - begin:6.1f} s  {name}")
    for artifact in result.manifest["artifacts"]:
        v = artifact["verification"]
        print(f"  {artifact['format']}/{artifact['precision']:5s} {artifact['bytes'] / 1e6:6.2f} MB  "
              f"{v['verifier']}: max|d|={v['max_abs_diff']:.1e} cos={v['cosine']:.5f} "
              f"top1={v['top1_agreement']:.2f} {'ok' if v['passed'] else 'FAILED'}")
    print(f"total {total:.1f} s; target {TARGET_S:.0f} s; ratio {total / TARGET_S:.2f} "
          f"({'within' if total <= TARGET_S else 'over'} target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
