"""Planning a bench before any device work: options, artifacts, devices, runners.

Everything here fails fast with one `InvalidInput`/`DeviceError`, before a run
folder exists, so a mistake never leaves an empty run behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mbdeploy.bench.artifacts import Artifact, collect_artifacts
from mbdeploy.bench.options import BenchOptions
from mbdeploy.devices.base import Device
from mbdeploy.errors import DeviceError, InvalidInput
from mbdeploy.runners.registry import check_formats, make_runners, runner_knobs


def check_options(options: BenchOptions) -> None:
    timing = options.timing
    if timing.min_secs > timing.max_secs:
        raise InvalidInput(f"--min-secs ({timing.min_secs}) must not exceed --max-secs ({timing.max_secs})")
    if options.runner is not None:
        # An unknown runner or a knob it does not take fails before any device work.
        make_runners(options.runner, timing, options.runner_options)


def default_formats(devices: Sequence[Device]) -> tuple[str, ...]:
    """What to bench when --formats is not given: the devices' own default when they agree, else tflite."""
    kinds = {device.default_formats for device in devices}
    return kinds.pop() if len(kinds) == 1 else ("tflite",)


def artifacts_to_bench(model_paths: Sequence[Path], precisions: Sequence[str] | None,
                       formats: Sequence[str]) -> list[Artifact]:
    found = collect_artifacts(model_paths, precisions or None, formats)
    if not found:
        raise InvalidInput(f"no artifacts to bench under {', '.join(map(str, model_paths))} "
                           f"(formats {', '.join(formats)}"
                           + (f", precisions {', '.join(precisions)})" if precisions else ")"))
    return found


def check_devices(infos: Sequence[dict]) -> None:
    offline = [info for info in infos if info["state"] != "online"]
    if offline:
        raise DeviceError("; ".join(f"{i['id']} is {i['state']}: {_reason(i)}" for i in offline))


def _reason(info: dict) -> str:
    """Why a device cannot be used and what to do: an error met on the way, else the fix for its state."""
    extra = info.get("extra") or {}
    return extra.get("error") or extra.get("fix") or "no reason was given; run `mbdeploy devices` to see its state"


def check_runners(devices: Sequence[Device], artifacts: Sequence[Artifact], options: BenchOptions) -> None:
    """A runner that cannot be built, or can time none of the artifacts, fails before a run folder exists."""
    formats = [a.format for a in artifacts]
    # One runner for every device: an option it does not take is its own error ("takes no X option").
    strict = options.runner is not None or len({device.default_runner for device in devices}) == 1
    for device in devices:
        runners = make_runners(options.runner or device.default_runner, options.timing, options.runner_options,
                               strict=strict)
        check_formats(runners, formats, device.id)
    if not strict:
        # Each device takes the options its own runner knows; one that no runner takes is a mistake.
        used = {name: runner_knobs(name) for name in {device.default_runner for device in devices}}
        for key in options.runner_options:
            if not any(key in knobs for knobs in used.values()):
                raise InvalidInput(f"no runner of these devices takes the {key} option (runners: "
                                   f"{', '.join(sorted(used))}); choose a device or --runner that does")
