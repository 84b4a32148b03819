"""`report`, `compare` and `select` over a fleet and a history: 600, 6,000 and 30,000 records (issue 17).

Synthesises nightly runs of 100 devices x 6 artifacts (600 records a run) from
real records: by default the records the report tests write
(tests/support/records.py, each checked against the record schema), or with
`--template RUN` the records of a real run (e.g. one from benchmarks/bench_report.py).
Each copy gets its own device id, model, date and latency (a device speed
factor, a per-night jitter, and a 20% slow-down on a few devices in the last
night, so the history has regressions to mark). Every copy is checked against
the schema once before it is written.

For each size it prints the wall time and peak memory of `mbdeploy report`
with no index (cold), again after one new run is added, once more with nothing
changed (runs from the index, figures from the figure cache), `compare` of the last
two runs and `select` over every run, each in a fresh process (the peak is the
child's ru_maxrss, measured by a wrapper process so one command's peak is not
another's), `--repeats` times, median and range. The CPU time (user + system) is
printed beside the wall time: on a machine shared with other work the wall time
grows with the load average, the CPU time much less.

Targets on a 2-core machine: 30,000 records report <= 10 s cold, <= 3 s after
a new run, peak <= 500 MB, compare and select <= 2 s; 600 records over 100
devices <= 5 s.

    .venv/bin/python benchmarks/bench_report_scale.py [--sizes 600,6000,30000] [--repeats 3] [--template RUN]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

DEVICES = 100
ARTIFACTS = (("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"))  # x 2 models = 6 per device
TARGETS = {"report cold": 10.0, "report after a new run": 3.0, "report again, no change": None, "compare": 2.0,
           "select": 2.0}
SMALL_TARGET_S = 5.0
PEAK_TARGET_MB = 500.0

# The wrapper: runs one command, prints its wall time and its own child's peak RSS (KiB on Linux).
WRAPPER = """
import resource, subprocess, sys, time
started = time.monotonic()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.monotonic() - started
if done.returncode:
    sys.exit(done.stderr[-2000:])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(wall, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)
"""


def templates(run: Path | None) -> list[dict]:
    if run is not None:
        from mbdeploy.records.reader import load_runs

        records = [r for r in load_runs([run])[0].records if r["status"] == "ok"]
        if not records:
            sys.exit(f"{run}: no successful record to copy")
        return records
    from mbdeploy.architecture import ModelSpec
    from support.records import make_record, power_law_latency

    out = []
    for alpha, resolution in ((0.25, 128), (1.0, 224)):
        spec = ModelSpec(alpha, resolution)
        for fmt, precision in ARTIFACTS:
            factor = 0.6 if precision == "int8" else 1.0
            out.append(make_record("template", spec, median=power_law_latency(spec) * factor, fmt=fmt,
                                   precision=precision, energy_mj=power_law_latency(spec) * 2.0,
                                   weights_source="keras"))  # published top-1, so select has accuracy
    return out


def synthesise(root: Path, runs: int, base: list[dict], start: int = 0) -> list[Path]:
    """`runs` nightly runs of DEVICES devices, each with the templates' artifacts (6 of them by default)."""
    from mbdeploy.records.schema import validate_record
    from mbdeploy.records.store import RECORDS_FILE, RUN_FILE, RUN_SCHEMA

    rng = random.Random(17)
    speed = [0.5 + 2.5 * rng.random() for _ in range(DEVICES)]
    day0 = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)
    written = []
    per_device = base[:6] if len(base) >= 6 else base
    for night in range(start, start + runs):
        jitter = random.Random(night)
        run_id = f"night-{night:04d}"
        when = (day0 + timedelta(days=night)).strftime("%Y-%m-%dT%H:%M:%SZ")
        folder = root / run_id
        folder.mkdir(parents=True)
        lines = []
        for device in range(DEVICES):
            slow = 1.2 if night == start + runs - 1 and device % 25 == 0 and night > 0 else 1.0
            for template in per_device:
                record = copy.deepcopy(template)
                factor = speed[device] * (1 + 0.02 * jitter.gauss(0, 1)) * slow
                latency = record["latency_ms"]
                for key in ("median", "mean", "p5", "p90", "p95", "p99", "std", "min", "max", "ci95_low",
                            "ci95_high"):
                    if latency.get(key) is not None:
                        latency[key] = latency[key] * factor
                if (record.get("power") or {}).get("energy_mj") is not None:
                    # Energy moves with time at a steady power: every figure of a new night has new data.
                    record["power"] = {**record["power"], "energy_mj": record["power"]["energy_mj"] * factor}
                record.update(run_id=run_id, started_at=when, finished_at=when)
                record["device"] = {**record["device"], "id": f"phone-{device:03d}", "kind": "android",
                                    "model": f"Model {device % 17}", "soc": f"SoC {device % 9}"}
                validate_record(record)
                lines.append(json.dumps(record))
        (folder / RECORDS_FILE).write_text("\n".join(lines) + "\n")
        (folder / RUN_FILE).write_text(json.dumps({"schema": RUN_SCHEMA, "run_id": run_id, "created_at": when,
                                                   "tools": {"mbdeploy": "0.1.0"}, "label": f"commit {night:07x}"}))
        written.append(folder)
    return written


