"""`mbdeploy convert`: build, load weights, export, verify, write the manifest."""

from __future__ import annotations

from pathlib import Path

import click

from mbdeploy.cli.options import finite
from mbdeploy.cli.output import console, emit, json_option, progress, warnings_to_stderr
from mbdeploy.formats import FORMAT_NAMES, FORMATS

PRECISIONS_HELP = "; ".join(f"{','.join(info.precisions)} ({name})" for name, info in FORMATS.items())


def _split(value: str | None) -> list[str] | None:
    return [item.strip() for item in value.split(",") if item.strip()] if value else None


@click.command()
@click.option("--alpha", type=finite(), default=0.75, show_default=True, help="Width multiplier, in (0, 1.4].")
@click.option("--res", "resolution", type=int, default=192, show_default=True, help="Input resolution (>= 32).")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Slim checkpoint (.tgz or .ckpt prefix), Keras (.keras/.h5) or a MobileNet .tflite. "
                   "Default: seeded random weights (latency only).")
@click.option("--precisions", default=None,
              help=f"Comma list: {PRECISIONS_HELP}; 'tflite:dynamic' targets one format. Default: each format's defaults.")
@click.option("--formats", default=None, help=f"Comma list of {','.join(FORMAT_NAMES)}. Default: all installed.")
@click.option("--calib", "calib_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of calibration images for int8. Default: a deterministic synthetic set.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("models"), show_default=True)
@click.option("--grid", is_flag=True, help="Convert all 16 released (alpha, resolution) pairs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random weights.")
@click.option("--coreml-target", default="iOS16", show_default=True, help="Core ML minimum deployment target.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Labels file (one per line) attached to Core ML classifiers with trained weights.")
@click.option("--no-verify", is_flag=True, help="Skip numerical verification (not recommended).")
@click.option("--force", is_flag=True, help="Replace a model converted from trained weights with random weights.")
@json_option
def convert(alpha, resolution, weights, precisions, formats, calib_dir, out_dir, grid, seed, coreml_target,
            labels, no_verify, force, as_json) -> None:
    """Build MobileNet v1 from the paper's table, load weights, export and verify each artifact.

    Writes OUT/mobilenet_v1_<alpha>_<res>/ with the model files and manifest.json.
    Artifacts whose inputs are unchanged are not rebuilt.

    Example: mbdeploy convert --alpha 0.75 --res 192 --precisions fp32,fp16,int8
    """
    from mbdeploy.architecture import GRID_ALPHAS, GRID_RESOLUTIONS
    from mbdeploy.convert import ConvertRequest, convert_model, validate_request
    from mbdeploy.errors import VerificationError

    if grid and weights is not None:
        from mbdeploy.errors import InvalidInput

        raise InvalidInput("--grid converts 16 widths and one weights file fits one alpha; "
                           "drop --weights (random weights) or convert each model with its own --weights")
    pairs = [(a, r) for a in GRID_ALPHAS for r in GRID_RESOLUTIONS] if grid else [(alpha, resolution)]
    requests = [
        ConvertRequest(a, r, weights, out_dir, _split(formats), _split(precisions), calib_dir, not no_verify, seed,
                       {"coreml_target": coreml_target, "labels": str(labels) if labels else None}, force)
        for a, r in pairs
    ]
    results = []
    try:
        with warnings_to_stderr():  # one context: a warning repeated per model is shown once
            for request in requests:  # every bad option is reported before any work starts
                validate_request(request)
            with progress("converting", total=len(requests), enabled=not as_json) as bar:
                for request in requests:
                    results.append(convert_model(request, progress=bar.describe).to_dict())
                    bar.advance()
    except VerificationError as exc:
        if "result" not in exc.fields:  # the verifier itself failed: no figures to show
            raise
        # The figures say why: show them before the one-line error.
        results.append(exc.fields["result"].to_dict())
        emit(results if grid else results[0], as_json, lambda data: _render(results))
        raise
    emit(results if grid else results[0], as_json, lambda data: _render(results))


def _render(results: list[dict]) -> None:
    from rich.table import Table

    table = Table()
    for column in ("model", "artifact", "MB", "verification", ""):
        table.add_column(column, no_wrap=column != "verification")
    for result in results:
        built = set(result["built"])
        for artifact in result["artifacts"]:
            key = f"{artifact['format']}/{artifact['precision']}"
            table.add_row(result["name"], key,
                          f"{artifact['bytes'] / 1e6:.2f}", _verification_text(artifact["verification"]),
                          "built" if key in built else "up to date")
    out = console()
    out.print(table)
    for result in results:
        out.print(f"manifest: {result['manifest']}")


def _verification_text(verification: dict) -> str:
    if verification.get("skipped"):
        return "skipped"
    status = "ok" if verification["passed"] else "FAILED"
    agreement = verification["top1_agreement"]
    top1 = "n/a" if agreement is None else f"{agreement:.2f}"
    logit = verification.get("max_logit_diff")  # absent from manifests written before it existed
    text = (f"{status} logit|d|={'n/a' if logit is None else f'{logit:.1e}'} cos={verification['cosine']:.4f} "
            f"top1={top1} ({verification.get('decisive_probes', 'n/a')} decisive)")
    return "; ".join([text, *verification.get("failures", []), *verification.get("notes", [])])
