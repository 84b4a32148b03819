"""Shared output helpers for commands: `--json`, tables, warnings, progress."""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import click


def json_option(function: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(function)


def split_values(values: tuple[str, ...]) -> list[str]:
    """Accept both `--precisions fp32 --precisions int8` and `--precisions fp32,int8`."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def emit(data: object, as_json: bool, render: Callable[[object], None]) -> None:
    """Print `data` as JSON, or hand it to a human renderer."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        render(data)


PIPE_WIDTH = 200


def console(stderr: bool = False):
    """A rich console; in a pipe or CI log (no terminal, no $COLUMNS) tables get 200 columns, not 80."""
    import os

    from rich.console import Console

    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = PIPE_WIDTH
    return out


def warn(message: str) -> None:
    click.echo(f"Warning: {message}", err=True)


PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _from_this_package(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(PACKAGE_DIR)
    except (OSError, ValueError):
        return False


@contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Show library warnings as one `Warning: ...` line each, not a traceback-ish dump."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        original = warnings.showwarning
        shown: set[str] = set()

        def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            # Ours are for the user, each once (a grid repeats them per model); third-party
            # libraries' chatter is not.
            if issubclass(category, (UserWarning, RuntimeWarning)) and _from_this_package(filename):
                if str(message) not in shown:
                    shown.add(str(message))
                    warn(str(message))

        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = original


@contextmanager
def progress(description: str, total: int | None, enabled: bool = True):
    """A rich progress bar on stderr; `advance()` moves it. Silent when disabled."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(stderr=True),
        disable=not enabled,
        transient=False,
    )
    with bar:
        task = bar.add_task(description, total=total)

        class Handle:
            def advance(self, step: int = 1, description: str | None = None) -> None:
                bar.update(task, advance=step, description=description or bar.tasks[0].description)

            def describe(self, text: str) -> None:
                bar.update(task, description=text)

        yield Handle()
