"""The layering rules hold: scripts/check_layers.py reports no problem, and it does catch one."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from support.paths import ROOT


def check_layers(root: Path) -> tuple[list[str], str]:
    """Run the checker of the tree at root: (the problems it printed, its summary line)."""
    done = subprocess.run([sys.executable, str(root / "scripts" / "check_layers.py")], capture_output=True,
                          text=True, timeout=120, check=False)
    assert not done.stderr, done.stderr
    *problems, summary = done.stdout.splitlines()
    assert summary.endswith(f" {len(problems)} layering problem(s)"), done.stdout
    assert done.returncode == (1 if problems else 0), done.stdout
    return problems, summary


def test_the_package_keeps_its_layering_rules():
    problems, _ = check_layers(ROOT)
    assert problems == []


def copy_of_the_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "mbdeploy", tmp_path / "mbdeploy", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "check_layers.py", tmp_path / "scripts")
    return tmp_path


def add_line(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_checker_catches_each_kind_of_violation(tmp_path):
    tree = copy_of_the_package(tmp_path)
    before, _ = check_layers(tree)
    package = tree / "mbdeploy"
    add_line(package / "devices" / "local.py", "from mbdeploy.records import stats")
    add_line(package / "runners" / "litert.py", "import tensorflow")
    add_line(package / "report" / "html.py", "from mbdeploy.bench import sweep")
    add_line(package / "architecture.py", "import coremltools")
    add_line(package / "evaluate.py", "from mbdeploy.cli import main")
    add_line(package / "select.py", "from mbdeploy.compare import _hidden")
    # Through a helper: export -> verify -> a runner is as forbidden as a direct import.
    add_line(package / "verify.py", "from mbdeploy.runners import registry")
    problems, _ = check_layers(tree)
    new = [p for p in problems if p not in before]
    expected = [
        ("mbdeploy.devices.local: ", "-> mbdeploy.records"),
        ("mbdeploy.runners.litert: ", "-> tensorflow"),
        ("mbdeploy.report.html: ", "-> mbdeploy.bench"),
        ("mbdeploy.architecture: ", "-> coremltools"),
        ("mbdeploy.evaluate: ", "the library never imports the CLI"),
        ("mbdeploy.select: ", "takes the private name mbdeploy.compare._hidden"),
        ("mbdeploy.export", "-> mbdeploy.verify -> mbdeploy.runners"),
    ]
    for start, part in expected:
        assert any(p.startswith(start) and part in p for p in new), (start, part, new)
