"""Throughput: the 16-model grid (fp32, `local`, 2 threads) benched to the 2% CI target.

Target (issue 4): the whole sweep in <= 6 min on the 2-core dev machine.
Converts the grid once into a cache folder (not timed), then times one
`mbdeploy bench` run over it, as a user would start it, and prints each
model's median, CI half-width, sample count and why it stopped.

    .venv/bin/python benchmarks/bench_throughput.py [--models DIR] [--threads 2] [--target-ci 0.02]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mbdeploy.architecture import GRID_ALPHAS, GRID_RESOLUTIONS  # noqa: E402


def convert_grid(out: Path) -> None:
    from mbdeploy.convert import ConvertRequest, convert_model

    for alpha in GRID_ALPHAS:
        for resolution in GRID_RESOLUTIONS:
            started = time.monotonic()
            result = convert_model(ConvertRequest(alpha=alpha, resolution=resolution, out_dir=out,
                                                  formats=["tflite"], precisions=["fp32"], verify=False))
            state = "reused" if result.reused else "built"
            print(f"  {result.manifest['name']}: {state} in {time.monotonic() - started:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "mbdeploy-bench-models")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target-ci", type=float, default=0.02)
    parser.add_argument("--min-secs", type=float, default=1.0)
    parser.add_argument("--max-secs", type=float, default=10.0)
    args = parser.parse_args()

    print(f"converting the grid into {args.models} (cached; not part of the timing)")
    convert_grid(args.models)
    out = Path(tempfile.mkdtemp(prefix="mbd-throughput-"))
    command = [sys.executable, "-m", "mbdeploy", "bench", "--device", "local", "--models", str(args.models),
               "--precisions", "fp32", "--threads", str(args.threads), "--target-ci", str(args.target_ci),
               "--min-secs", str(args.min_secs), "--max-secs", str(args.max_secs), "--out", str(out), "--json"]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"bench failed: {done.stderr.strip()}")
    result = json.loads(done.stdout)
    print(f"{'model':<24} {'median ms':>10} {'CI +/- %':>9} {'n':>6} {'stop':>10} {'GMAC/s':>7}")
    for row in sorted(result["summary"], key=lambda r: r["model"]):
        low, high = row["ci95_ms"] or (None, None)
        half = (high - low) / 2 / row["median_ms"] * 100 if low is not None else float("nan")
        print(f"{row['model']:<24} {row['median_ms']:>10.3f} {half:>9.2f} {row['count']:>6} "
              f"{row['stop_reason']:>10} {row['gmacs_per_s'] or 0:>7.2f}")
    stops = [row["stop_reason"] for row in result["summary"]]
    print(f"{len(stops)} models in {wall:.1f} s wall ({wall / 60:.2f} min; target <= 6 min: "
          f"{'met' if wall <= 360 else 'NOT met'}); {stops.count('target_ci')} reached the CI target, "
          f"{stops.count('max_secs')} hit --max-secs; run folder {result['run_dir']}")


if __name__ == "__main__":
    main()
