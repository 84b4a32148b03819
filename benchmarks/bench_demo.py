"""Wall time of the main job (`make demo`) on this machine, step by step.

Target (issue 13, item 29): the demo converts and benches four members of the
family in fp32 and int8 and writes the report within about 3 minutes. Runs the
Makefile's own demo recipe (as `make -n demo` prints it) in a fresh temporary
folder with this interpreter standing in for `.venv/bin/mbdeploy`, and prints
each step's wall time, the total and its ratio to the target, and how many
points the report's latency-versus-MACs fit got.

The install step (`pip install -e '.[all,test]'`) is not part of the timing: with
`.venv` present it is a stamp check; on a fresh machine it downloads about 1.5 GB
(TensorFlow) and its time is the network's. Run it a few times on a quiet
machine; other work on the 2 cores shows up directly in the convert steps.

    .venv/bin/python benchmarks/bench_demo.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 180.0


def demo_steps(bin_dir: Path, stamp: Path) -> list[str]:
    printed = subprocess.run(["make", "-s", "-n", "-f", str(ROOT / "Makefile"), "-o", str(stamp), "demo",
                              f"BIN={bin_dir}", f"STAMP={stamp}"], capture_output=True, text=True, check=True)
    return [line for line in printed.stdout.splitlines() if line.startswith(str(bin_dir))]


def run_once(steps: list[str], work: Path, env: dict) -> list[tuple[str, float]]:
    timings = []
    for step in steps:
        start = time.perf_counter()
        subprocess.run(shlex.split(step), cwd=work, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        timings.append((step, time.perf_counter() - start))
    return timings


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    totals = []
    for attempt in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            bin_dir, stamp, work = tmp / "bin", tmp / "stamp", tmp / "work"
            bin_dir.mkdir()
            work.mkdir()
            stamp.touch()
            (bin_dir / "mbdeploy").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m mbdeploy \"$@\"\n")
            (bin_dir / "mbdeploy").chmod(0o755)
            env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp / "cache")}
            timings = run_once(demo_steps(bin_dir, stamp), work, env)
            total = sum(seconds for _, seconds in timings)
            totals.append(total)
            print(f"run {attempt + 1}:")
            for step, seconds in timings:
                print(f"  {seconds:6.1f} s  {step.replace(str(bin_dir) + '/', '')[:110]}")
            fits = json.loads(subprocess.run([sys.executable, "-m", "mbdeploy", "report", "--out", str(tmp / "r"),
                                              "--json"], cwd=work, env=env, capture_output=True, text=True,
                                             check=True).stdout)["fits"]
            print("  report fits: " + "; ".join(f"{f['precision']} {f['points']} points, R^2 "
                                                 f"{f['r_squared'] if f['r_squared'] is None else round(f['r_squared'], 3)}"
                                                 for f in fits))
    median = statistics.median(totals)
    spread = f" (min {min(totals):.1f}, max {max(totals):.1f})" if len(totals) > 1 else ""
    print(f"total median {median:.1f} s{spread}; target {TARGET_S:.0f} s; ratio {median / TARGET_S:.2f} "
          f"({'within' if median <= TARGET_S else 'over'} target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
