"""Figures drawn by helper processes while the report reads, judges and writes the rest.

Over a fleet and a year of runs, drawing the fleet and history figures is most
of what a report costs after a new run, and it runs on one core while the
machine has more. A `Drawer` starts up to two helper processes as the report
starts (each imports matplotlib while the runs are being read) and hands each
figure to the one with the least work; the report goes on and collects the
files' digests at the end. A figure is described as a `Drawing`: a module-level
function that returns a matplotlib Figure and the plain data it draws, so it
can be pickled to the helper; without a drawer the same drawing is made in
process, with the same result.

The helpers are started through `mbdeploy.lifeline`: their own process group
(Ctrl-C reaches the report, which ends them) and killed by the kernel if the
report dies. They are ours, so pickle is the protocol on their pipes.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import queue
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mbdeploy.errors import OutputError

# Results files at least this large (about 3,000 records) make a report whose figures are worth
# a helper process: below it the helpers' start-up (~0.5 s of CPU each) costs more than it saves.
HELPERS_FROM_BYTES = 4_000_000
MAX_HELPERS = 2
_FRAME = struct.Struct("!Q")


@dataclass(frozen=True)
class Drawing:
    """A figure as data: `function(*args)` returns a matplotlib Figure (never None: check for data first)."""

    function: Callable[..., object]
    args: tuple


def draw_files(drawing: Drawing, name: str, title: str, out_dir: Path, formats: tuple[str, ...]) -> dict[str, str]:
    """Draw, save NAME.<format> into out_dir (atomically) and return each file's sha256."""
    from mbdeploy.report.figures import save_figure

    figure = drawing.function(*drawing.args)
    if figure is None or isinstance(figure, str):
        raise OutputError(f"figure {name} had nothing to draw; its data should have been checked first")
    save_figure(figure, name, title, out_dir, formats)
    return file_digests(out_dir, name, formats)


def file_digests(out_dir: Path, name: str, formats: tuple[str, ...]) -> dict[str, str]:
    """The sha256 of each NAME.<format> file of a figure in out_dir (what the figure cache lists)."""
    return {ext: hashlib.sha256((Path(out_dir) / f"{name}.{ext}").read_bytes()).hexdigest() for ext in formats}


