"""The command line: a thin click layer over the library.

Each command lives in its own module here and is imported only when it is
run, so `mbdeploy --help` stays fast and never imports TensorFlow. This
package is the only place where library errors become `Error: ...` lines and
exit codes.
"""

from __future__ import annotations

import importlib
import signal
import sys

import click

from mbdeploy import __version__
from mbdeploy.errors import MbdeployError

# command name -> (module, function, one-line help shown by `mbdeploy --help`)
COMMANDS = {
    "table": ("mbdeploy.cli.table", "table", "The 16-model grid: our MACs and params beside the published table."),
    "convert": ("mbdeploy.cli.convert", "convert", "Build a MobileNet v1, load weights, export and verify."),
    "inspect": ("mbdeploy.cli.inspect", "inspect", "MACs, params, ops and I/O of a .tflite, .onnx or .mlpackage."),
    "devices": ("mbdeploy.cli.devices", "devices", "List every reachable device."),
    "bench": ("mbdeploy.cli.bench", "bench", "Benchmark converted models on a device."),
    "profile": ("mbdeploy.cli.profile", "profile", "Time every layer of a model on a device, beside the whole."),
    "report": ("mbdeploy.cli.report", "report", "Write the HTML report of benchmark runs."),
    "eval": ("mbdeploy.cli.eval", "eval_command", "Top-1/top-5 of converted models on a labelled image set."),
    "select": ("mbdeploy.cli.select", "select", "The most accurate model within a latency budget."),
    "compare": ("mbdeploy.cli.compare", "compare", "Compare two runs; non-zero exit on a latency regression."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, attribute, _ = COMMANDS[name]
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table above, so listing commands imports nothing.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        try:
            return super().invoke(ctx)
        except MbdeployError as exc:
            click.echo(f"Error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)
        except Interrupted as exc:
            name = signal.Signals(exc.signum).name
            click.echo(f"Error: interrupted ({name}); finished outputs are kept, partial ones were discarded",
                       err=True)
            ctx.exit(128 + exc.signum)
        except KeyboardInterrupt:
            click.echo("Error: interrupted; finished outputs are kept, partial ones were discarded", err=True)
            ctx.exit(130)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C would be, so the same clean-up runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    # The clean-up after this (restoring a phone's settings, ending device processes) must not be cut short
    # by a second TERM or HUP; SIGKILL still ends everything, and our children die with us (mbdeploy/lifeline.py).
    for other in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)


def handle_termination_signals() -> None:
    """Treat SIGTERM (kill, systemd, CI cancel) and SIGHUP (a closed terminal or ssh session) as Ctrl-C."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup asked for HUP to be ignored: keep it so
            signal.signal(signum, _interrupt)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mbdeploy")
@click.option("-v", "--verbose", is_flag=True,
              help="Show the libraries' own log lines (TensorFlow, LiteRT), hidden by default.")
def cli(verbose: bool) -> None:
    """mbdeploy: MobileNet v1 from trained weights to measured numbers on devices."""
    if verbose:
        import os

        from mbdeploy.tf_runtime import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"


def main() -> None:
    handle_termination_signals()
    # Click prints a usage error as three lines (usage, a hint, the error); ours are one.
    try:
        code = cli.main(prog_name="mbdeploy", standalone_mode=False)
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"Error: {exc.format_message()}{where}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Error: aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
