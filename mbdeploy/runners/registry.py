"""The runner registry: every runner by name, and the runner configs a sweep times with."""

from __future__ import annotations

import importlib
import itertools
from typing import Sequence

from mbdeploy.errors import InvalidInput
from mbdeploy.runners.base import Runner, TimingOptions

# runner name -> (module, class); modules are imported only when a runner is built.
RUNNERS = {
    "litert": ("mbdeploy.runners.litert", "LiteRTRunner"),
    "benchmark_model": ("mbdeploy.runners.benchmark_model", "BenchmarkModelRunner"),
    "benchmark_app": ("mbdeploy.runners.benchmark_app", "BenchmarkAppRunner"),
    "coreml_app": ("mbdeploy.runners.coreml_app", "CoreMLAppRunner"),
    "aihub": ("mbdeploy.runners.aihub", "AihubRunner"),
}


def runner_class(name: str) -> type[Runner]:
    if name not in RUNNERS:
        raise InvalidInput(f"unknown runner {name!r}; allowed: {', '.join(RUNNERS)}")
    module, cls = RUNNERS[name]
    found = vars(importlib.import_module(module))[cls]
    assert issubclass(found, Runner)
    return found


def make_runner(name: str, options: TimingOptions, **runner_options: object) -> Runner:
    """The runner called `name`; `runner_options` are its own knobs (e.g. benchmark_model's binary)."""
    given = {key: value for key, value in runner_options.items() if value not in (None, False)}
    return runner_class(name)(options, **given)


def runner_option_sets(runner_options: dict) -> list[dict]:
    """One option set per runner config: a list-valued option (e.g. compute units) gives one config per value."""
    keys = [key for key, value in runner_options.items() if isinstance(value, (list, tuple))]
    fixed = {key: value for key, value in runner_options.items() if key not in keys}
    return [{**fixed, **dict(zip(keys, values))}
            for values in itertools.product(*(runner_options[key] for key in keys))]


def runner_knobs(name: str) -> frozenset[str]:
    """The runner options (`--benchmark-binary`, `--compute-unit`, ...) a runner takes: its keyword parameters."""
    import inspect

    parameters = inspect.signature(runner_class(name).__init__).parameters.values()
    return frozenset(p.name for p in parameters if p.name not in ("self", "options")
                     and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def make_runners(name: str, options: TimingOptions, runner_options: dict, strict: bool = True) -> list[Runner]:
    """Every runner config a sweep times each artifact with (one record per artifact and config).

    `strict` (the user named the runner): an option it does not take is an error. Otherwise
    (each device's default runner, e.g. a desk phone beside a hosted one) a runner gets only
    the options it takes; `bench` checks that each option is taken by some device's runner.
    """
    if not strict:
        knobs = runner_knobs(name)
        runner_options = {key: value for key, value in runner_options.items() if key in knobs}
    return [make_runner(name, options, **given) for given in runner_option_sets(runner_options)]


def check_formats(runners: Sequence[Runner], formats: Sequence[str], device_id: str) -> None:
    """Refuse, before any run starts, a device whose runner can time none of the formats (e.g. ONNX on LiteRT).

    With several devices (`--device all`), each times the formats its runner takes and passes over the rest.
    """
    for runner in runners:
        if not any(fmt in runner.formats for fmt in formats):
            raise InvalidInput(
                f"the {runner.name} runner on {device_id} times {', '.join(runner.formats)} models, not "
                f"{', '.join(sorted(set(formats)))}; choose --formats {','.join(runner.formats)} (or another --runner)"
            )
