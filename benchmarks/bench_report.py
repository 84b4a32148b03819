"""`mbdeploy report` over a 16-model run: wall time as a user sees it, target <= 15 s (issue 6).

Times the command end to end in a fresh process (Python start-up, imports,
reading the run, six figures in PNG and SVG, results.csv, index.html), three
times, and prints the median beside the in-process time of `write_report`
alone. The run is a real one: pass `--run DIR` (e.g. the run folder printed
by benchmarks/bench_latency_fit.py), or the script converts the fp32 grid
(cached, random weights) and benches it quickly on `local` (20 timed runs per model).

    .venv/bin/python benchmarks/bench_report.py [--run DIR] [--models DIR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_S = 15.0


def quick_run(models: Path, out: Path) -> Path:
    from _grid_run import bench_local, convert_grid
    from mbdeploy.runners.base import TimingOptions

    convert_grid(models)
    return bench_local(models, out, TimingOptions(threads=1, runs=20, warmup_runs=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "mbdeploy-bench-models")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mbd-report-bench-"))
    run = args.run or quick_run(args.models, work / "results")
    from mbdeploy.report import write_report

    started = time.monotonic()
    report = write_report([run], work / "in-process", [args.models])
    in_process = time.monotonic() - started
    walls = []
    for i in range(args.repeats):
        out = work / f"cli-{i}"
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "mbdeploy", "report", str(run), "--out", str(out),
                               "--models", str(args.models)], cwd=ROOT, capture_output=True, text=True)
        walls.append(time.monotonic() - started)
        if done.returncode != 0:
            sys.exit(f"report failed: {done.stderr.strip()}")
    median = statistics.median(walls)
    drawn = sum(f.png is not None for f in report.figures)
    print(f"run {run}: {report.records} records; {drawn} of 6 figures drawn "
          f"({', '.join(f.name for f in report.figures if f.png is None) or 'none'} without data)")
    print(f"write_report in process: {in_process:.2f} s; `mbdeploy report` wall, median of {len(walls)}: "
          f"{median:.2f} s (runs: {', '.join(f'{w:.2f}' for w in walls)}); target <= {TARGET_S:.0f} s: "
          f"{'met' if median <= TARGET_S else 'NOT met'}; ratio to target {median / TARGET_S:.2f}")
    print(f"page: {out / 'index.html'}")


if __name__ == "__main__":
    main()
