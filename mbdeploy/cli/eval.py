"""`mbdeploy eval --data DIR`: top-1/top-5 of converted models, recorded into their manifests."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from mbdeploy.cli.options import comma_choices
from mbdeploy.cli.output import console, emit, json_option, progress, warnings_to_stderr
from mbdeploy.formats import FORMAT_NAMES


@click.command("eval", help="Top-1/top-5 of every converted model on a labelled image set (DIR/<label>/*.jpg, "
                            "or a flat folder with --labels), the int8-vs-fp32 drop and top-1 agreement "
                            "between precisions; written into each manifest's accuracy section.")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path), help="Image folder.")
@click.option("--models", "models", multiple=True, type=click.Path(path_type=Path), default=["models"],
              show_default=True, help="Model folders or manifest.json files (repeat the option).")
@click.option("--labels", "labels", type=click.Path(path_type=Path), default=None,
              help="For a flat folder: lines of '<image file> <label>' (label a class index 0..999 or a name).")
@click.option("--class-names", "class_names", type=click.Path(path_type=Path), default=None,
              help="Class names, one per line in ImageNet order (1000 lines, or 1001 with background first).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N images.")
@click.option("--formats", multiple=True, callback=comma_choices(FORMAT_NAMES), metavar="F[,F...]",
              help=f"Only these formats: a comma list of {','.join(FORMAT_NAMES)} (or repeat the option).")
@click.option("--device", "device", default=None,
              help="Compute on this device (an id, model name or alias, as bench takes) instead of the host: the "
                   "preprocessed images are pushed in batches and run by the device's runner; recorded under "
                   "'<format>/<precision>@<device id>'.")
@click.option("--runner", "runner", default=None,
              help="With --device: the runner that computes (default: the device kind's, litert on local/ssh/android).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="With --device: the runner's threads.")
@click.option("--batch", type=click.IntRange(min=1, max=1024), default=32, show_default=True,
              help="With --device: images per push and call, 1 to 1024.")
@click.option("--adb-host", "adb_host", default=None, help="With --device: the adb server (HOST:PORT).")
@click.option("--delegate", default=None, help="With --device, benchmark_model/benchmark_app runners: the delegate.")
@click.option("--benchmark-binary", type=click.Path(path_type=Path), default=None,
              help="With --device, benchmark_model runner: this binary (the classic tool reads input files).")
@click.option("--benchmark-apk", type=click.Path(path_type=Path), default=None,
              help="With --device, benchmark_app runner: this APK instead of the installed or released one.")
@click.option("--benchmark-flavour", type=click.Choice(["litert", "tflite"]), default=None,
              help="With --device, benchmark_model runner: tflite, the classic tool (the LiteRT 2.x one takes no inputs).")
@click.option("--benchmark-release", type=click.Choice(["nightly"]), default=None,
              help="With --device, benchmark_model/benchmark_app runners: the classic tool from the nightly folder.")
@json_option
def eval_command(data: Path, models: tuple, labels: Path | None, class_names: Path | None, limit: int | None,
                 formats: tuple, device: str | None, runner: str | None, threads: int, batch: int,
                 adb_host: str | None, delegate: str | None, benchmark_binary: Path | None,
                 benchmark_apk: Path | None, benchmark_flavour: str | None, benchmark_release: str | None,
                 as_json: bool) -> None:
    from mbdeploy.errors import InvalidInput
    from mbdeploy.evaluate import evaluate, load_dataset
    from mbdeploy.manifest import find_manifests

    tool = {"delegate": delegate, "binary": benchmark_binary, "apk": benchmark_apk, "flavour": benchmark_flavour,
            "release": benchmark_release}
    typed = [f"--{name.replace('_', '-')}" for name in ("runner", "adb_host", "threads", "batch", "delegate",
                                                         "benchmark_binary", "benchmark_apk", "benchmark_flavour",
                                                         "benchmark_release")
             if click.get_current_context().get_parameter_source(name) is not ParameterSource.DEFAULT]
    if device is None and typed:  # the host's eval would ignore them silently
        raise InvalidInput(f"{', '.join(typed)}: only with --device (how the device computes); give --device too")
    if not formats and device is None:
        with warnings_to_stderr():  # the left-out formats as one `Warning:` line
            formats = _default_formats(models)
    dataset = load_dataset(data, labels, class_names, limit)
    total = len(dataset.images) * len(list(find_manifests(models)))
    with warnings_to_stderr(), progress("evaluating", total, enabled=not as_json) as bar:
        if device is None:
            results = evaluate(models, dataset, formats or None, bar.advance)
        else:
            from mbdeploy.device_eval import evaluate_on_device

            results = evaluate_on_device(device, [Path(m) for m in models], dataset, list(formats) or None, runner,
                                         threads, batch=batch, adb_host=adb_host, progress=bar.advance,
                                         runner_options={k: v for k, v in tool.items() if v is not None})
    emit([r.to_dict() for r in results], as_json, lambda _: _render(results, dataset.labelled, device))


def _default_formats(models: tuple) -> tuple[str, ...]:
    """Every format with a native runtime here; a warning names artifacts left out (Core ML off macOS)."""
    import sys
    import warnings

    from mbdeploy.formats import eval_default_formats
    from mbdeploy.manifest import find_manifests, load_manifest

    chosen, left_out = eval_default_formats(sys.platform)
    present = sorted({entry.get("format") for manifest in find_manifests(models)
                      for entry in load_manifest(manifest).get("artifacts", [])} & set(left_out))
    if present:
        warnings.warn(f"{', '.join(present)} artifacts left out: off their native platform they run in a slow "
                      f"reference executor (about 25x slower); name them with --formats to evaluate them anyway",
                      UserWarning, stacklevel=1)
    return chosen


def _render(results: list, labelled: bool, device: str | None = None) -> None:
    from rich.table import Table

    title = "Accuracy" if labelled else "Agreement between precisions (no labels)"
    table = Table(title=f"{title}, computed on {device}" if device else title)
    for header in ("model", "format", "precision", "images", "top-1 %", "top-5 %", "drop vs fp32 (points)",
                   "top-1 agreement with fp32 %", "status"):
        table.add_column(header)

    def number(value):  # noqa: ANN001, ANN202
        return "" if value is None else f"{value:.2f}"

    for r in results:
        table.add_row(r.model, r.format, r.precision, str(r.images), number(r.top1_percent), number(r.top5_percent),
                      number(r.top1_drop_vs_fp32_points), number(r.agreement_with_fp32_percent), r.status)
    console().print(table)

