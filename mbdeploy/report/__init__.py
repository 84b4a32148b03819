"""`mbdeploy report`: result runs and manifests -> figures, results.csv and index.html."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mbdeploy.atomic import write_text


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


def write_report(results: Iterable[Path], out_dir: Path, model_dirs: Iterable[Path] = ()) -> Report:
    """Read runs (folders or a results root), write figures, results.csv and index.html into out_dir."""
    from mbdeploy.records.reader import ManifestIndex, latest_ok, load_runs, tidy_rows, to_csv
    from mbdeploy.report.figures import render_all
    from mbdeploy.records.fit import fit_groups
    from mbdeploy.report.html import render_page

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = load_runs(list(results))
    rows = tidy_rows(runs, ManifestIndex(model_dirs))
    latest = latest_ok(rows)
    fits = fit_groups(latest)
    figures = render_all(latest, out_dir)
    csv_path = out_dir / "results.csv"
    write_text(csv_path, to_csv(rows))
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = render_page(runs=runs, all_rows=rows, latest=latest, fits=fits, figures=figures, out_dir=out_dir,
                       generated_at=generated)
    index = out_dir / "index.html"
    write_text(index, page)
    return Report(index, csv_path, figures, len(rows), len(runs), fits)
