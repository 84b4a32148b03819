"""The sweep the CLI calls: artifacts x devices -> validated records in a run folder.

The host decides and stores; the runner on the device only times. Per device
and artifact: cool down, read sensors, push the model, run it under the power
meter, read sensors again, build the record, validate it, append it. A model
that fails becomes a `failed` record and the sweep goes on.

    plan.py       checks before any device work (options, artifacts, devices, runners)
    artifacts.py  which artifacts to time, checked against their manifests
    thermal.py    throttle verdict and cooldown
    measure.py    one artifact on one device -> one record
    sweep.py      run folders and the per-device worker threads
    resume.py     --resume: the run's own models and options
    summary.py    the rows `bench` prints
"""

from mbdeploy.bench.artifacts import Artifact, collect_artifacts
from mbdeploy.bench.measure import measure_one, measure_one_failed
from mbdeploy.bench.options import BenchOptions
from mbdeploy.bench.plan import artifacts_to_bench, check_devices, check_options, check_runners, default_formats
from mbdeploy.bench.resume import options_from_settings, resumed_settings, run_settings
from mbdeploy.bench.summary import summary_rows
from mbdeploy.bench.sweep import clean_device, device_runners, run_sweep, start_run
from mbdeploy.bench.thermal import cool_down, throttle_reasons

__all__ = [
    "Artifact", "BenchOptions", "artifacts_to_bench", "check_devices", "check_options", "check_runners",
    "clean_device", "collect_artifacts", "cool_down", "default_formats", "device_runners", "measure_one",
    "measure_one_failed", "options_from_settings", "resumed_settings", "run_settings", "run_sweep", "start_run", "summary_rows", "throttle_reasons",
]
