"""The report's figure cache (report/figure_cache.py): a figure whose drawn data is unchanged is copied
from the previous report, a changed one is drawn again, and deleting or damaging the cache is safe."""

from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path

import pytest
from support.records import write_run
from test_fleet_history import _fleet

import mbdeploy.report.figure_cache as figure_cache
from mbdeploy.records.reader import load_runs
from mbdeploy.report import write_report
from mbdeploy.report.figure_cache import CACHE_FILE

FLEET = ("fleet_latency_heatmap", "fleet_energy_heatmap", "fleet_small_multiples")


@pytest.fixture
def drawn(monkeypatch):
    """The names of the figures drawn (saved from a matplotlib figure) since the last clear()."""
    names: list[str] = []
    real_save, real_draw = figure_cache.save_figure, figure_cache.draw_files

    def counting_save(figure, name, *args, **kwargs):
        names.append(name)
        return real_save(figure, name, *args, **kwargs)

    def counting_draw(drawing, name, *args, **kwargs):
        names.append(name)
        return real_draw(drawing, name, *args, **kwargs)

    monkeypatch.setattr(figure_cache, "save_figure", counting_save)
    monkeypatch.setattr(figure_cache, "draw_files", counting_draw)
    return names


def _pngs(report) -> dict[str, bytes]:
    return {f.name: f.png.read_bytes() for f in report.figures if f.png is not None}


def _within_a_minute(work, fifo) -> None:
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    if thread.is_alive():  # blocked reading the FIFO: give it an end of file so the thread ends, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(60)
        pytest.fail(f"the report blocked reading {fifo}")
    if failure:
        raise failure[0]


def test_unchanged_figures_are_copied_changed_ones_drawn_and_the_cache_is_safe_to_lose(tmp_path, drawn):
    results, out = tmp_path / "results", tmp_path / "report"
    _fleet(results, devices=30)  # > 24 series: the fleet view
    first = write_report([results], out)
    assert sorted(drawn) == sorted(FLEET)
    before = _pngs(first)

    drawn.clear()
    again = write_report([results], out)  # nothing changed: nothing drawn, the same files
    assert drawn == [] and _pngs(again) == before
    assert "data:image/png;base64" in again.index.read_text()

    # A second night: every device 10% slower, energy as before. The latency views change,
    # the energy heatmap draws the same cells, and the history appears.
    night = [copy.deepcopy(r) for r in load_runs([results])[0].records]
    for record in night:
        record["run_id"], record["started_at"] = "night-2", "2026-01-02T00:00:00Z"
        for key, value in record["latency_ms"].items():
            if key != "count" and value is not None:
                record["latency_ms"][key] = value * 1.1
    write_run(results, "night-2", night)
    drawn.clear()
    later = write_report([results], out)
    assert sorted(drawn) == ["fleet_latency_heatmap", "fleet_small_multiples", "history"]
    after = _pngs(later)
    assert after["fleet_energy_heatmap"] == before["fleet_energy_heatmap"]
    assert after["fleet_latency_heatmap"] != before["fleet_latency_heatmap"]

    # A figure file edited or damaged in the report folder is drawn again, not copied.
    (out / "history.png").write_bytes(b"not the figure")
    drawn.clear()
    write_report([results], out)
    assert drawn == ["history"]

    # Something other than a regular file where a figure was (here a FIFO, whose read would block for
    # ever) is drawn over, never read.
    (out / "history.png").unlink()
    os.mkfifo(out / "history.png")
    drawn.clear()
    _within_a_minute(lambda: write_report([results], out), out / "history.png")
    assert drawn == ["history"]

    # Deleting the cache file, or damaging it, only costs drawing everything again.
    for damage in ("delete", "garbage", "entries"):
        if damage == "delete":
            (out / CACHE_FILE).unlink()
        elif damage == "garbage":
            (out / CACHE_FILE).write_text("{not json")
        else:  # sound JSON, entries of the wrong shape
            names = json.loads((out / CACHE_FILE).read_text())
            (out / CACHE_FILE).write_text(json.dumps(dict(zip(names, ("x", ["key"], 1, None)))))
        drawn.clear()
        rebuilt = write_report([results], out)
        assert sorted(drawn) == sorted(FLEET + ("history",))
        assert _pngs(rebuilt) == _pngs(later)
    assert set(json.loads((out / CACHE_FILE).read_text())) == set(FLEET + ("history",))


