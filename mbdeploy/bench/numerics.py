"""`bench --check-outputs`: the artifact's outputs computed on the device, checked against convert's reference.

A delegate or an NPU can compute wrong answers fast, and `verify`/`eval` run on
the host only. Before timing, the probe inputs convert verified the artifact on
(8 deterministic synthetic images, plus up to 8 calibration photos) are pushed
to the device and run by the same runner with the same threads and delegate;
the outputs are compared with the Keras reference's outputs that convert
stored beside the manifest (`probes.npz`), by the tolerance table of
`verify.py`. The reference was computed from the weights, not from the file:
an artifact replaced or corrupted after convert fails here too.
"""

from __future__ import annotations

import math
import posixpath
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mbdeploy.bench.artifacts import Artifact
from mbdeploy.devices.base import Device
from mbdeploy.errors import MbdeployError
from mbdeploy.runners.base import Probes, Runner

if TYPE_CHECKING:
    import numpy as np

REFERENCE = "Keras reference outputs stored at convert (probes.npz)"


def not_checked(reason: str, probes: int = 0) -> dict:
    return {"probes": probes, "max_abs_diff": None, "cosine": None, "top1_agreement": None, "passed": None,
            "reference": None, "failures": [], "notes": [f"not checked: {reason}"]}


def outputs_on_device(device: Device, runner: Runner, artifact: Artifact, remote_model: str,
                      inputs: "np.ndarray") -> list[list[float]]:
    """The artifact's outputs on `inputs` (float32 N x H x W x C), computed on the device by the runner."""
    import numpy as np

    remote = None
    if runner.reads_npy_probes:
        remote = posixpath.join(device.workdir, "models", artifact.sha256[:16], "probes.npy")
        with tempfile.TemporaryDirectory(prefix="mbdeploy-probes-") as folder:
            local = Path(folder) / "probes.npy"
            np.save(local, np.asarray(inputs, np.float32), allow_pickle=False)
            device.push(local, remote)
    return runner.probe_outputs(device, remote_model, Probes(np.asarray(inputs, np.float32), remote, artifact.path))


def check_outputs(device: Device, runner: Runner, artifact: Artifact, remote_model: str) -> dict:
    """The record's `numerics` block: figures, `passed` (None when it could not be checked, with the reason)."""
    import numpy as np

    from mbdeploy.verify import TOLERANCES, compare

    if artifact.probes is None:
        return not_checked("no probes.npz beside the manifest (a plain model file, or converted before "
                           "probes were kept: convert it again)")
    if (artifact.format, artifact.precision) not in TOLERANCES:
        return not_checked(f"no tolerance for {artifact.format} {artifact.precision} in verify.py")
    with np.load(artifact.probes, allow_pickle=False) as data:
        inputs, reference = np.asarray(data["inputs"], np.float32), np.asarray(data["reference"], np.float32)
    try:
        outputs = outputs_on_device(device, runner, artifact, remote_model, inputs)
    except MbdeployError as exc:
        return not_checked(exc.message, len(inputs))
    if len(outputs) != len(reference) or any(len(row) != reference.shape[1] for row in outputs):
        figures = not_checked("", len(inputs))
        figures.update(passed=False, reference=REFERENCE, notes=[],
                       failures=[f"the device returned {len(outputs)} outputs of "
                                 f"{sorted({len(r) for r in outputs})} values; expected {reference.shape}"])
        return figures
    figures = compare(artifact.format, artifact.precision, np.asarray(outputs, np.float32), reference,
                      verifier=f"{runner.name} on {device.id}")
    figures["reference"] = REFERENCE
    for key, value in list(figures.items()):
        if isinstance(value, float) and not math.isfinite(value):
            # A record holds finite numbers only; an int8 output that rounds a class to 0 gives an infinite gap.
            figures[key] = None
            figures["notes"].append(f"{key} is infinite (a class one side gives probability 0)")
    return figures
