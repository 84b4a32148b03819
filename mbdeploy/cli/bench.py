"""`mbdeploy bench`: benchmark converted models on one device or all of them."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.core import ParameterSource

from mbdeploy.cli.options import finite
from mbdeploy.records.rules import RULES  # plain data, nothing heavy
from mbdeploy.cli.output import console, emit, json_option, progress, split_values, warn, warnings_to_stderr


# The options that define a run (click parameter -> key in run.json's `settings`): --resume restores them.
RUN_PARAMS = {
    "threads": "threads", "no_xnnpack": "xnnpack", "warmup": "warmup_runs", "min_secs": "min_secs",
    "max_secs": "max_secs", "runs": "runs", "target_ci": "target_ci", "runner_name": "runner",
    "cooldown": "cooldown_s", "cooldown_temp": "cooldown_temp_c", "allow_charging": "allow_charging",
    "benchmark_binary": "binary", "benchmark_apk": "apk", "delegate": "delegate", "op_profiling": "op_profiling",
    "cpu_mask": "cpu_mask", "compute_units": "compute_units", "compute_unit": "compute_unit", "models": "models",
    "precisions": "precisions", "formats": "formats", "repeat": "repeat", "rule": "rule",
    "check_outputs": "check_outputs",
    "peak_memory": "peak_memory", "benchmark_flavour": "flavour", "benchmark_release": "release",
    "dispatch_library": "dispatch_library", "compiler_plugin": "compiler_plugin",
}
RUNNER_OPTION_KEYS = ("binary", "apk", "delegate", "op_profiling", "cpu_mask", "compute_units", "compute_unit",
                      "peak_memory", "flavour", "release", "dispatch_library", "compiler_plugin")


def numerics_text(numerics: dict) -> str:
    """The summary's word on --check-outputs: passed/FAILED with the figures, or why it was not checked."""
    if numerics.get("passed") is None:
        return "; ".join(numerics.get("notes") or ["outputs not checked"])
    figures = (f"{numerics['probes']} probes, max |diff| {numerics['max_abs_diff']:.2e}, "
               f"cosine {numerics['cosine']:.4f}"
               + (f", top-1 agree {numerics['top1_agreement']:.0%}" if numerics.get("top1_agreement") is not None
                  else ""))
    if numerics["passed"]:
        return f"outputs ok ({figures})"
    return f"OUTPUTS WRONG: {'; '.join(numerics.get('failures') or [])} ({figures})"


