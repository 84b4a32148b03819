"""Option types shared by commands."""

from __future__ import annotations

import math

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
