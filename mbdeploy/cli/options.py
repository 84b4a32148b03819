"""Option types shared by commands."""

from __future__ import annotations

import math
from pathlib import Path

import click


class FiniteFloat(click.FloatRange):
    """A float range that refuses nan and inf (click's FloatRange lets NaN through every bound)."""

    name = "finite float"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            bounded = self.min is not None or self.max is not None
            allowed = f"a finite number, {self._describe_range()}" if bounded else "a finite number"
            self.fail(f"{value!r} is not a finite number (allowed: {allowed})", param, ctx)
        return number

    def _describe_range(self) -> str:
        # Unbounded (e.g. --cooldown-temp): click would print "x<=None" in --help.
        return "" if self.min is None and self.max is None else super()._describe_range()


def finite(min: float | None = None, max: float | None = None, min_open: bool = False,  # noqa: A002
           max_open: bool = False) -> FiniteFloat:
    return FiniteFloat(min=min, max=max, min_open=min_open, max_open=max_open)


def comma_choices(allowed: tuple[str, ...]):
    """A callback for a repeatable option that also takes comma lists (`--formats tflite,onnx`), each name checked."""

    def check(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
        names = [item.strip() for value in values for item in value.split(",") if item.strip()]
        if values and not names:  # `--formats ,` or `--formats ''` names nothing; it is not "all"
            raise click.BadParameter(f"names no format; allowed: {', '.join(allowed)}", ctx, param)
        unknown = [name for name in names if name not in allowed]
        if unknown:
            raise click.BadParameter(f"{', '.join(unknown)} unknown; allowed: {', '.join(allowed)} "
                                     "(a comma list, or repeat the option)", ctx, param)
        return list(dict.fromkeys(names))

    return check


def typed_models_exist(ctx: click.Context, param: click.Parameter, values: tuple):
    """A callback for --models: folders the user typed must exist; the default may be absent (then nothing is read)."""
    from click.core import ParameterSource

    if ctx.get_parameter_source(param.name) is not ParameterSource.DEFAULT:
        missing = [str(value) for value in values if not Path(value).exists()]
        if missing:
            raise click.BadParameter(f"{', '.join(missing)} does not exist (give model folders or manifest.json files)",
                                     ctx, param)
    return values
