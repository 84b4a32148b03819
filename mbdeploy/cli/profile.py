"""`mbdeploy profile`: where the time goes, layer by layer, on a device."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.core import ParameterSource

from mbdeploy.cli.options import finite
from mbdeploy.cli.output import console, emit, json_option, progress, split_values, warn, warnings_to_stderr

# Layers per model: the plan's 28 plus the pooling and the softmax (progress bar only).
LAYERS_PER_MODEL = 30


def _percent(value: float | None) -> str:
    return f"{100 * value:.1f}%" if value is not None else "-"


def _ms(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "-"


def _render(result: dict) -> None:
    from rich import box
    from rich.table import Table

    out = console()
    for summary in result["profiles"]:
        whole = summary["whole_ms"]
        title = (f"{summary['model']} {summary['format']} {summary['precision']} on {summary['device']} "
                 f"({summary['runner']}, method {summary['method']})")
        table = Table(box=box.SIMPLE_HEAD, title=title, pad_edge=False)
        for column in ("layer", "type"):
            table.add_column(column, no_wrap=True)
        for column in ("MMAC", "params", "ms", "CI95 +/-", "GMAC/s", "time", "MACs"):
            table.add_column(column, justify="right", no_wrap=True)
        for layer in summary["layers"]:
            ms = layer["median_ms"] if layer["median_ms"] is not None else layer["mean_ms"]
            ci = ("n/a" if layer["ci95_low_ms"] is None or not ms
                  else f"{(layer['ci95_high_ms'] - layer['ci95_low_ms']) / 2 / ms * 100:.1f}%")
            if layer["delegated"]:
                ci = f"in {layer['delegated'].split(' (')[0]}"
            table.add_row(layer["name"], layer["type"], f"{layer['macs'] / 1e6:.2f}", f"{layer['params']:,}",
                          _ms(ms), ci, f"{layer['gmacs_per_s']:.1f}" if layer["gmacs_per_s"] else "-",
                          _percent(layer["share_of_time"]), _percent(layer["share_of_macs"]))
        out.print(table)
        types = Table(box=box.SIMPLE_HEAD, title="By type (paper Table 2, with time)", pad_edge=False)
        for column in ("type", "layers", "share of time", "share of MACs", "GMAC/s"):
            types.add_column(column, justify="left" if column == "type" else "right")
        for row in summary["by_type"]:
            types.add_row(row["type"], str(row["layers"]), _percent(row["share_of_time"]),
                          _percent(row["share_of_macs"]), f"{row['gmacs_per_s']:.1f}" if row["gmacs_per_s"] else "-")
        out.print(types)
        ci = (f" (95% CI {whole['ci95_low']:.3f}-{whole['ci95_high']:.3f})"
              if whole.get("ci95_low") is not None else "")
        total = summary["sum_of_layers_ms"]
        out.print(f"Whole model: {_ms(whole['median'])} ms{ci}; sum of layers: {_ms(total)} ms"
                  + (f" ({total / whole['median']:.2f}x the whole)" if total and whole["median"] else "") + "\n")
    for failure in result["failed"]:
        warn(failure)
    out.print(f"Run folder: {result['run_dir']}")


# The options that define a profile run (click parameter -> key in run.json's `settings`): --resume restores
# them and refuses a different one, as bench's does, so one run never mixes configurations.
RUN_PARAMS = {
    "threads": "threads", "no_xnnpack": "xnnpack", "warmup": "warmup_runs", "min_secs": "min_secs",
    "max_secs": "max_secs", "runs": "runs", "target_ci": "target_ci", "runner_name": "runner",
    "benchmark_binary": "binary", "benchmark_apk": "apk", "models": "models", "precisions": "precisions",
    "method": "method", "layer_secs": "layer_max_secs", "compute_units": "compute_units",
}


@click.command(name="profile")
@click.option("--device", "device_name", default=None, metavar="NAME",
              help="Device id, model, alias, ssh://user@host[:port], or 'all' (as for bench).")
@click.option("--models", "models", multiple=True, type=click.Path(path_type=Path), metavar="DIR|FILE",
              help="Manifest folders, .tflite files or .mlpackage folders (repeatable; default: models/).")
@click.option("--precisions", multiple=True, metavar="P[,P...]", help="Only these precisions (e.g. fp32,int8).")
@click.option("--method", type=click.Choice(["auto", "single_layer", "op_profile"]), default="auto",
              show_default=True,
              help="How a layer is timed: single-layer models cut from the artifact, or the runner's own op "
                   "profile (benchmark_model/benchmark_app). auto: op_profile on those runners, else single_layer.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Folder that holds run folders.")
@click.option("--resume", metavar="RUN", default=None, help="Continue run RUN, skipping what it holds.")
@click.option("--runner", "runner_name", default=None, metavar="NAME",
              help="litert | benchmark_model | benchmark_app | coreml_app (default: the device kind's).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Inference threads.")
@click.option("--no-xnnpack", is_flag=True, help="Run without the XNNPACK delegate.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Untimed runs first.")
@click.option("--min-secs", type=finite(min=0), default=0.5, show_default=True,
              help="Time each model and each layer at least this long before stopping on the CI target.")
@click.option("--max-secs", type=finite(min=0, min_open=True), default=5.0, show_default=True,
              help="Stop a model or layer after this long even if the CI target is not met.")
@click.option("--layer-secs", type=finite(min=0, min_open=True), default=20.0, show_default=True,
              help="single_layer: stop timing a model's layers after this long even if a CI target is not met "
                   "(litert times them all in one round-robin loop).")
@click.option("--runs", type=click.IntRange(min=1), default=None, help="A fixed number of timed runs.")
@click.option("--target-ci", type=finite(min=0, min_open=True), default=0.02, show_default=True,
              help="Stop when the 95% CI half-width of the median is at most this fraction of it.")
@click.option("--compute-units", multiple=True, metavar="U[,U...]",
              help="iPhones: Core ML compute units, one profile each (cpuOnly, cpuAndGPU, cpuAndNeuralEngine, all; "
                   "default all).")
@click.option("--no-wait", is_flag=True, help="Fail at once if another bench holds the device.")
@click.option("--benchmark-binary", type=click.Path(path_type=Path), default=None,
              help="benchmark_model runner: this binary instead of the released one.")
@click.option("--benchmark-apk", type=click.Path(path_type=Path), default=None,
              help="benchmark_app runner: this APK instead of the released one.")
@click.option("--keep", is_flag=True, help="Phones: leave the device work folder in place after the run.")
@click.option("--adb-host", metavar="HOST[:PORT]", default=None, help="adb server for Android devices.")
@json_option
def profile(device_name, models, precisions, method, out, resume, runner_name, threads, no_xnnpack, warmup,  # noqa: ANN001
            min_secs, max_secs, layer_secs, runs, target_ci, compute_units, no_wait, benchmark_binary, benchmark_apk,
            keep, adb_host, as_json) -> None:
    """Time every layer of each artifact on a device, beside the whole model.

    .tflite on local, ssh, Android and AI Hub; fp32/fp16 Core ML on iPhones
    (the app times the single-layer packages in one round-robin loop).

    Whole-model records go to OUT/<run-id>/results.jsonl (as bench writes
    them); one record per layer goes to OUT/<run-id>/layers.jsonl, naming its
    whole-model record.
    """
    from mbdeploy import bench as library
    from mbdeploy.devices.registry import describe, resolve
    from mbdeploy.formats import FORMAT_NAMES
    from mbdeploy.profile.sweep import SINGLE_LAYER_FORMATS, ProfileOptions, profilable, profile_runners, run_profile
    from mbdeploy.records.layers import profile_summaries
    from mbdeploy.runners.base import TimingOptions

    bench_options = library.BenchOptions(
        timing=TimingOptions(threads=threads, xnnpack=not no_xnnpack, warmup_runs=warmup, min_secs=min_secs,
                             max_secs=max_secs, runs=runs, target_ci=target_ci),
        runner=runner_name, wait_for_lock=not no_wait,
        runner_options={key: value for key, value in {
            "binary": benchmark_binary, "apk": benchmark_apk,
            "compute_units": tuple(dict.fromkeys(split_values(compute_units))) or None}.items() if value is not None},
    )
    model_paths = list(models) or [Path("models")]
    precision_list = split_values(precisions)

    def run_settings() -> dict:
        return {**library.run_settings(bench_options, model_paths, precision_list, list(SINGLE_LAYER_FORMATS)),
                "method": method, "layer_max_secs": layer_secs}

    if resume:
        # The run's own models and options; what the user typed again must agree with them.
        ctx = click.get_current_context()
        typed = {param for param in RUN_PARAMS
                 if ctx.get_parameter_source(param) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}
        mine = run_settings()
        _, stored = library.resumed_settings(out, resume, {RUN_PARAMS[p]: mine[RUN_PARAMS[p]] for p in typed},
                                             {key: f"--{param.removesuffix('_name').replace('_', '-')}"
                                              for param, key in RUN_PARAMS.items()})
        bench_options = library.options_from_settings(stored, ("binary", "apk", "compute_units"))
        bench_options.wait_for_lock = not no_wait
        model_paths = [Path(m) for m in stored["models"]] or model_paths
        precision_list = stored.get("precisions", precision_list)
        method, layer_secs = stored.get("method", method), stored.get("layer_max_secs", layer_secs)
    options = ProfileOptions(bench=bench_options, method=method, layer_max_secs=layer_secs)
    library.check_options(bench_options)
    # Every format is collected; what these devices cannot profile is named once devices are known.
    artifacts = library.artifacts_to_bench(model_paths, precision_list, list(FORMAT_NAMES))
    with warnings_to_stderr():
        devices = resolve(device_name, adb_host)
    for device in devices:
        device.keep = keep
    try:
        infos = [describe(device).to_dict() for device in devices]
        library.check_devices(infos)
        for device in devices:
            profile_runners(device, options)  # an impossible method fails before a run folder exists
        with warnings_to_stderr():
            artifacts = profilable(artifacts, devices, options)
        library.check_runners(devices, artifacts, bench_options)
        folder = library.start_run(out, bench_options, model_paths, infos, resume=resume, command=sys.argv,
                                   settings=run_settings())
        folder.update_meta(profile={"method": method})
        failed: list[str] = []
        with progress("profile", total=len(devices) * len(artifacts) * (LAYERS_PER_MODEL + 1),
                      enabled=not as_json) as bar:
            def on_event(kind: str, data: dict) -> None:
                if kind == "start":
                    bar.describe(f"{data['device']}: {data['artifact']} {data['precision']}")
                elif kind in ("record", "layer", "skip"):
                    bar.advance()
                elif kind == "failed":
                    failed.append(f"{data['artifact']} on {data['device']}: {data['error']}")
                elif kind == "wait":
                    warn(data["message"])

            records, layer_records = run_profile(devices, infos, artifacts, folder, options, emit=on_event)
    finally:
        for device in devices:
            device.close()
    summaries = profile_summaries(folder.records(), folder.layer_records())
    failed += [f"{r['artifact']['name']} layer {r['layer']['name']} on {r['device']['id']}: {r['error']}"
               for r in layer_records if r["status"] != "ok"][:5]
    result = {"run_id": folder.run_id, "run_dir": str(folder.path), "profiles": summaries,
              "records": len(records), "layer_records": len(layer_records), "failed": failed}
    emit(result, as_json, _render)
    bad = [r for r in records if r["status"] != "ok"] + [r for r in layer_records if r["status"] != "ok"]
    if bad:
        from mbdeploy.errors import RunnerError

        raise RunnerError(f"{len(bad)} of {len(records) + len(layer_records)} measurements failed "
                          f"(first: {bad[0]['error']}); retry them with --resume {folder.run_id}", failed=len(bad))
