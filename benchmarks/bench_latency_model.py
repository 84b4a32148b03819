"""The layer latency model against the power law, out of sample, on this host.

Targets (issue 14), fp32 on `local`: the layer model's median |error| <= 3% and
max <= 10% over the grid models it did not see; profiling one model's layers to
a 2% CI per layer in <= 60 s.

One run, side by side: converts the 16-model fp32 grid (cached, random
weights, not timed), benchmarks all 16 whole on `local` (`mbdeploy.bench`) in
`--rounds` rounds, each in a fresh random order, and takes each model's median
over the rounds (on a shared machine the load drifts within a minute; rounds in
shuffled order spread that drift over all models instead of biasing the last ones),
profiles at most 4 of them layer by layer (`mbdeploy.profile`, single-layer
method), fits the layer model (`mbdeploy.records.layer_model`) on those
profiles and the bench's whole times, and predicts the other models. The
power law gets its most favourable setting, what `select` uses: fitted on all
the other 15 whole models (leave-one-out), evaluated on the same held-out
models. The last line is the comparison.

    .venv/bin/python benchmarks/bench_latency_model.py [--profile 1.0_224,0.25_128,1.0_128,0.25_224]
        [--threads 1] [--out DIR] [--models DIR]
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

from _grid_run import convert_grid  # noqa: E402

# The grid's four corners: every other model lies inside them in alpha and resolution.
DEFAULT_PROFILED = "1.0_224,0.25_128,1.0_128,0.25_224"


def bench_rounds(models: Path, out: Path, timing, rounds: int, seed: int = 0) -> tuple[list[Path], dict]:
    """Every fp32 model of `models` benched whole `rounds` times, each round in a fresh random order.

    Returns the run folders, per model (MACs, median over the rounds of each round's median), and per
    model the fastest invoke of any round (a load-robust figure, for a diagnostic line).
    """
    import random

    from mbdeploy import bench
    from mbdeploy.devices.registry import describe, resolve
    from mbdeploy.records.reader import load_runs

    options = bench.BenchOptions(timing=timing)
    devices = resolve("local")
    infos = [describe(d).to_dict() for d in devices]
    artifacts = bench.collect_artifacts([models], ["fp32"], ["tflite"])
    order = random.Random(seed)
    folders = []
    try:
        for _ in range(rounds):
            shuffled = order.sample(artifacts, len(artifacts))
            folder = bench.start_run(out, options, [models], infos, command=sys.argv)
            bench.run_sweep(devices, infos, shuffled, folder, options)
            folders.append(folder.path)
    finally:
        for device in devices:
            device.close()
    medians: dict[str, list[float]] = {}
    minima: dict[str, list[float]] = {}
    macs: dict[str, int] = {}
    for run in load_runs(folders):
        for record in run.records:
            if record["status"] == "ok":
                medians.setdefault(record["artifact"]["name"], []).append(record["latency_ms"]["median"])
                minima.setdefault(record["artifact"]["name"], []).append(record["latency_ms"]["min"])
                macs[record["artifact"]["name"]] = record["artifact"]["macs"]
    return (folders, {name: (macs[name], statistics.median(values)) for name, values in medians.items()},
            {name: (macs[name], min(values)) for name, values in minima.items()})


def profile_local(models: list[Path], out: Path, timing) -> tuple[Path, list[float]]:
    """Profile each model on `local` through the library; the run folder and each model's wall time (s)."""
    from mbdeploy import bench
    from mbdeploy.devices.registry import describe, resolve
    from mbdeploy.profile.sweep import ProfileOptions, run_profile

    options = ProfileOptions(bench=bench.BenchOptions(timing=timing), method="single_layer", layer_max_secs=20.0)
    devices = resolve("local")
    infos = [describe(d).to_dict() for d in devices]
    folder = bench.start_run(out, options.bench, models, infos, command=sys.argv)
    walls = []
    try:
        for model in models:
            started = time.monotonic()
            run_profile(devices, infos, bench.collect_artifacts([model], ["fp32"], ["tflite"]), folder, options)
            walls.append(time.monotonic() - started)
    finally:
        for device in devices:
            device.close()
    return folder.path, walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "mbdeploy-bench-models")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--profile", default=DEFAULT_PROFILED, help="at most 4 grid models (alpha_res) to profile")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-secs", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3, help="whole-model bench rounds, each in a random order")
    args = parser.parse_args()

    from mbdeploy.architecture import ModelSpec, model_name
    from mbdeploy.records.fit import fit_power_law
    from mbdeploy.records.layer_model import ProfiledModel, fit_layer_model, profiled_models
    from mbdeploy.records.reader import load_runs
    from mbdeploy.runners.base import TimingOptions

    profiled_names = [f"mobilenet_v1_{p}" for p in args.profile.split(",") if p]
    if not 1 <= len(profiled_names) <= 4:
        sys.exit("--profile names 1 to 4 models")
    out = args.out or Path(tempfile.mkdtemp(prefix="mbd-layer-model-"))
    print(f"converting the fp32 grid into {args.models} (cached; random weights)", flush=True)
    convert_grid(args.models)

    started = time.monotonic()
    timing = TimingOptions(threads=args.threads, min_secs=1.0, max_secs=args.max_secs)
    bench_runs, whole, fastest = bench_rounds(args.models, out, timing, args.rounds)
    print(f"benched the 16 models whole, {args.rounds} rounds, in {time.monotonic() - started:.0f} s", flush=True)
    layer_timing = TimingOptions(threads=args.threads, min_secs=0.5, max_secs=5.0, target_ci=0.02)
    profile_run, walls = profile_local([args.models / name for name in profiled_names], out, layer_timing)

    profile = load_runs([profile_run])[0]
    groups = profiled_models(profile.records, profile.layer_records)
    if len(groups) != 1:
        sys.exit(f"expected one profiled group, found {len(groups)} in {profile_run}")
    profiles = next(iter(groups.values()))
    # The layer model's whole times are the bench's, measured in the same session as the models it predicts.
    profiles = [ProfiledModel(p.name, whole[p.name][1], p.layers) for p in profiles if p.name in whole]
    model = fit_layer_model(profiles, "fp32")
    for name, wall in zip(profiled_names, walls):
        layers = [r for r in profile.layer_records if r["artifact"]["name"] == name]
        met = sum(r.get("stop_reason") == "target_ci" for r in layers)
        print(f"profiled {name}: {len(layers)} layers in {wall:.1f} s (target <= 60 s: "
              f"{'met' if wall <= 60 else 'NOT met'}); {met}/{len(layers)} layers reached the 2% CI")
    costs = ", ".join(f"{kind}: {c.ms_per_gmac:.2f} ms/GMAC + {c.ms_per_mb:.4f} ms/MB + {1e3 * c.ms_fixed:.1f} us"
                      for kind, c in model.costs.items())
    print(f"layer model: {costs}; whole = {model.scale:.3f} x sum "
          f"{model.per_activation_mb:+.4f} ms x activation MB")

    held_out = sorted((n for n in whole if n not in profiled_names), key=lambda n: whole[n][0])
    names = list(whole)
    layer_errors, power_errors = [], []
    print(f"{'model':<24} {'MMACs':>7} {'measured':>9} {'layer':>8} {'error':>7} {'power':>8} {'error':>7}")
    for name in held_out:
        macs, measured = whole[name]
        alpha, resolution = (float(x) for x in name.rsplit("_", 2)[-2:])
        spec = ModelSpec(alpha, int(resolution))
        assert spec.name == name == model_name(alpha, int(resolution))
        layer_ms = model.predict(spec)
        others = [n for n in names if n != name]
        power = fit_power_law([whole[n][0] for n in others], [whole[n][1] for n in others]).predict(macs)
        layer_errors.append((layer_ms - measured) / measured)
        power_errors.append((power - measured) / measured)
        print(f"{name:<24} {macs / 1e6:>7.1f} {measured:>9.3f} {layer_ms:>8.3f} {100 * layer_errors[-1]:>+6.1f}% "
              f"{power:>8.3f} {100 * power_errors[-1]:>+6.1f}%")
    # The same comparison on each model's fastest invoke: a figure the machine's load barely moves,
    # so it shows the predictors' own error apart from the load's (diagnostic; the target is on medians).
    min_groups = profiled_models(profile.records, profile.layer_records, "min")
    min_profiles = [ProfiledModel(p.name, fastest[p.name][1], p.layers) for p in next(iter(min_groups.values()))]
    min_model = fit_layer_model(min_profiles, "fp32")
    min_layer, min_power = [], []
    for name in held_out:
        macs, measured = fastest[name]
        alpha, resolution = (float(x) for x in name.rsplit("_", 2)[-2:])
        others = [n for n in names if n != name]
        power = fit_power_law([fastest[n][0] for n in others], [fastest[n][1] for n in others]).predict(macs)
        min_layer.append(abs(min_model.predict(ModelSpec(alpha, int(resolution))) - measured) / measured)
        min_power.append(abs(power - measured) / measured)
    print(f"on the fastest invoke (load-robust diagnostic): layer model median |error| "
          f"{100 * statistics.median(min_layer):.1f}%, max {100 * max(min_layer):.1f}%; power law median |error| "
          f"{100 * statistics.median(min_power):.1f}%, max {100 * max(min_power):.1f}%")
    layer_abs = [abs(e) for e in layer_errors]
    power_abs = [abs(e) for e in power_errors]
    print(f"held out: {len(held_out)} models; layer model fitted on {len(profiles)} profiles "
          f"({', '.join(p.name for p in profiles)}); power law leave-one-out over all {len(names)}")
    print(f"targets: layer model median <= 3%: {'met' if statistics.median(layer_abs) <= 0.03 else 'NOT met'}, "
          f"max <= 10%: {'met' if max(layer_abs) <= 0.10 else 'NOT met'}; runs: {out}")
    print(f"layer model: median |error| {100 * statistics.median(layer_abs):.1f}%, max {100 * max(layer_abs):.1f}%; "
          f"power law: median |error| {100 * statistics.median(power_abs):.1f}%, max {100 * max(power_abs):.1f}%")


if __name__ == "__main__":
    main()
