"""`mbdeploy report`: result runs and manifests -> figures, results.csv and index.html."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from mbdeploy.atomic import write_text
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


def write_report(results: Iterable[Path], out_dir: Path, model_dirs: Iterable[Path] = ()) -> Report:
    """Read runs (folders or a results root), write figures, results.csv and index.html into out_dir.

    Everything is written into a fresh folder beside out_dir and renamed into place, so
    no file of an earlier report survives beside an index that no longer names it, and
    an interrupted report leaves the previous one whole.
    """
    import shutil
    import tempfile

    from mbdeploy.records.reader import ManifestIndex, latest_ok, load_runs, tidy_rows, to_csv
    from mbdeploy.report.figures import render_all
    from mbdeploy.records.fit import fit_groups
    from mbdeploy.report.html import render_page
    from mbdeploy.records.layers import layer_rows
    from mbdeploy.report.layers import where_the_time_goes

    out_dir = Path(out_dir)
    runs = load_runs(list(results))
    _check_replaceable(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    except OSError as exc:
        raise InvalidInput(f"--out {out_dir}: cannot create a folder in {out_dir.parent}: "
                           f"{exc.strerror or exc}") from None
    try:
        rows = tidy_rows(runs, ManifestIndex(model_dirs))
        latest = latest_ok(rows)
        fits = fit_groups(latest)
        figures = render_all(latest, staging)
        layers_html, layer_figures = where_the_time_goes(runs, staging)
        write_text(staging / "results.csv", to_csv(rows + layer_rows(runs, rows)))
        generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        page = render_page(runs=runs, all_rows=rows, latest=latest, fits=fits, figures=figures, out_dir=staging,
                           generated_at=generated, extra_sections=[layers_html] if layers_html else [])
        write_text(staging / "index.html", page)
        write_text(staging / REPORT_MARK, "written by mbdeploy report; the next report replaces this folder\n")
        _swap_into_place(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    moved = [replace(f, png=out_dir / f.png.name if f.png else None, svg=out_dir / f.svg.name if f.svg else None)
             for f in figures + layer_figures]
    return Report(out_dir / "index.html", out_dir / "results.csv", moved, len(rows), len(runs), fits)


def _check_replaceable(out_dir: Path) -> None:
    from mbdeploy.report.figures import FIGURES
    from mbdeploy.report.layers import FIGURE_NAMES

    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InvalidInput(f"--out {out_dir} is a file; name a folder (it is created when missing)")
    ours = {"index.html", "results.csv", REPORT_MARK} | {f"{name}.{ext}" for name, _, _ in FIGURES
                                                         for ext in ("png", "svg")}
    ours |= {f"{name}.{ext}" for name in FIGURE_NAMES for ext in ("png", "svg")}
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