def test_a_change_in_the_drawing_code_draws_again(tmp_path, drawn, monkeypatch):
    results, out = tmp_path / "results", tmp_path / "report"
    _fleet(results, devices=30)
    write_report([results], out)
    monkeypatch.setattr(figure_cache, "_drawing_code", lambda: "another version of the drawing code")
    drawn.clear()
    write_report([results], out)
    assert sorted(drawn) == sorted(FLEET)


def test_the_drawing_code_key_covers_every_module_the_figures_draw_with():
    import sys

    import mbdeploy.report.figures
    import mbdeploy.report.fleet
    import mbdeploy.report.history  # noqa: F401 - their imports are what the figures draw with

    hashed = set(figure_cache.drawing_sources())
    used = {Path(m.__file__).resolve() for name, m in list(sys.modules.items())
            if name.startswith("mbdeploy.") and getattr(m, "__file__", None)}
    assert used and used <= hashed, sorted(str(p) for p in used - hashed)


# --- figures drawn by helper processes (report/drawing.py) ------------------------------------------


def _helpers() -> list[int]:
    from support.processes import processes_mentioning

    def parent(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        except OSError:
            return ""  # gone meanwhile

    return [pid for pid in processes_mentioning("mbdeploy.report.drawing") if parent(pid) == str(os.getpid())]


def test_helper_processes_draw_the_same_files_the_report_draws_itself_and_none_is_left(tmp_path, monkeypatch):
    import mbdeploy.report.drawing as drawing

    results = tmp_path / "results"
    _fleet(results, devices=30)
    night = [copy.deepcopy(r) for r in load_runs([results])[0].records]
    for record in night:
        record["run_id"], record["started_at"] = "night-2", "2026-01-02T00:00:00Z"
    write_run(results, "night-2", night)
    in_process = write_report([results], tmp_path / "here")
    started = []
    real = drawing.Drawer.__init__

    def counting(self, helpers, start_now=True):  # noqa: ANN001
        started.append(helpers)
        real(self, helpers, start_now)

    monkeypatch.setattr(drawing, "HELPERS_FROM_BYTES", 0)  # small results still get helpers
    monkeypatch.setattr(drawing.Drawer, "__init__", counting)
    elsewhere = write_report([results], tmp_path / "helpers")
    assert started and started[0] >= 1  # this machine has two cores or more (see the environment)
    assert _helpers() == []
    assert _pngs(elsewhere) == _pngs(in_process) and set(_pngs(elsewhere)) == set(FLEET + ("history",))
    # The cache lists the helpers' files as it lists its own: the next report copies them all.
    assert json.loads((tmp_path / "helpers" / CACHE_FILE).read_text()) == \
        json.loads((tmp_path / "here" / CACHE_FILE).read_text())


def test_a_drawing_that_fails_in_a_helper_is_an_error_naming_the_figure_and_no_helper_is_left(tmp_path):
    import math

    from mbdeploy.errors import OutputError
    from mbdeploy.report.drawing import Drawer, Drawing

    drawer = Drawer(1)
    try:
        drawer.draw(Drawing(math.sqrt, (-1.0,)), "broken", "a figure", tmp_path, ("png",))
        with pytest.raises(OutputError, match="drawing figure broken failed: ValueError: math domain error"):
            drawer.results()
    finally:
        drawer.close()
    assert _helpers() == []

    drawer = Drawer(1)
    try:
        drawer.draw(Drawing(os._exit, (3,)), "gone", "a figure", tmp_path, ("png",))
        with pytest.raises(OutputError, match=r"the drawing process ended while drawing figure gone \(exit code 3\)"):
            drawer.results()
    finally:
        drawer.close()
    assert _helpers() == []


def test_an_abandoned_report_ends_its_helpers_at_once(tmp_path):
    import time

    from mbdeploy.report.drawing import Drawer, Drawing

    drawer = Drawer(2)
    drawer.draw(Drawing(time.sleep, (120,)), "slow", "a figure", tmp_path, ("png",))
    started = time.monotonic()
    drawer.close()  # as on Ctrl-C: the figure is still being drawn
    assert time.monotonic() - started < 30 and _helpers() == []


def _python_path(monkeypatch, first: Path) -> None:
    """PYTHONPATH for the helpers started from here on: `first`, then what it was (never an empty entry: cwd)."""
    kept = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(first), *kept]))