def _render(result: dict) -> None:
    from rich import box
    from rich.table import Table

    rows = result["summary"]
    several = len({row["device"] for row in rows}) > 1
    configs = len({row.get("config") for row in rows}) > 1  # e.g. Core ML compute units side by side
    table = Table(box=box.SIMPLE_HEAD, title="Benchmark summary", pad_edge=False)
    if several:
        table.add_column("device", overflow="fold")
    table.add_column("model", no_wrap=True)
    table.add_column("prec", no_wrap=True)
    if configs:
        table.add_column("config", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("CI95 +/-", justify="right", no_wrap=True)
    table.add_column("MMAC", justify="right", no_wrap=True)
    table.add_column("GMAC/s", justify="right", no_wrap=True)
    table.add_column("status", overflow="fold", min_width=6)
    for row in rows:
        # The 95% interval of the median as its half-width relative to the median (full bounds are in --json);
        # with --repeat the interval over the sessions' medians, marked with the session count.
        ci = row.get("between_ci95_ms") or row["ci95_ms"]
        ci_text = (f"{(ci[1] - ci[0]) / 2 / row['median_ms'] * 100:.1f}%"
                   if ci and ci[0] is not None and row["median_ms"] else "n/a")
        if row.get("sessions"):
            ci_text += f" ({row['sessions']} sessions)"
        status = row["status"] + (" (throttled)" if row.get("throttled") else "")
        if row["status"] != "ok":
            status += f": {row.get('error')}"
        numerics = row.get("numerics")
        if numerics:
            status += "; " + numerics_text(numerics)
        grade = row.get("grade")
        if grade:
            status += f"; {grade['verdict']}" + (f" ({'; '.join(grade['reasons'])})" if grade["reasons"] else "")
            if grade.get("reported_ms") is not None:
                status += f"; p90 {grade['reported_ms']:.3f} ms"
            if grade.get("early_stopping_p90_ms") is not None:
                status += f", early-stopping p90 {grade['early_stopping_p90_ms']:.3f} ms"
        cells = [
            row["model"], row["precision"], *([row.get("config") or "-"] if configs else []),
            f"{row['median_ms']:.3f}" if row["median_ms"] is not None else "-", ci_text,
            f"{row['macs'] / 1e6:.0f}" if row["macs"] else "-",
            f"{row['gmacs_per_s']:.1f}" if row["gmacs_per_s"] else "-", status,
        ]
        table.add_row(*([row["device"]] if several else []), *cells)
    out = console()
    if rows:
        if not several:
            out.print(f"Device: {rows[0]['device']}")
        out.print(table)
    if result["skipped"]:
        out.print(f"{result['skipped']} already recorded, skipped (resume)")
    out.print(f"Run folder: {result['run_dir']}")


@click.command(name="bench")
@click.option("--device", "device_names", multiple=True, metavar="NAME",
              help="Device id, model, alias, ssh://user@host[:port], aihub:NAME (a hosted phone), or 'all' "
                   "(repeatable). Default: $ANDROID_SERIAL, else the only online phone.")
@click.option("--models", "models", multiple=True, type=click.Path(path_type=Path), metavar="DIR|FILE",
              help="Manifest folders or model files (repeatable; default: models/).")
@click.option("--precisions", multiple=True, metavar="P[,P...]", help="Only these precisions (e.g. fp32,int8).")
@click.option("--formats", multiple=True, metavar="F[,F...]",
              help="Only these formats.  [default: tflite, or coreml when every device is an iPhone]")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Folder that holds run folders.")
@click.option("--resume", metavar="RUN", default=None,
              help="Continue run RUN (id or folder) with its own models and options, skipping what it holds.")
@click.option("--runner", "runner_name", default=None, metavar="NAME",
              help="litert | benchmark_model | benchmark_app | coreml_app | aihub "
                   "(default: benchmark_model on Android, coreml_app on iOS, aihub on hosted phones, litert elsewhere).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Inference threads.")
@click.option("--no-xnnpack", is_flag=True, help="Run without the XNNPACK delegate.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Untimed runs first.")
@click.option("--min-secs", type=finite(min=0), default=1.0, show_default=True,
              help="Time at least this long before stopping on the CI target.")
@click.option("--max-secs", type=finite(min=0, min_open=True), default=10.0, show_default=True,
              help="Stop after this long even if the CI target is not met.")
@click.option("--runs", type=click.IntRange(min=1), default=None, help="A fixed number of timed runs (no adaptive stop).")
@click.option("--target-ci", type=finite(min=0, min_open=True), default=0.02, show_default=True,
              help="Stop when the 95% CI half-width of the median is at most this fraction of it.")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True, metavar="K",
              help="K sessions per artifact, each a fresh runner process, interleaved across artifacts; "
                   "one record per session plus an aggregate with the between-session 95% CI.")
@click.option("--check-outputs", is_flag=True,
              help="Before timing, run the probe inputs convert verified on the device (same runner, threads, "
                   "delegate) and compare with convert's reference by verify.py's tolerances; a failure marks the "
                   "record and makes bench exit 1.")
@click.option("--allow-numerics-failure", is_flag=True, help="With --check-outputs: exit 0 even when a check failed.")
@click.option("--rule", type=click.Choice(RULES), default=None,
              help="Grade each record valid/invalid by a rule: mlperf = MLPerf Mobile single stream (p90 reported, "
                   ">= 1,024 queries and >= 60 s, LoadGen's early-stopping p90 estimate).")
@click.option("--cooldown", type=finite(min=0), default=0.0, show_default=True,
              help="Seconds to rest between models.")
@click.option("--cooldown-temp", type=finite(min=0, max=120), default=None, metavar="C",
              help="Instead, rest until the hottest sensor is below C degrees, 0 to 120 (when the device has one).")
@click.option("--no-wait", is_flag=True, help="Fail at once if another bench holds the device.")
@click.option("--benchmark-binary", type=click.Path(path_type=Path), default=None,
              help="benchmark_model runner: this binary instead of the released one.")
@click.option("--benchmark-apk", type=click.Path(path_type=Path), default=None,
              help="benchmark_app runner: this APK instead of the released one.")
@click.option("--delegate", default=None, help="benchmark_model/benchmark_app runners: the delegate to use.")
@click.option("--op-profiling", is_flag=True, help="benchmark_model/benchmark_app runners: per-op profile.")
@click.option("--cpu-mask", default=None, metavar="HEX", help="benchmark_model runner: pin to these cores (taskset).")
@click.option("--peak-memory", is_flag=True,
              help="benchmark_model/benchmark_app runners: report the peak memory footprint (periodic monitor).")
