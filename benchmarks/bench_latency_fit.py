"""Latency versus MACs on this host: R^2 of the log-log fit and its leave-one-out error.

Targets (issue 6), over the 16-model grid in fp32 on `local`: R^2 >= 0.95 and
a median absolute leave-one-out prediction error <= 10%.

Runs the real pipeline through the library: converts the grid with random
weights into a cache folder (`mbdeploy.convert`, not timed; reused on later
runs), benchmarks it on the `local` device (`mbdeploy.bench`), then fits
with `mbdeploy.records.fit` the run's records as `report` and `select` do.

    .venv/bin/python benchmarks/bench_latency_fit.py [--models DIR] [--threads 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _grid_run import bench_local, convert_grid  # noqa: E402


def bench_grid(models: Path, out: Path, threads: int, max_secs: float) -> Path:
    from mbdeploy.runners.base import TimingOptions

    return bench_local(models, out, TimingOptions(threads=threads, min_secs=1.0, max_secs=max_secs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "mbdeploy-bench-models")
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="mbd-fit-")))
    parser.add_argument("--run", type=Path, default=None, help="Fit an existing run instead of benching.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-secs", type=float, default=10.0)
    args = parser.parse_args()

    from mbdeploy.records.reader import latest_ok, load_runs, tidy_rows
    from mbdeploy.records.fit import fit_groups, fit_key

    run = args.run
    if run is None:
        print(f"converting the fp32 grid into {args.models} (cached; random weights)", flush=True)
        convert_grid(args.models)
        started = time.monotonic()
        run = bench_grid(args.models, args.out, args.threads, args.max_secs)
        print(f"benched in {time.monotonic() - started:.0f} s: {run}", flush=True)
    rows = [r for r in latest_ok(tidy_rows(load_runs([run]))) if r["precision"] == "fp32"]
    fits = fit_groups(rows)
    if not fits:
        sys.exit(f"no fit: {len(rows)} successful fp32 records in {run}")
    for key, fit in fits.items():
        device, fmt, precision, config = key
        fitted = [r for r in rows if fit_key(r) == key]  # the order fit_groups fitted them in
        errors = dict(zip((r["model"] for r in fitted), fit.loo_errors))
        print(f"{'model':<24} {'MMACs':>7} {'median ms':>10} {'fit ms':>8} {'LOO error':>9}")
        for row in sorted(fitted, key=lambda r: r["macs_m"]):
            print(f"{row['model']:<24} {row['macs_m']:>7.1f} {row['latency_ms_median']:>10.3f} "
                  f"{fit.predict(row['macs_m'] * 1e6):>8.3f} {100 * errors[row['model']]:>+8.1f}%")
        loo = fit.loo_median_abs_error
        print(f"{device} {fmt} {precision} (config {config}, {fit.points} models): latency ~ MACs^{fit.slope:.3f}; "
              f"R^2 = {fit.r_squared:.4f} (target >= 0.95: {'met' if fit.r_squared >= 0.95 else 'NOT met'}); "
              f"median |leave-one-out error| = {100 * loo:.1f}% (target <= 10%: {'met' if loo <= 0.10 else 'NOT met'}); "
              f"max {100 * max(abs(e) for e in fit.loo_errors):.1f}%, mean {100 * statistics.fmean(map(abs, fit.loo_errors)):.1f}%")
    print(f"run folder: {run}")


if __name__ == "__main__":
    main()
