"""Fidelity: the harness's median against a bare LiteRT invoke loop timed in-process.

Target (issue 4): within 3% on the same model in the same run. The host is
shared and noisy, so the two are interleaved in short alternating blocks
(A B B A ...) and compared block by block: each pair's ratio sees the same
background load. Prints every pair, the median ratio and its spread.

    .venv/bin/python benchmarks/bench_fidelity.py [--model FILE.tflite] [--blocks 20] [--secs 1] [--threads 1]

Without --model it converts mobilenet_v1_0.75_192 fp32 (random weights; the
latency does not depend on them) into a cache folder once.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mbdeploy.devices.local import LocalDevice  # noqa: E402
from mbdeploy.runners.base import TimingOptions  # noqa: E402
from mbdeploy.records.store import DeviceLock  # noqa: E402
from mbdeploy.records.stats import median_ci  # noqa: E402
from mbdeploy.runners.litert import LiteRTRunner  # noqa: E402


def default_model(alpha: float, resolution: int) -> Path:
    from mbdeploy.convert import ConvertRequest, convert_model
    from mbdeploy.manifest import artifact_file

    out = Path(tempfile.gettempdir()) / "mbdeploy-bench-models"
    result = convert_model(ConvertRequest(alpha=alpha, resolution=resolution, out_dir=out, formats=["tflite"],
                                          precisions=["fp32"], verify=False))
    [entry] = [a for a in result.manifest["artifacts"] if a["format"] == "tflite" and a["precision"] == "fp32"]
    return artifact_file(result.manifest_path, entry)


class BareLoop:
    """The physical floor: one interpreter in this process, each invoke timed with perf_counter_ns."""

    def __init__(self, model: Path, threads: int) -> None:
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(model), num_threads=threads)
        self.interpreter.allocate_tensors()
        rng = np.random.default_rng(0)
        for detail in self.interpreter.get_input_details():
            self.interpreter.set_tensor(detail["index"], rng.uniform(-1, 1, detail["shape"]).astype(detail["dtype"]))
        for _ in range(5):
            self.interpreter.invoke()

    def median_ms(self, seconds: float) -> tuple[float, int]:
        invoke, clock, samples = self.interpreter.invoke, time.perf_counter_ns, []
        end = clock() + int(seconds * 1e9)
        while True:
            begin = clock()
            invoke()
            stop = clock()
            samples.append((stop - begin) / 1e6)
            if stop >= end:
                return statistics.median(samples), len(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("--resolution", type=int, default=192)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--secs", type=float, default=1.0, help="timed seconds per block")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    model = args.model or default_model(args.alpha, args.resolution)
    workdir = Path(tempfile.mkdtemp(prefix="mbd-fidelity-"))
    try:
        compare(model, workdir, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def compare(model: Path, workdir: Path, args: argparse.Namespace) -> None:
    device = LocalDevice(workdir=workdir)
    # Fixed-length blocks on both sides: the same number of seconds of the same model.
    runner = LiteRTRunner(TimingOptions(threads=args.threads, min_secs=args.secs, max_secs=args.secs,
                                        target_ci=1e-9, warmup_runs=5))
    runner.prepare(device)
    remote = str(Path(device.workdir) / model.name)
    device.push(model, remote)
    bare = BareLoop(model, args.threads)
    # Hold the device lock so no other `mbdeploy bench` times this host meanwhile.
    lock = DeviceLock("local", wait=True, on_wait=print)
    lock.acquire()

    print(f"model {model.name}, {args.threads} thread(s), {args.blocks} blocks of {args.secs:.1f} s each side")
    print(f"{'block':>5} {'order':>6} {'harness ms':>11} {'n':>6} {'bare ms':>9} {'n':>6} {'ratio':>7}")
    ratios = []
    for block in range(args.blocks):
        order = ("harness", "bare") if block % 2 == 0 else ("bare", "harness")
        medians = {}
        for side in order:
            if side == "harness":
                outcome = runner.run(device, remote)
                medians[side] = (statistics.median(outcome.samples_ms), len(outcome.samples_ms))
            else:
                medians[side] = bare.median_ms(args.secs)
        ratio = medians["harness"][0] / medians["bare"][0]
        ratios.append(ratio)
        print(f"{block:>5} {'H-B' if order[0] == 'harness' else 'B-H':>6} {medians['harness'][0]:>11.3f} "
              f"{medians['harness'][1]:>6} {medians['bare'][0]:>9.3f} {medians['bare'][1]:>6} {ratio:>7.3f}")
    ratios.sort()
    middle = statistics.median(ratios)
    interval = median_ci(ratios)
    ci_text = f"95% CI {interval[0]:.3f} - {interval[1]:.3f}" if interval else "too few blocks for a CI"
    print(f"median paired ratio harness/bare: {middle:.4f} ({(middle - 1) * 100:+.2f}%), {ci_text}; "
          f"range {ratios[0]:.3f} - {ratios[-1]:.3f}; target |ratio - 1| <= 3%: "
          f"{'met' if abs(middle - 1) <= 0.03 else 'NOT met'}")


if __name__ == "__main__":
    main()