def test_a_helper_imports_nothing_from_the_report_s_folder_and_what_python_prints_is_no_frame(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from mbdeploy.report.drawing import Drawer, Drawing

    here = tmp_path / "here"
    (here / "matplotlib").mkdir(parents=True)  # a folder the user runs the report in; it is not code to run
    (here / "matplotlib" / "__init__.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    site = tmp_path / "site"
    site.mkdir()  # a sitecustomize (or .pth file) that prints as the interpreter starts
    (site / "sitecustomize.py").write_text("print('a line on stdout before any frame')\n")
    monkeypatch.chdir(here)
    _python_path(monkeypatch, site)
    drawer = Drawer(1)
    try:
        drawer.draw(Drawing(Figure, ()), "empty", "a figure", tmp_path, ("png",))
        assert list(drawer.results()) == ["empty"]
    finally:
        drawer.close()
    assert not (tmp_path / "ran").exists() and _helpers() == []


def test_a_helper_that_cannot_start_is_one_error_naming_why_and_nothing_is_left(tmp_path, monkeypatch, capfd):
    from matplotlib.figure import Figure

    from mbdeploy import lifeline
    from mbdeploy.errors import OutputError
    from mbdeploy.report.drawing import Drawer, Drawing

    broken = tmp_path / "broken"
    (broken / "matplotlib").mkdir(parents=True)
    (broken / "matplotlib" / "__init__.py").write_text("raise ImportError('matplotlib is broken here')\n")
    _python_path(monkeypatch, broken)
    drawer = Drawer(1)
    try:
        drawer.draw(Drawing(Figure, ()), "gone", "a figure", tmp_path, ("png",))
        with pytest.raises(OutputError, match=r"ended while drawing figure gone \(exit code 1\): "
                                              r"ImportError: matplotlib is broken here$"):
            drawer.results()
    finally:
        drawer.close()
    assert "Traceback" not in capfd.readouterr().err  # the report prints its one Error: line, not the helper's
    # A second helper that cannot be started (no memory, no process slots) ends the first.
    real, calls = lifeline.spawn, []

    def second_fails(argv, **kwargs):  # noqa: ANN001, ANN003
        calls.append(argv)
        if len(calls) == 2:
            raise OSError(11, "Resource temporarily unavailable")
        return real(argv, **kwargs)

    monkeypatch.setattr(lifeline, "spawn", second_fails)
    with pytest.raises(OutputError, match="cannot start a drawing process: Resource temporarily unavailable"):
        Drawer(2)
    assert len(calls) == 2 and _helpers() == []


def test_a_ctrl_c_while_its_helpers_are_ended_still_removes_the_report_s_half_written_folder(tmp_path, monkeypatch):
    import mbdeploy.report.drawing as drawing
    from mbdeploy.errors import InvalidInput

    results = tmp_path / "results"
    _fleet(results, devices=2)  # a new run: the helpers start as the report starts
    real_close, closes = drawing.Drawer.close, []

    def interrupted(self):  # noqa: ANN001 - Ctrl-C while the first close() waits for a helper to exit
        real_close(self)
        closes.append(self)
        if len(closes) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(drawing, "helpers_worth_it", lambda results_bytes: 1)
    monkeypatch.setattr(drawing.Drawer, "close", interrupted)
    with pytest.raises(KeyboardInterrupt) as raised:
        write_report([results], tmp_path / "out", device="no-such-device*")  # refused after its folder is made
    assert isinstance(raised.value.__context__, InvalidInput)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"] and _helpers() == []
