"""Time one .tflite model with LiteRT, on the device; print one JSON line.

This file is copied to the device and run there with its own Python, so it
uses only the standard library, numpy and ai_edge_litert, and imports nothing
from mbdeploy. It only loads, times and reports (STYLE.md section 6): the host
computes statistics and stores records.

Output (stdout, one line per --model, in order): {"schema": "mbdeploy.litert_runner/1",
"model", "samples_ms": [...], "init_ms", "first_inference_ms", "peak_memory_mb",
"stop_reason", ...} or {"schema": ..., "model", "error": "..."}; exit code 1 if any failed.
Several models in one process (`mbdeploy profile`'s single-layer models) pay
for the interpreter's start and LiteRT's import once; peak memory is then the
process's high-water mark so far.

With --round-robin the models are loaded together and invoked in turn, one
invoke each per round, each invoke timed alone: each model then runs with the
caches as the others leave them, as a layer does inside its graph (a layer
timed alone back to back keeps its weights in cache, which in the graph the
other layers evict). The loop stops when every model's interval meets
--target-ci (after --min-secs) or at --max-secs, which bound the whole loop.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time

SCHEMA = "mbdeploy.litert_runner/1"


# --- A self-contained copy of mbdeploy.records.stats.median_ci / stop_reason --------
# Kept here because this script must run on a board without mbdeploy;
# tests/test_stats.py checks both copies give the same answers.
def _ci_rank(n, tail):
    log_half_n = n * math.log(0.5)
    log_n_factorial = math.lgamma(n + 1)
    start = max(0, int(n / 2 - 6 * math.sqrt(n)))  # the mass below is < 1e-32
    cumulative = 0.0
    rank = start
    for k in range(start, n // 2 + 1):
        cumulative += math.exp(log_n_factorial - math.lgamma(k + 1) - math.lgamma(n - k + 1) + log_half_n)
        if cumulative > tail:
            break
        rank = k + 1
    return rank


def median_ci(samples, confidence=0.95):
    ordered = sorted(samples)
    rank = _ci_rank(len(ordered), (1.0 - confidence) / 2.0)
    if rank < 1:
        return None
    return ordered[rank - 1], ordered[len(ordered) - rank]


def _median(ordered):
    n = len(ordered)
    middle = n // 2
    return ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0


def ci_half_width_fraction(samples):
    interval = median_ci(samples)
    if interval is None:
        return None
    median = _median(sorted(samples))
    if median <= 0:
        return None
    return (interval[1] - interval[0]) / 2.0 / median


def stop_reason(samples, elapsed_s, min_secs, max_secs, runs, target_ci):
    if runs is not None:
        return "runs" if len(samples) >= runs else None
    if elapsed_s >= max_secs:
        return "max_secs"
    if elapsed_s >= min_secs:
        width = ci_half_width_fraction(samples)
        if width is not None and width <= target_ci:
            return "target_ci"
    return None


# --- Energy over exactly the timed loop (Linux RAPL) ----------------------------
# Same zone rules as mbdeploy.devices.sensors.parse_rapl: top-level zones only, and no
# `psys` when package zones exist (it contains them).
def read_rapl(root):
    import glob
    import os

    zones = {}
    for path in glob.glob(os.path.join(root, "sys/class/powercap/intel-rapl:*/energy_uj")):
        zone = os.path.basename(os.path.dirname(path))
        if zone.count(":") != 1:
            continue
        try:
            with open(path) as handle:
                energy = int(handle.read().strip())
        except (OSError, ValueError):
            continue  # root-only on recent kernels: then there is simply no figure
        folder = os.path.dirname(path)
        try:
            with open(os.path.join(folder, "name")) as handle:
                name = handle.read().strip()
        except OSError:
            name = zone
        try:
            with open(os.path.join(folder, "max_energy_range_uj")) as handle:
                wrap = int(handle.read().strip())
        except (OSError, ValueError):
            wrap = None
        zones[zone] = (name, energy, wrap)
    if any(name.startswith("package") for name, _, _ in zones.values()):
        zones = {zone: entry for zone, entry in zones.items() if not entry[0].startswith("psys")}
    return zones


def rapl_delta_uj(before, after):
    total = 0
    for zone, (_, start, wrap) in before.items():
        if zone in after:
            delta = after[zone][1] - start
            if delta < 0 and wrap:
                delta += wrap
            total += max(delta, 0)
    return total


# --- Measuring ---------------------------------------------------------------
def random_input(detail, rng):
    import numpy as np

    shape = [int(d) for d in detail["shape"]]
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    if dtype == np.bool_:
        return rng.integers(0, 1, size=shape, endpoint=True).astype(np.bool_)
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


def peak_rss_mb():
    # ru_maxrss is in kilobytes on Linux (bytes on macOS, which this script does not target).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(args, model):
    started = time.perf_counter_ns()
    import numpy as np
    from ai_edge_litert import interpreter as litert

    import_ms = (time.perf_counter_ns() - started) / 1e6

    resolver = litert.OpResolverType.AUTO if args.xnnpack else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    init_start = time.perf_counter_ns()
    interpreter = litert.Interpreter(
        model_path=model, num_threads=args.threads, experimental_op_resolver_type=resolver
    )
    interpreter.allocate_tensors()
    init_ms = (time.perf_counter_ns() - init_start) / 1e6

    rng = np.random.default_rng(args.seed)
    inputs = interpreter.get_input_details()
    for detail in inputs:
        interpreter.set_tensor(detail["index"], random_input(detail, rng))

    invoke = interpreter.invoke
    clock = time.perf_counter_ns
    begin = clock()
    invoke()
    first_inference_ms = (clock() - begin) / 1e6

    for _ in range(args.warmup):
        invoke()

    samples = []
    next_check = 1
    energy_before = read_rapl(args.sysfs_root)
    loop_start = clock()
    reason = None
    while reason is None:
        begin = clock()
        invoke()
        end = clock()
        samples.append((end - begin) / 1e6)
        elapsed = (end - loop_start) / 1e9
        # Sorting for the interval is O(n log n): do it on a geometric schedule,
        # while the cheap count and time checks run after every invoke.
        if args.runs is not None or elapsed >= args.max_secs:
            reason = stop_reason(samples, elapsed, args.min_secs, args.max_secs, args.runs, args.target_ci)
        elif len(samples) >= next_check and elapsed >= args.min_secs:
            reason = stop_reason(samples, elapsed, args.min_secs, args.max_secs, args.runs, args.target_ci)
            next_check = len(samples) + max(1, len(samples) // 20)
    loop_s = (clock() - loop_start) / 1e9
    energy_after = read_rapl(args.sysfs_root) if energy_before else {}
    loop_energy = None
    if energy_before and energy_after:
        loop_energy = {"source": "rapl", "zones": sorted(name for name, _, _ in energy_before.values()),
                       "energy_uj": rapl_delta_uj(energy_before, energy_after), "seconds": loop_s}

    return {
        "schema": SCHEMA,
        "model": model,
        "samples_ms": [round(s, 5) for s in samples],
        "init_ms": init_ms,
        "import_ms": import_ms,
        "first_inference_ms": first_inference_ms,
        "peak_memory_mb": peak_rss_mb(),
        "stop_reason": reason,
        "loop_s": loop_s,
        "loop_energy": loop_energy,
        "threads": args.threads,
        "xnnpack": args.xnnpack,
        "inputs": [{"shape": [int(d) for d in x["shape"]], "dtype": np.dtype(x["dtype"]).name} for x in inputs],
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }


def measure_round_robin(args):
    """Every --model loaded, then invoked in turn; one result per model, in order (an error where one failed)."""
    started = time.perf_counter_ns()
    import numpy as np
    from ai_edge_litert import interpreter as litert

    import_ms = (time.perf_counter_ns() - started) / 1e6
    resolver = litert.OpResolverType.AUTO if args.xnnpack else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    rng = np.random.default_rng(args.seed)
    clock = time.perf_counter_ns
    results, live = [], []
    for model in args.model:
        try:
            init_start = clock()
            interpreter = litert.Interpreter(model_path=model, num_threads=args.threads,
                                             experimental_op_resolver_type=resolver)
            interpreter.allocate_tensors()
            init_ms = (clock() - init_start) / 1e6
            inputs = interpreter.get_input_details()
            for detail in inputs:
                interpreter.set_tensor(detail["index"], random_input(detail, rng))
            begin = clock()
            interpreter.invoke()
            first_ms = (clock() - begin) / 1e6
        except Exception as exc:  # reported per model, the others still run
            results.append({"schema": SCHEMA, "model": model, "error": f"{type(exc).__name__}: {exc}"})
            continue
        entry = {"model": model, "invoke": interpreter.invoke, "init_ms": init_ms, "first_inference_ms": first_ms,
                 "inputs": [{"shape": [int(d) for d in x["shape"]], "dtype": np.dtype(x["dtype"]).name}
                            for x in inputs], "samples": [], "reason": None, "next_check": 1}
        results.append(entry)
        live.append(entry)
    for _ in range(args.warmup):
        for entry in live:
            entry["invoke"]()
    loop_start = clock()
    waiting = list(live)
    while waiting:
        for entry in live:  # every model every round, so the cache state stays the graph's
            begin = clock()
            entry["invoke"]()
            end = clock()
            if entry["reason"] is None:
                entry["samples"].append((end - begin) / 1e6)
        elapsed = (clock() - loop_start) / 1e9
        for entry in waiting:
            count = len(entry["samples"])
            if args.runs is not None or elapsed >= args.max_secs or (
                    count >= entry["next_check"] and elapsed >= args.min_secs):
                entry["reason"] = stop_reason(entry["samples"], elapsed, args.min_secs, args.max_secs, args.runs,
                                              args.target_ci)
                entry["next_check"] = count + max(1, count // 20)
        waiting = [entry for entry in waiting if entry["reason"] is None]
    loop_s = (clock() - loop_start) / 1e9
    out = []
    for entry in results:
        if "error" in entry:
            out.append(entry)
            continue
        out.append({"schema": SCHEMA, "model": entry["model"], "samples_ms": [round(x, 5) for x in entry["samples"]],
                    "init_ms": entry["init_ms"], "import_ms": import_ms,
                    "first_inference_ms": entry["first_inference_ms"], "peak_memory_mb": peak_rss_mb(),
                    "stop_reason": entry["reason"], "loop_s": loop_s, "schedule": "round_robin",
                    "threads": args.threads, "xnnpack": args.xnnpack, "inputs": entry["inputs"],
                    "python": sys.version.split()[0], "numpy": np.__version__})
    return out

# --- Outputs on probe inputs (bench --check-outputs) ---------------------------
def probe_outputs(args, model):
    """Run each probe input (float, as the manifest's preprocessing gives it) and return the float outputs.

    Same interpreter settings as the timed run (threads, XNNPACK or not). An integer
    input is quantized with the tensor's own scale and zero point, an integer output
    dequantized, as the host's verification does.
    """
    import numpy as np
    from ai_edge_litert import interpreter as litert

    resolver = litert.OpResolverType.AUTO if args.xnnpack else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = litert.Interpreter(model_path=model, num_threads=args.threads,
                                     experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    [source] = interpreter.get_input_details()
    [target] = interpreter.get_output_details()
    probes = np.load(args.probes, allow_pickle=False)
    outputs = []
    for probe in probes:
        x = probe[None, ...].astype(np.float32)
        dtype = np.dtype(source["dtype"])
        if np.issubdtype(dtype, np.integer):
            scale, zero = source["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        interpreter.set_tensor(source["index"], x.astype(dtype))
        interpreter.invoke()
        y = interpreter.get_tensor(target["index"]).astype(np.float32)
        if np.issubdtype(np.dtype(target["dtype"]), np.integer):
            scale, zero = target["quantization"]
            y = (y - zero) * scale
        outputs.append([float(v) for v in y.reshape(-1)])
    return {"schema": SCHEMA, "model": model, "probe_outputs": outputs, "threads": args.threads,
            "xnnpack": args.xnnpack}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, action="append", help="repeat to time several models in turn")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-xnnpack", dest="xnnpack", action="store_false")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--min-secs", type=float, default=1.0)
    parser.add_argument("--max-secs", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--target-ci", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--round-robin", action="store_true",
                        help="load every --model, invoke them in turn (see the module docstring)")
    parser.add_argument("--sysfs-root", default="/", help="where sysfs is mounted (tests use a fake tree)")
    parser.add_argument("--probes", default=None, help="a .npy of probe inputs: print the outputs, time nothing")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    status = 0
    if args.round_robin:
        try:
            results = measure_round_robin(args)
        except Exception as exc:  # e.g. LiteRT missing: every model gets the error
            results = [{"schema": SCHEMA, "model": m, "error": f"{type(exc).__name__}: {exc}"} for m in args.model]
        for result in results:
            status = 1 if "error" in result else status
            print(json.dumps(result), flush=True)
        return status
    for model in args.model:
        try:
            result = probe_outputs(args, model) if args.probes else measure(args, model)
        except Exception as exc:  # reported to the host as data, never as a traceback
            result = {"schema": SCHEMA, "model": model, "error": f"{type(exc).__name__}: {exc}"}
            status = 1
        print(json.dumps(result), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