@click.option("--benchmark-flavour", type=click.Choice(["litert", "tflite"]), default=None,
              help="benchmark_model runner: the LiteRT 2.x tool (pinned to the installed ai-edge-litert) or the "
                   "classic TFLite tool (default: the one the request needs; litert when both can).")
@click.option("--benchmark-release", type=click.Choice(["nightly"]), default=None,
              help="benchmark_model/benchmark_app runners: download the classic tool from the unpinned nightly folder.")
@click.option("--dispatch-library", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="benchmark_model runner, --delegate npu: the vendor's LiteRT dispatch libraries (.so) to push.")
@click.option("--compiler-plugin", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="benchmark_model runner, --delegate npu: the vendor's LiteRT compiler plugin libraries (.so).")
@click.option("--compute-units", multiple=True, metavar="U[,U...]",
              help="coreml_app runner: cpuOnly, cpuAndGPU, cpuAndNeuralEngine, all (default: all); "
                   "one record per setting.")
@click.option("--compute-unit", type=click.Choice(["all", "npu", "gpu", "cpu"]), default=None,
              help="aihub runner: the compute unit AI Hub may use (default: all).")
@click.option("--allow-charging", is_flag=True, help="Phones: measure power even while USB-powered.")
@click.option("--keep", is_flag=True, help="Leave the run's work folder on the device (every kind) after the run.")
@click.option("--adb-host", metavar="HOST[:PORT]", default=None, help="adb server for Android devices.")
@click.option("--label", metavar="TEXT", default=None,
              help="A label for the run (e.g. the commit under test), stored in run.json and shown in the report's history.")
@click.option("--trust-project-ssh", is_flag=True,
              help="Use [ssh] options and config from ./mbdeploy.toml (commands in them are still refused).")
