"""Convert speed (issue 2 targets), measured through the real CLI.

- 0.75_192 to fp32+fp16+int8 with verification: <= 30 s
- the 16-model grid in those three precisions: <= 6 min
- a re-run over the up-to-date grid: <= 10 s
- `mbdeploy --help`: < 1 s (median of 5)

Run: .venv/bin/python benchmarks/bench_convert.py [--skip-grid]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MBDEPLOY = [sys.executable, "-m", "mbdeploy"]


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(MBDEPLOY + args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-grid", action="store_true")
    args = parser.parse_args()
    precisions = ["--formats", "tflite", "--precisions", "fp32,fp16,int8"]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        help_times = [timed(["--help"]) for _ in range(5)]
        print(f"mbdeploy --help: median {statistics.median(help_times):.2f} s (target < 1 s)")
        single = timed(["convert", "--alpha", "0.75", "--res", "192", "--out", str(out / "one"), *precisions])
        print(f"convert 0.75_192 fp32+fp16+int8 with verification: {single:.1f} s (target <= 30 s)")
        if args.skip_grid:
            return
        grid = timed(["convert", "--grid", "--out", str(out / "grid"), *precisions])
        print(f"convert --grid (16 models x 3 precisions) with verification: {grid:.1f} s (target <= 360 s)")
        rerun = timed(["convert", "--grid", "--out", str(out / "grid"), *precisions])
        print(f"re-run over the up-to-date grid: {rerun:.2f} s (target <= 10 s)")


if __name__ == "__main__":
    main()