def helpers_worth_it(results_bytes: int) -> int:
    """How many helpers to start for results of this size on this machine (0: draw in process)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    if results_bytes < HELPERS_FROM_BYTES or cores < 2:
        return 0
    return min(MAX_HELPERS, cores)


class _Helper:
    def __init__(self) -> None:
        from mbdeploy import lifeline

        # Answers come on a pipe of their own: whatever the interpreter or a library prints (a
        # sitecustomize, a .pth file) can never land inside a frame. What it prints, and a crash's
        # traceback, go to a file whose last line the report's error quotes. -P: the folder the
        # report runs in is not on the helper's import path, as it is not on the report's.
        self.log = tempfile.TemporaryFile()
        answers, answer_end = os.pipe()
        try:
            self.process = lifeline.spawn([sys.executable, "-P", "-m", "mbdeploy.report.drawing", str(answer_end)],
                                          stdin=subprocess.PIPE, stdout=self.log, stderr=self.log,
                                          pass_fds=(answer_end,))
        except BaseException:
            os.close(answers)
            self.log.close()
            raise
        finally:
            os.close(answer_end)
        self.answers = os.fdopen(answers, "rb")
        self.pending: list[str] = []  # names of the figures sent, in order
        # A frame larger than the pipe would block the report until the helper, busy drawing, reads
        # it: a thread writes them, so the report goes on at once.
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        self.write_error: OSError | None = None
        self._feeder = threading.Thread(target=self._feed, name="mbdeploy-drawing-feeder", daemon=True)
        self._feeder.start()

    def send(self, message: object) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._outbox.put(_FRAME.pack(len(data)) + data)

    def _feed(self) -> None:
        while (frame := self._outbox.get()) is not None:
            try:
                if self.write_error is None:
                    self.process.stdin.write(frame)
                    self.process.stdin.flush()
            except OSError as exc:  # the helper is gone: results() says so
                self.write_error = exc
            finally:
                self._outbox.task_done()
        self._outbox.task_done()

    def sent(self) -> None:
        """Wait until every frame handed to `send` is written (or the helper is known to be gone)."""
        self._outbox.join()

    def stop_feeding(self) -> None:
        self._outbox.put(None)
        self._feeder.join(10)

    def receive(self) -> object:
        return _read_frame(self.answers)

    def last_words(self) -> str:
        """The last line the helper printed (a crash's exception), or ''."""
        self.log.seek(max(0, self.log.seek(0, os.SEEK_END) - 4096))  # the tail: it may have warned at length
        lines = self.log.read().decode(errors="replace").strip().splitlines()
        return lines[-1].strip() if lines else ""


class Drawer:
    """Up to `helpers` helper processes; `draw` hands a figure over, `results` waits for every file."""

    def __init__(self, helpers: int, start_now: bool = True) -> None:
        self._count = helpers
        self._helpers: list[_Helper] = []
        if start_now:
            self._start()

    def _start(self) -> None:
        try:
            for _ in range(self._count):
                self._helpers.append(_Helper())
        except BaseException as exc:  # a start that failed (or Ctrl-C meanwhile) leaves none of the others running
            self.close()
            if isinstance(exc, OSError):
                raise OutputError(f"cannot start a drawing process: {exc.strerror or exc}") from None
            raise

    def draw(self, drawing: Drawing, name: str, title: str, out_dir: Path, formats: tuple[str, ...]) -> None:
        if not self._helpers:
            self._start()
        helper = min(self._helpers, key=lambda h: len(h.pending))
        try:
            helper.send((drawing, name, title, str(out_dir), formats))
        except pickle.PicklingError as exc:
            raise OutputError(f"cannot hand figure {name} to the drawing process: {exc}") from None
        helper.pending.append(name)

    def results(self) -> dict[str, dict[str, str]]:
        """Each figure's file digests, once every helper has drawn what it was given."""
        digests: dict[str, dict[str, str]] = {}
        for helper in self._helpers:
            helper.sent()
            for name in helper.pending:
                try:
                    answer = helper.receive()
                except (OSError, EOFError, pickle.UnpicklingError):
                    try:
                        code = helper.process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        code = None  # it garbled its answer and lives on: close() ends it
                    words = helper.last_words()
                    raise OutputError(f"the drawing process ended while drawing figure {name} "
                                      f"(exit code {code}){': ' + words if words else ''}") from None
                if isinstance(answer, str):
                    raise OutputError(f"drawing figure {name} failed: {answer}")
                digests[name] = answer
            helper.pending = []
        return digests

    def close(self) -> None:
        """End the helpers (at once if they are still drawing: the report is being abandoned)."""
        from mbdeploy import lifeline

        for helper in self._helpers:
            if helper.pending:  # abandoned while drawing: end it first, so no frame write blocks the feeder
                lifeline.kill_group(helper.process)
            helper.stop_feeding()
            for stream in (helper.process.stdin, helper.answers, helper.log):
                try:
                    stream.close()
                except OSError:
                    pass
            try:
                helper.process.wait(timeout=0 if helper.pending else 10)
            except subprocess.TimeoutExpired:
                lifeline.kill_group(helper.process)
                helper.process.wait()
        self._helpers = []


def _read_frame(stream) -> object:  # noqa: ANN001 - a binary file
    header = stream.read(_FRAME.size)
    if len(header) < _FRAME.size:
        raise EOFError("no frame")
    size = _FRAME.unpack(header)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("truncated frame")
    return pickle.loads(data)


def _serve(answer_fd: int) -> None:
    """The helper: read (drawing, name, title, out_dir, formats) frames until end of input; answer each on answer_fd."""
    from mbdeploy.report.figures import pyplot

    pyplot()  # matplotlib's import, while the report is still reading runs
    answers = os.fdopen(answer_fd, "wb")
    stdin = sys.stdin.buffer
    while True:
        try:
            drawing, name, title, out_dir, formats = _read_frame(stdin)
        except EOFError:
            answers.close()
            os._exit(0)  # the report waits for this exit: skip the interpreter's tear-down of matplotlib
        try:
            answer: object = draw_files(drawing, name, title, Path(out_dir), tuple(formats))
        except Exception as exc:  # noqa: BLE001 - said to the report, which raises it as an OutputError
            answer = f"{type(exc).__name__}: {exc}"
        data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        answers.write(_FRAME.pack(len(data)) + data)
        answers.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
