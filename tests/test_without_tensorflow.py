"""Benching, inspecting, reporting and choosing need no TensorFlow (issue 13, item 30).

The environment: a fresh venv (no system site packages) that sees exactly the
distributions `pip install mbdeploy` without extras installs, resolved from
pyproject.toml's dependencies through each distribution's own metadata and
linked from the shared venv; mbdeploy itself from this tree. TensorFlow, Keras
and everything only the `convert` extra brings are simply not there: `import
tensorflow` fails as on a machine that never installed it, and its metadata is
absent too. This is honest where an import blocker would not be: nothing
pretends, a module found by any route would import. (Installing from PyPI in the
test would prove the same but needs the network and minutes.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from support.cli import harness_env
from support.paths import ROOT


def _closure(requirements: list[str]) -> dict[str, metadata.Distribution]:
    """Distributions pip would install for these requirements (no extras), found in this environment."""
    found: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = requirement.name.lower().replace("_", "-")
        if name in found:
            continue
        found[name] = metadata.distribution(requirement.name)
        todo += [Requirement(r) for r in found[name].requires or []]
    return found


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    distributions = _closure(project["dependencies"])
    assert not {"tensorflow", "tensorflow-cpu", "keras"} & set(distributions), "a base dependency pulls TensorFlow in"
    root = tmp_path_factory.mktemp("no-tf")
    site = root / "site"
    site.mkdir()
    for distribution in distributions.values():
        base = Path(distribution.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in distribution.files or []} - {".."}:
            if not (site / top).exists() and (base / top).exists():
                (site / top).symlink_to(base / top)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root / "venv"], check=True)
    python = root / "venv" / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "base-dependencies.pth").write_text(f"{site}\n")
    return python


def bare(python: Path, *args, env: dict, cwd: Path | None = None):
    return subprocess.run([python, "-m", "mbdeploy", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**env, "PYTHONPATH": str(ROOT)}, timeout=300)


def test_bench_report_select_compare_inspect_devices_without_tensorflow(bare_python, small_models, tmp_path):
    env = harness_env(tmp_path)
    probe = subprocess.run([bare_python, "-c", "import tensorflow"], capture_output=True, text=True, env=env)
    assert probe.returncode == 1 and "No module named 'tensorflow'" in probe.stderr  # the test proves something
    models = shutil.copytree(small_models, tmp_path / "models")
    int8 = models / "mobilenet_v1_0.25_128" / "mobilenet_v1_0.25_128_int8.tflite"

    devices = bare(bare_python, "devices", "--json", env=env)
    assert devices.returncode == 0, devices.stderr
    assert any(d["kind"] == "local" for d in json.loads(devices.stdout))

    inspected = bare(bare_python, "inspect", int8, "--json", env=env)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["macs"] > 0

    results = tmp_path / "results"
    benched = bare(bare_python, "bench", "--device", "local", "--models", models, "--precisions", "fp32,int8",
                   "--runs", "5", "--out", results, "--json", env=env)
    assert benched.returncode == 0, benched.stderr
    run = next(results.iterdir())
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert {(r["artifact"]["precision"], r["status"]) for r in records} == {("fp32", "ok"), ("int8", "ok")}

    report = bare(bare_python, "report", results, "--models", models, "--out", tmp_path / "report", "--json", env=env)
    assert report.returncode == 0, report.stderr
    assert Path(json.loads(report.stdout)["index"]).is_file()

    device = records[0]["device"]["id"]
    chosen = bare(bare_python, "select", "--device", device, "--budget-ms", "1000", "--results", results,
                  "--models", models, "--json", env=env)
    # Random weights: nothing has a known accuracy, so select ran and says so (exit 1, one line).
    assert chosen.returncode == 1 and chosen.stderr.splitlines()[-1].startswith(
        "Error: no model with known accuracy fits"), chosen.stderr
    assert len(json.loads(chosen.stdout)["candidates"]) == 4

    compared = bare(bare_python, "compare", run, run, "--json", env=env)
    assert compared.returncode == 0, compared.stderr

    converted = bare(bare_python, "convert", "--alpha", "0.25", "--res", "128", "--out", tmp_path / "new", env=env)
    assert converted.returncode == 1 and converted.stderr.strip() == (
        "Error: tensorflow is not installed; install it with: pip install 'mbdeploy[convert]'")
