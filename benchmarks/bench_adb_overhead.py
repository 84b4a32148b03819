"""Host overhead per model on the adb test device, through the real adb server.

Target (issue 5): push + setup + pull + parse <= 2 s per model. Measured side
by side in one run: our AndroidDevice.push (with its size/sha256 check) vs a
bare adbutils sync push, a shell round trip, pulling a sampler-sized file, and
parsing a benchmark_model transcript. Prints medians and the ratio to the target.

    .venv/bin/python benchmarks/bench_adb_overhead.py [--models 10] [--model PATH]
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

from mbdeploy.devices import android  # noqa: E402
from mbdeploy.runners.benchmark_output import parse_output  # noqa: E402
from mbdeploy.testing.adb_device import AdbServer, AdbTestDevice  # noqa: E402

TARGET_S = 2.0
REFERENCE_MODEL = ROOT.parent / "shared" / "reference" / "mobilenet_v1_0.25_128_quant.tflite"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=10, help="how many model pushes to time")
    parser.add_argument("--model", type=Path, default=REFERENCE_MODEL)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        if not model.is_file():  # no shared data: a random file of a small model's size
            model = tmp / "model.tflite"
            model.write_bytes(bytes(range(256)) * 1900)
        model_bytes = model.stat().st_size
        transcript = (ROOT / "tests/transcripts/litert_xnnpack_percentiles.txt").read_text()
        trace = tmp / "trace.txt"
        trace.write_text("".join(f"b {i / 20:.2f} -250000 3900000\n" for i in range(400)))
        with AdbServer() as server, AdbTestDevice(tmp / "root") as phone:
            server.connect(phone)
            device = android.resolve(phone.serial, server.address)
            work = device.workdir
            phone_trace = f"{work}/power/trace.txt"
            device.push(trace, phone_trace)
            ours, bare, shell, pull, parse, total = [], [], [], [], [], []
            for index in range(args.models):
                remote = f"{work}/models/{index}/{model.name}"
                start = time.perf_counter()
                ours.append(timed(lambda: device.push(model, remote)))
                shell.append(timed(lambda: device.shell(["rm", "-f", remote])))
                pull.append(timed(lambda: device.pull(phone_trace, tmp / "pulled.txt")))
                parse.append(timed(lambda: parse_output(transcript)))
                total.append((time.perf_counter() - start) * 1e3)
                bare.append(timed(lambda: device._adb.sync.push(model, f"{work}/bare.tflite")))
            device.close()
    rows = [("push + size/sha256 check", ours), ("bare adbutils sync push", bare), ("shell round trip", shell),
            ("pull 400-line sampler file", pull), ("parse benchmark_model output", parse),
            ("per-model host overhead", total)]
    print(f"model {model.name} ({model_bytes} bytes), {args.models} pushes")
    for name, values in rows:
        print(f"  {name:32s} median {statistics.median(values):8.2f} ms")
    print(f"  push check overhead ratio (ours / bare)  {statistics.median(ours) / statistics.median(bare):.2f}")
    print(f"  per-model overhead / {TARGET_S:.0f} s target      {statistics.median(total) / (TARGET_S * 1e3):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
