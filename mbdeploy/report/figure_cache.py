"""Figures of the previous report reused when the data they draw has not changed.

A report is written whole every time, but a figure often draws exactly what it
drew last time (a report run again, a new run from a few devices leaves the other
views as they were). Each figure is keyed by a digest of the data it draws, its
title, its file formats and the drawing code (the source of every mbdeploy module
and matplotlib's version). The report's folder keeps `CACHE_FILE`, listing each
drawn figure's key and the sha256 of its files; the next report copies a figure
whose key matches and whose files are intact from the previous report instead of
drawing it. Deleting the file, or the report folder, is safe: every figure is
then drawn again.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Callable

from mbdeploy.atomic import read_regular_file, write_bytes, write_text
from mbdeploy.report.drawing import Drawer, Drawing, draw_files, file_digests
from mbdeploy.report.figures import FigureOutput, save_figure

CACHE_FILE = ".mbdeploy-figures.json"
PACKAGE = Path(__file__).resolve().parents[1]


def drawing_sources() -> list[Path]:
    """The code that decides what a figure looks like: all of mbdeploy, not a list of modules.

    The figures also draw what other modules compute (the fit, the Pareto frontier, labels
    from the naming scheme); a list would go stale with the next import. Hashing the whole
    package (~1 MB) costs milliseconds; an edit anywhere only redraws once.
    """
    return sorted(PACKAGE.rglob("*.py"))


@lru_cache(maxsize=1)
def _drawing_code() -> str:
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.sha256()
    for path in drawing_sources():
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    try:
        digest.update(version("matplotlib").encode())
    except PackageNotFoundError:
        pass
    return digest.hexdigest()


def figure_key(name: str, title: str, formats: tuple[str, ...], data: object) -> str:
    """The digest a figure is cached under: what it draws and how."""
    text = json.dumps([_drawing_code(), name, title, list(formats), data], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class FigureCache:
    """Draws figures into `out_dir`, or copies them from `previous` (an earlier report's folder) if unchanged."""

    def __init__(self, previous: Path | None, out_dir: Path, drawer: Drawer | None = None) -> None:
        self.previous = previous
        self.out_dir = Path(out_dir)
        self.reused: list[str] = []
        self.drawn: list[str] = []
        self._old = _read_entries(previous / CACHE_FILE) if previous is not None else {}
        self._new: dict[str, dict] = {}
        self._drawer = drawer  # helper processes that draw `Drawing`s while the report goes on
        self._keys_elsewhere: dict[str, str] = {}  # figures handed to the drawer -> their keys

    def figure(self, name: str, title: str, data: object, draw: Callable[[], object],
               formats: tuple[str, ...] = ("png", "svg")) -> FigureOutput | None:
        """The figure as files in out_dir; `draw()` (a Figure, a note saying why not, or None) only if needed.

        `data` must hold everything the drawing reads: it is what the key is made of.
        """
        key = figure_key(name, title, formats, data)
        if self._reused(name, key, formats):
            return self._output(name, title, formats)
        result = draw()
        if result is None or isinstance(result, str):
            return None if result is None else FigureOutput(name, title, note=result)
        output = save_figure(result, name, title, self.out_dir, formats)
        self._new[name] = {"key": key, "files": file_digests(self.out_dir, name, formats)}
        self.drawn.append(name)
        return output

    def drawing(self, name: str, title: str, data: object, drawing: Drawing,
                formats: tuple[str, ...] = ("png", "svg")) -> FigureOutput:
        """As `figure`, for a drawing that always makes a figure: handed to the drawer when there is one.

        The output names the files before they exist; `write()` waits for them.
        """
        key = figure_key(name, title, formats, data)
        if not self._reused(name, key, formats):
            if self._drawer is not None:
                self._drawer.draw(drawing, name, title, self.out_dir, formats)
                self._keys_elsewhere[name] = key
            else:
                self._new[name] = {"key": key, "files": draw_files(drawing, name, title, self.out_dir, formats)}
            self.drawn.append(name)
        return self._output(name, title, formats)

    def _reused(self, name: str, key: str, formats: tuple[str, ...]) -> bool:
        """Whether the previous report's files of this figure, drawn under this key and intact, were copied."""
        old = self._old.get(name)
        if old is None or old.get("key") != key or not self._copy(name, old, formats):
            return False
        self._new[name] = old
        self.reused.append(name)
        return True

    def _copy(self, name: str, entry: dict, formats: tuple[str, ...]) -> bool:
        files = entry.get("files")
        if not isinstance(files, dict) or sorted(files) != sorted(formats):
            return False
        contents = {}
        for ext in formats:
            data = read_regular_file(self.previous / f"{name}.{ext}")  # never a FIFO or a link out
            if data is None:
                return False
            if hashlib.sha256(data).hexdigest() != files[ext]:  # edited or damaged since: draw it again
                return False
            contents[ext] = data
        for ext, data in contents.items():
            write_bytes(self.out_dir / f"{name}.{ext}", data)
        return True

    def _output(self, name: str, title: str, formats: tuple[str, ...]) -> FigureOutput:
        return FigureOutput(name, title, png=self.out_dir / f"{name}.png" if "png" in formats else None,
                            svg=self.out_dir / f"{name}.svg" if "svg" in formats else None)

    def write(self) -> None:
        """Wait for the figures being drawn elsewhere, then list this report's figures for the next one."""
        if self._drawer is not None:
            for name, files in self._drawer.results().items():
                self._new[name] = {"key": self._keys_elsewhere[name], "files": files}
        write_text(self.out_dir / CACHE_FILE, json.dumps(self._new, sort_keys=True, indent=1) + "\n")


def _read_entries(path: Path) -> dict:
    data = read_regular_file(path)
    try:
        entries = json.loads(data) if data is not None else {}
    except ValueError:
        return {}  # damaged: every figure is drawn
    if not isinstance(entries, dict):
        return {}
    # An entry of another shape (edited or damaged) is dropped: that figure is drawn again.
    return {name: entry for name, entry in entries.items() if isinstance(entry, dict)}
