"""`mbdeploy report`: result runs and manifests -> figures, results.csv and index.html."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from mbdeploy.atomic import give_usual_mode, write_text
from mbdeploy.errors import InvalidInput


@dataclass
class Report:
    index: Path
    csv: Path
    figures: list  # list[FigureOutput]
    records: int
    runs: int
    fits: dict

    def to_dict(self) -> dict:
        return {
            "index": str(self.index),
            "csv": str(self.csv),
            "records": self.records,
            "runs": self.runs,
            "figures": [
                {"name": f.name, "png": str(f.png) if f.png else None, "svg": str(f.svg) if f.svg else None, "note": f.note}
                for f in self.figures
            ],
            "fits": [
                {"device": k[0], "format": k[1], "precision": k[2], "config_key": k[3], **fit.to_dict()}
                for k, fit in sorted(self.fits.items())
            ],
        }


# Marks a folder a report wrote: only such a folder (or one holding nothing but report
# files) is replaced by the next report; any other existing folder is refused.
REPORT_MARK = ".mbdeploy-report"


def write_report(results: Iterable[Path], out_dir: Path, model_dirs: Iterable[Path] = (), *,
                 device: str | None = None, model: str | None = None, since: str | None = None) -> Report:
    """Read runs (folders or a results root), write figures, results.csv and index.html into out_dir.

    Everything is written into a fresh folder beside out_dir and renamed into place, so
    no file of an earlier report survives beside an index that no longer names it, and
    an interrupted report leaves the previous one whole. `device` and `model` are shell
    patterns that focus the report; `since` (a date) leaves out runs that started before it.
    Over many devices the per-series figures give way to the fleet view (report/fleet.py).
    """
    from mbdeploy.report.drawing import Drawer, helpers_worth_it

    from mbdeploy.records.reader import runs_to_read

    results = list(results)
    # Figures drawn by helper processes on large reports. When a run is new or changed the figures
    # will change: the helpers start now, to import matplotlib while the runs are read. Otherwise
    # the figures are most likely the previous report's, and helpers start only if one is drawn.
    helpers = helpers_worth_it(results_bytes(results))
    drawer = Drawer(helpers, start_now=bool(runs_to_read(results))) if helpers else None
    try:
        return _write_report(results, Path(out_dir), model_dirs, drawer, device=device, model=model, since=since)
    finally:
        if drawer is not None:
            drawer.close()


def results_bytes(results: list[Path]) -> int:
    """The size of the results files a report over these paths reads."""
    from mbdeploy.records.reader import find_runs
    from mbdeploy.records.store import RECORDS_FILE

    total = 0
    for run in find_runs(results):
        try:
            total += (Path(run) / RECORDS_FILE).stat().st_size
        except OSError:
            pass  # load_runs says what is wrong with it
    return total


def _write_report(results: list[Path], out_dir: Path, model_dirs: Iterable[Path], drawer, *,  # noqa: ANN001 - Drawer
                  device: str | None, model: str | None, since: str | None) -> Report:
    import shutil
    import tempfile

    from mbdeploy.records.reader import ManifestIndex, latest_ok, load_runs, tidy_rows
    from mbdeploy.report.results_csv import chunk_key, write_results_csv
    from mbdeploy.report.figures import FIGURES, FigureOutput, render_all
    from mbdeploy.records.fit import fit_groups
    from mbdeploy.report.html import embed_figures, render_page
    from mbdeploy.records.layers import layer_rows
    from mbdeploy.report.layers import where_the_time_goes
    from mbdeploy.report.fleet import MAX_SERIES, fleet_view, focus_runs, matching, series_count
    from mbdeploy.report.history import history_view, parse_since, run_time

    runs = load_runs(results)
    if since is not None:
        start = parse_since(since)
        runs = [run for run in runs if (run_time(run) or start) >= start]
        if not runs:
            raise InvalidInput(f"--since {since}: no run started on or after it")
    _check_replaceable(out_dir)
    from mbdeploy.report.figure_cache import FigureCache

    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
        give_usual_mode(staging)  # a published report folder readable as the user's other files are
    except OSError as exc:
        raise InvalidInput(f"--out {out_dir}: cannot create a folder in {out_dir.parent}: "
                           f"{exc.strerror or exc}") from None
    try:
        # Figures and results.csv rows whose data is unchanged are copied from the report being
        # replaced (report/figure_cache.py, report/results_csv.py).
        previous = out_dir if (out_dir / REPORT_MARK).is_file() else None
        cache = FigureCache(previous, staging, drawer)
        manifests = ManifestIndex(model_dirs)
        by_run = [(run, matching(tidy_rows([run], manifests), device, model)) for run in runs]
        rows = [row for _, run_rows in by_run for row in run_rows]
        if device is not None or model is not None:
            if not rows:
                raise InvalidInput(f"no record matches --device {device or '*'} --model {model or '*'}: "
                                   "both are shell patterns (pixel*, *_224) matched against device ids and model names")
            runs = focus_runs(runs, device, model)
        latest = latest_ok(rows)
        fits = fit_groups(latest)
        sections = []
        if series_count(latest) > MAX_SERIES:  # one series per device would crowd every axis: the fleet view
            note = (f"not drawn series by series for {series_count(latest)} device/format/precision/config series "
                    f"(more than {MAX_SERIES}); see the fleet view, or focus with --device PATTERN / --model PATTERN")
            figures = [FigureOutput(name, title, note=note) for name, title, _ in FIGURES]
            fleet_html, fleet_figures = fleet_view(latest, staging, model, cache)
            sections.append(fleet_html)
        else:
            figures, fleet_figures = render_all(latest, staging, cache), []
        history_html, history_figures = history_view(runs, rows, staging, cache=cache)
        if history_html:
            sections.append(history_html)
        layers_html, layer_figures = where_the_time_goes(runs, staging)
        read_manifests = manifests.digest()  # after every row is made: each manifest they read is in it
        chunks = [(chunk_key(run, read_manifests, (device, model)), run_rows) for run, run_rows in by_run]
        write_results_csv(staging, previous, chunks, layer_rows(runs, rows))
        generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        page = render_page(runs=runs, all_rows=rows, latest=latest, fits=fits, figures=figures, out_dir=staging,
                           generated_at=generated, extra_sections=sections + ([layers_html] if layers_html else []))
        cache.write()  # after the page: figures drawn by helpers meanwhile are on disk once it returns
        write_text(staging / "index.html", embed_figures(page, staging))
        write_text(staging / REPORT_MARK, "written by mbdeploy report; the next report replaces this folder\n")
        _swap_into_place(staging, out_dir)
    finally:
        try:
            if drawer is not None:  # first: a helper still drawing must not write into a folder being removed
                drawer.close()
        finally:  # even if a Ctrl-C comes while close() waits for a helper to exit
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    moved = [replace(f, png=out_dir / f.png.name if f.png else None, svg=out_dir / f.svg.name if f.svg else None)
             for f in figures + fleet_figures + history_figures + layer_figures]
    return Report(out_dir / "index.html", out_dir / "results.csv", moved, len(rows), len(runs), fits)


def _check_replaceable(out_dir: Path) -> None:
    from mbdeploy.report.figure_cache import CACHE_FILE
    from mbdeploy.report.results_csv import CACHE_FILE as CSV_CACHE_FILE
    from mbdeploy.report.figures import FIGURES
    from mbdeploy.report.fleet import FIGURE_NAMES as FLEET_FIGURES
    from mbdeploy.report.history import FIGURE_NAMES as HISTORY_FIGURES
    from mbdeploy.report.layers import FIGURE_NAMES

    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InvalidInput(f"--out {out_dir} is a file; name a folder (it is created when missing)")
    ours = {"index.html", "results.csv", REPORT_MARK, CACHE_FILE, CSV_CACHE_FILE} | {f"{name}.{ext}" for name, _, _ in FIGURES
                                                         for ext in ("png", "svg")}
    ours |= {f"{name}.{ext}" for name in FIGURE_NAMES + FLEET_FIGURES + HISTORY_FIGURES for ext in ("png", "svg")}
    names = sorted(p.name for p in out_dir.iterdir())
    foreign = [name for name in names if name not in ours]
    if foreign and REPORT_MARK not in names:
        raise InvalidInput(f"--out {out_dir} holds files a report did not write ({', '.join(foreign[:3])}"
                           f"{' ...' if len(foreign) > 3 else ''}); the report replaces its folder whole: "
                           "name a new or empty folder, or an earlier report's")


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    import os
    import shutil

    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    os.rename(out_dir, old)
    try:
        os.rename(staging, out_dir)
    except OSError:
        os.rename(old, out_dir)  # put the earlier report back
        raise
    shutil.rmtree(old, ignore_errors=True)
