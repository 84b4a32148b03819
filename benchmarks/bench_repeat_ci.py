"""How much wider is the between-session CI than a single session's? (issue 15)

One model, K sessions on `local` through `mbdeploy bench --repeat K` (each a fresh
runner process with its own warm-up, as a user runs it). Prints every session's
median and its within-session 95% CI, the between-session 95% CI over the session
medians (its method), the ratio of widths (between / median of the within widths),
how many sessions' CIs miss the median of medians, and the load average at the start
and end (the host is shared: the ratio depends on what else runs).

    .venv/bin/python benchmarks/bench_repeat_ci.py [--model FILE.tflite] [--repeat 5] [--secs 2] [--rounds 1]

Without --model it converts mobilenet_v1_0.5_160 fp32 (random weights; latency does not
depend on them) into a cache folder once. --rounds N repeats the whole measurement
N times and prints the median and range of the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def default_model() -> Path:
    from mbdeploy.convert import ConvertRequest, convert_model
    from mbdeploy.manifest import artifact_file

    out = Path(tempfile.gettempdir()) / "mbdeploy-bench-models"
    result = convert_model(ConvertRequest(alpha=0.5, resolution=160, out_dir=out, formats=["tflite"],
                                          precisions=["fp32"], verify=False))
    [entry] = [a for a in result.manifest["artifacts"] if a["precision"] == "fp32"]
    return artifact_file(result.manifest_path, entry)


def one_round(model: Path, repeat: int, secs: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-repeat-"))
    try:
        shutil.copy(model, work / model.name)
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "XDG_CACHE_HOME": str(work / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        done = subprocess.run([sys.executable, "-m", "mbdeploy", "bench", "--device", "local", "--models",
                               str(work / model.name), "--repeat", str(repeat), "--min-secs", str(secs),
                               "--max-secs", str(secs), "--target-ci", "0.0001", "--out", str(work / "results"),
                               "--json"], env=env, capture_output=True, text=True, check=False, cwd=work)
        if done.returncode != 0:
            raise SystemExit(f"bench failed: {done.stderr.strip().splitlines()[-1:]}")
        run_dir = Path(json.loads(done.stdout)["run_dir"])
        if not run_dir.is_absolute():
            run_dir = work / run_dir
        records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
        [aggregate] = [r for r in records if "sessions" in r]
        return aggregate["sessions"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--secs", type=float, default=2.0, help="seconds per session (fixed: no early stop)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    model = args.model or default_model()
    print(f"model {model.name}, K = {args.repeat} sessions of {args.secs:g} s each, {args.rounds} round(s)")
    print(f"load average at start (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ratios = []
    for round_index in range(args.rounds):
        block = one_round(model, args.repeat, args.secs)
        within = [high - low for low, high in block["within_ci95_ms"]]
        between = block["between_ci95_high_ms"] - block["between_ci95_low_ms"]
        center = block["median_of_medians_ms"]
        missed = sum(1 for low, high in block["within_ci95_ms"] if not low <= center <= high)
        ratio = between / statistics.median(within)
        ratios.append(ratio)
        print(f"\nround {round_index + 1}")
        for median, (low, high) in zip(block["medians_ms"], block["within_ci95_ms"]):
            print(f"  session median {median:8.3f} ms   within CI95 {low:.3f}-{high:.3f} (width {high - low:.3f})")
        print(f"  between CI95 {block['between_ci95_low_ms']:.3f}-{block['between_ci95_high_ms']:.3f} ms "
              f"(width {between:.3f}; {block['between_method']})")
        print(f"  between width / median within width: {ratio:.1f}x; "
              f"{missed} of {len(within)} within-session CIs miss the median of session medians")
    if len(ratios) > 1:
        print(f"\nratio over {len(ratios)} rounds: median {statistics.median(ratios):.1f}x, "
              f"range {min(ratios):.1f}-{max(ratios):.1f}x")
    print(f"load average at end (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