@json_option
def bench(device_names, models, precisions, formats, out, resume, runner_name, threads, no_xnnpack, warmup,  # noqa: ANN001
          min_secs, max_secs, runs, target_ci, repeat, check_outputs, allow_numerics_failure, rule, cooldown,
          cooldown_temp, no_wait, benchmark_binary, benchmark_apk, delegate, op_profiling, cpu_mask, peak_memory,
          benchmark_flavour, benchmark_release, dispatch_library, compiler_plugin, compute_units, compute_unit,
          allow_charging, keep, adb_host, label, trust_project_ssh, as_json) -> None:
    """Benchmark every artifact of the manifests under --models on a device.

    Results go to OUT/<run-id>/results.jsonl (one validated record per device,
    artifact and runner config) beside OUT/<run-id>/run.json.
    """
    from mbdeploy import bench as library
    from mbdeploy.atomic import check_writable_folder
    from mbdeploy.devices.config import load_config
    from mbdeploy.devices.lock import lock_dir
    from mbdeploy.devices.registry import describe, resolve
    from mbdeploy.errors import MbdeployError, RunnerError
    from mbdeploy.runners.base import TimingOptions
    from mbdeploy.runners.registry import runner_option_sets

    options = library.BenchOptions(
        timing=TimingOptions(threads=threads, xnnpack=not no_xnnpack, warmup_runs=warmup, min_secs=min_secs,
                             max_secs=max_secs, runs=runs, target_ci=target_ci),
        runner=runner_name, cooldown_s=cooldown, cooldown_temp_c=cooldown_temp, wait_for_lock=not no_wait,
        allow_charging=allow_charging, repeat=repeat, rule=rule, check_outputs=check_outputs,
        runner_options={key: value for key, value in {
            "binary": benchmark_binary, "apk": benchmark_apk, "delegate": delegate, "op_profiling": op_profiling,
            "cpu_mask": cpu_mask, "peak_memory": peak_memory, "flavour": benchmark_flavour,
            "release": benchmark_release, "dispatch_library": dispatch_library, "compiler_plugin": compiler_plugin,
            # A list: one runner config per compute-unit setting.
            "compute_units": tuple(dict.fromkeys(split_values(compute_units))) or None,
            "compute_unit": compute_unit}.items()
            if value not in (None, False)},
    )
    model_paths = list(models) or [Path("models")]
    precision_list, format_list = split_values(precisions), split_values(formats)
    folder = None
    if resume:
        # The run's own models and options; what the user typed again must agree with them.
        ctx = click.get_current_context()
        typed = {param for param in RUN_PARAMS
                 if ctx.get_parameter_source(param) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}
        mine = library.run_settings(options, model_paths, precision_list, format_list)
        folder, stored = library.resumed_settings(out, resume, {RUN_PARAMS[p]: mine[RUN_PARAMS[p]] for p in typed},
                                                  {key: f"--{param.removesuffix('_name').replace('_', '-')}"
                                                   for param, key in RUN_PARAMS.items()})
        options = library.options_from_settings(stored, RUNNER_OPTION_KEYS)
        options.wait_for_lock = not no_wait
        model_paths = [Path(m) for m in stored["models"]] or model_paths
        precision_list = stored.get("precisions", precision_list)
        format_list = stored.get("formats", format_list)
        if not device_names:
            device_names = tuple(d["id"] for d in folder.meta().get("devices", []) if d.get("id"))
    library.check_options(options)
    # With --formats, bad model folders fail before any device is looked for; without, the devices decide.
    artifacts = library.artifacts_to_bench(model_paths, precision_list, format_list) if format_list else None
    with warnings_to_stderr():
        config = load_config(trust_project_ssh=trust_project_ssh)
        devices = []
        for name in device_names or (None,):
            devices += [d for d in resolve(name, adb_host, config) if d.id not in {seen.id for seen in devices}]
    for device in devices:
        device.keep = keep
    created = None
    records: list[dict] = []
    try:
        infos = [describe(device).to_dict() for device in devices]
        library.check_devices(infos)
        if artifacts is None:
            format_list = list(library.default_formats(devices))
            artifacts = library.artifacts_to_bench(model_paths, precision_list, format_list)
        library.check_runners(devices, artifacts, options)
        settings = library.run_settings(options, model_paths, precision_list, format_list)
        # The device locks live in the user's cache: a read-only one fails here, before a run folder exists.
        check_writable_folder(lock_dir(), "device lock folder (XDG_CACHE_HOME, or MBDEPLOY_LOCK_DIR)")
        with warnings_to_stderr():  # --resume says what it repaired
            folder = library.start_run(out, options, model_paths, infos, resume=resume, command=sys.argv,
                                       settings=settings, label=label)
        created = None if resume else folder
        skipped = 0
        # With --repeat K: K sessions and one aggregate per artifact.
        per_artifact = options.repeat + 1 if options.repeat > 1 else 1
        total = len(devices) * len(artifacts) * len(runner_option_sets(options.runner_options)) * per_artifact
        with progress("bench", total=total, enabled=not as_json) as bar:
            def on_event(kind: str, data: dict) -> None:
                nonlocal skipped
                if kind == "start":
                    bar.describe(f"{data['device']}: {data['artifact']} {data['precision']}")
                elif kind == "skip":
                    skipped += 1
                    bar.advance()
                elif kind in ("record", "unsupported"):
                    bar.advance()
                elif kind == "wait":
                    warn(data["message"])

            records = library.run_sweep(devices, infos, artifacts, folder, options, emit=on_event)
    except MbdeployError:
        if created is not None:
            created.remove_if_empty()  # e.g. --no-wait refused: no run folder with nothing in it (Ctrl-C keeps it)
        raise
    finally:
        for device in devices:
            device.close()
    failed = [r for r in records if r["status"] != "ok"]
    wrong = [r for r in records if (r.get("numerics") or {}).get("passed") is False]
    result = {"run_id": folder.run_id, "run_dir": str(folder.path), "records": len(records), "skipped": skipped,
              "failed": len(failed), "numerics_failed": len(wrong), "summary": library.summary_rows(records)}
    emit(result, as_json, _render)
    if failed:
        # The sweep went on and kept every record; the exit code still tells a script that some failed.
        first = failed[0]
        raise RunnerError(f"{len(failed)} of {len(records)} benchmarks failed (first: {first['artifact']['name']} "
                          f"on {first['device']['id']}: {first['error']}); retry them with --resume {folder.run_id}",
                          failed=len(failed))
    if wrong and not allow_numerics_failure:
        first = wrong[0]
        raise RunnerError(f"{len(wrong)} of {len(records)} records computed wrong outputs on the device (first: "
                          f"{first['artifact']['name']} {first['artifact']['precision']} on {first['device']['id']}: "
                          f"{'; '.join(first['numerics']['failures'])}); the timings are kept in {folder.run_id}; "
                          "--allow-numerics-failure exits 0 anyway", failed=len(wrong))