def measure(args: list[str], cwd: Path) -> tuple[float, float, float]:
    """(wall s, peak MB, CPU s) of one mbdeploy command in a fresh process."""
    done = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "mbdeploy", *args], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode:
        sys.exit(f"mbdeploy {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    wall, kib, cpu = done.stdout.split()
    return float(wall), int(kib) / 1024, float(cpu)


def summary(values: list[float], unit: str) -> str:
    return f"{statistics.median(values):.2f} {unit} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="600,6000,30000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--template", type=Path, default=None, help="a real run folder whose records are copied")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic results")
    args = parser.parse_args()
    base = templates(args.template)
    per_run = DEVICES * min(len(base), 6)
    print(f"load average {os.getloadavg()[0]:.2f}; {per_run} records a run ({DEVICES} devices); "
          f"{args.repeats} repeats, median (range)")
    work = Path(tempfile.mkdtemp(prefix="mbd-report-scale-"))
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            runs = max(1, size // per_run)
            root = work / f"results-{size}"
            synthesise(root, runs, base)
            results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in TARGETS}
            for repeat in range(args.repeats):
                # Cold: no run index and no earlier report (so no figure cache either).
                (root / ".mbdeploy-index.sqlite").unlink(missing_ok=True)
                out = work / f"report-{size}"
                shutil.rmtree(out, ignore_errors=True)
                results["report cold"].append(measure(["report", str(root), "--out", str(out)], work))
                added = synthesise(root, 1, base, start=runs + repeat)[0]
                results["report after a new run"].append(measure(["report", str(root), "--out", str(out)], work))
                # The same report again: every run from the index, every figure from the figure cache.
                results["report again, no change"].append(measure(["report", str(root), "--out", str(out)], work))
                shutil.rmtree(added)
                names = sorted(p.name for p in root.iterdir() if p.is_dir())
                pair = names[-2:] if len(names) > 1 else names * 2
                results["compare"].append(measure(["compare", str(root / pair[0]), str(root / pair[1])], work))
                results["select"].append(measure(["select", "--device", "phone-007", "--budget-ms", "50",
                                                  "--results", str(root)], work))
            print(f"\n{runs * per_run:,} records ({runs} run(s)):")
            for name, measured in results.items():
                walls, peaks, cpus = ([m[i] for m in measured] for i in range(3))
                target = SMALL_TARGET_S if runs == 1 and name == "report cold" else TARGETS[name]
                wall = statistics.median(walls)
                verdict = ("no target" if target is None else f"target <= {target:g} s and <= {PEAK_TARGET_MB:g} MB: "
                           + ('met' if wall <= target and max(peaks) <= PEAK_TARGET_MB else 'NOT met'))
                print(f"  {name:24s} wall {summary(walls, 's')}, CPU {summary(cpus, 's')}, "
                      f"peak {summary(peaks, 'MB')}; {verdict}")
            print(f"  load average now {os.getloadavg()[0]:.2f}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
