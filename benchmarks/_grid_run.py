"""What several benchmarks share: the fp32 grid converted once, and a sweep on `local`."""

from __future__ import annotations

import sys
from pathlib import Path


def convert_grid(out: Path) -> None:
    """The 16 released models in fp32 with random weights (reused when up to date)."""
    from mbdeploy.architecture import GRID_ALPHAS, GRID_RESOLUTIONS
    from mbdeploy.convert import ConvertRequest, convert_model

    for alpha in GRID_ALPHAS:
        for resolution in GRID_RESOLUTIONS:
            convert_model(ConvertRequest(alpha=alpha, resolution=resolution, out_dir=out, formats=["tflite"],
                                         precisions=["fp32"], verify=False))


def bench_local(models: Path, out: Path, timing) -> Path:
    """Bench every fp32 TFLite model under `models` on this host through the library; the run folder."""
    from mbdeploy import bench
    from mbdeploy.devices.registry import describe, resolve

    options = bench.BenchOptions(timing=timing)
    devices = resolve("local")
    infos = [describe(d).to_dict() for d in devices]
    folder = bench.start_run(out, options, [models], infos, command=sys.argv)
    try:
        bench.run_sweep(devices, infos, bench.collect_artifacts([models], ["fp32"], ["tflite"]), folder, options)
    finally:
        for device in devices:
            device.close()
    return folder.path
