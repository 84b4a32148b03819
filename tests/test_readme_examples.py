"""Every `mbdeploy` example in the README runs as written, or says here why it cannot (issue 13, item 26).

The examples are read from the README's ```sh blocks and run in order, verbatim
(shell-split, as a user would paste them), in a fresh project folder that holds
what they name: `photos/` and `imagenet_labels.txt` (links to the reference photos
and labels), `mobilenet_v1_0.5_160_quant.tflite` and `../shared/reference/` (links
to Google's reference model). Each must exit as the README says (0 unless noted).
An example that is neither run nor listed in NOT_HERE with a reason fails the test,
so a new example cannot drift unseen; a NOT_HERE entry that matches no example
fails too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest
from support.cli import harness_env
from support.paths import REFERENCE, ROOT

# Example (prefix) -> why it does not run in this test.
NOT_HERE = {
    "make demo": "a set-up command: test_cli checks it against the Makefile and CI; benchmarks/bench_demo.py runs it",
    "make test": "a set-up command: this suite is what it runs",
    "python3 -m venv .venv": "installs from PyPI (network, minutes); tests/test_without_tensorflow.py checks the extras",
    "pip install 'mbdeploy[aihub]'": "installs from PyPI",
    "qai-hub configure": "needs a Qualcomm AI Hub account",
    "mbdeploy convert --alpha 0.5 --res 160 --weights mobilenet_v1_0.5_160_2017_06_14.tgz":
        "needs Google's Slim checkpoint .tgz, which ../shared/reference does not hold (test_weights reads Slim "
        "checkpoints it writes)",
    "mbdeploy convert --grid": "16 models, minutes: benchmarks/bench_convert.py times it",
    "mbdeploy bench --device 'ssh://pi@10.0.0.5": "names the author's board (tests/test_ssh.py benches over a real sshd)",
    "mbdeploy profile --device 'ssh://pi@10.0.0.5'": "names the author's board and one of its runs",
    "mbdeploy bench --device local --models models --label \"$(":
        "a shell substitution (a second bench of every model, labelled by git); the --device local example above "
        "covers bench, tests/test_fleet_history.py covers --label",
    "mbdeploy report --device 'pixel*'": "filters for phone records, which a host without a phone has none of "
                                        "(tests/test_fleet_history.py covers the filters)",
    "mbdeploy bench --device all": "up to 20 s per model on every device; the --device local example covers the path",
    "mbdeploy bench --device local --resume 20261123": "names a run of the author's machine (test_bench resumes runs)",
    "mbdeploy report results/20261123": "names a run of the author's machine; the plain `report` example runs",
    "mbdeploy eval --data ~/imagenet/val": "needs ImageNet",
    "mbdeploy eval --device board": "names the author's board and needs ImageNet (tests/test_eval_device.py "
                                    "evaluates over a real sshd)",
    "mbdeploy eval --device pixel": "needs a phone (tests/test_eval_device.py drives the adb test device)",
    "mbdeploy compare results/BASELINE results/CURRENT": "placeholders for two runs of yours (tests/test_compare.py)",
    "mbdeploy devices --adb-host rack.local": "names the author's adb host",
    "mbdeploy devices --hosted": "asks Qualcomm AI Hub (account, network)",
    "mbdeploy bench --device pixel": "needs a phone (tests/test_android.py drives the adb path through the test device)",
    "mbdeploy bench --device 'aihub:": "needs a Qualcomm AI Hub account",
    "mbdeploy bench --device iphone": "needs an iPhone (tests/test_ios.py drives a stand-in)",
    "mbdeploy profile --device pixel": "needs a phone",
    "mbdeploy profile --device iphone": "needs an iPhone (tests/test_ios.py profiles through a stand-in)",
    "mbdeploy select --device pixel": "needs records from a phone",
    "python -m mbdeploy.testing.adb_device": "starts the phone stand-in on port 5555 beside the default adb server; "
                                              "tests/test_android.py runs that path on a private server",
    "adb connect": "part of the adb test device example above",
}
# Examples that exit non-zero by design here, and the line that says why.
EXPECTED_FAILURE = {
    # Random weights at 0.75_192 and the 0.5_160 models: whether one fits 10 ms depends on this host.
    "mbdeploy select --device local --budget-ms 10": (1, "Error: no model with known accuracy fits 10 ms"),
}


def readme_examples() -> list[str]:
    """Commands of the README's ```sh blocks, continuation lines joined, comments dropped, in order, once each."""
    text = (ROOT / "README.md").read_text()
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and command not in commands:
                commands.append(command)
    return commands


def _not_here(command: str) -> str | None:
    return next((why for prefix, why in NOT_HERE.items() if command.startswith(prefix)), None)


def test_every_example_is_run_or_excused():
    examples = readme_examples()
    unused = [prefix for prefix in NOT_HERE if not any(c.startswith(prefix) for c in examples)]
    assert not unused, f"NOT_HERE entries that match no README example: {unused}"
    unknown = [c for c in examples if not c.startswith("mbdeploy ") and _not_here(c) is None]
    assert not unknown, f"README examples that are neither mbdeploy commands nor excused: {unknown}"


@pytest.fixture
def project(tmp_path, reference_dir):
    root = tmp_path / "project"
    root.mkdir()
    (tmp_path / "shared").mkdir()
    os.symlink(reference_dir, tmp_path / "shared" / "reference")
    for folder in ("photos", "unlabelled"):
        (root / folder).mkdir()
        for photo in ("cat.bmp", "bird.bmp", "hot_dog.jpg"):
            os.symlink(reference_dir / photo, root / folder / photo)
    os.symlink(reference_dir / "mobilenet_v1_0.5_160_quant.tflite", root / "mobilenet_v1_0.5_160_quant.tflite")
    os.symlink(reference_dir / "imagenet_labels.txt", root / "imagenet_labels.txt")
    # The labels of the reference photos, as REFERENCE/README.md names them.
    (root / "labels.txt").write_text("cat.bmp tiger cat\nbird.bmp chickadee\nhot_dog.jpg hotdog\n")
    return root


@pytest.mark.slow
def test_readme_examples_run_as_written(project, tmp_path):
    env = harness_env(tmp_path)  # with the suite's unroutable ADB_SERVER_SOCKET (tests/support/fixtures.py)
    ran = []
    for command in readme_examples():
        if not command.startswith("mbdeploy ") or _not_here(command):
            continue
        argv = shlex.split(command)
        done = subprocess.run([sys.executable, "-m", "mbdeploy", *argv[1:]], cwd=project, env=env,
                              capture_output=True, text=True, timeout=600)
        assert "Traceback" not in done.stderr, (command, done.stderr)
        code, message = EXPECTED_FAILURE.get(command, (0, None))
        if done.returncode != 0 and message is not None:
            assert done.returncode == code and done.stderr.splitlines()[-1].startswith(message), (command, done.stderr)
        else:
            assert done.returncode == 0, (command, done.stderr[-2000:])
        ran.append(command)
    assert len(ran) >= 15, ran  # the README's own runnable examples, not a handful
    assert (project / "results" / "report" / "index.html").is_file()
    # The manifest example shows what the first example wrote (its elisions aside).
    text = (ROOT / "README.md").read_text()
    example = json.loads(next(b for b in re.findall(r"```json\n(.*?)```", text, flags=re.S) if "mbdeploy.manifest/1" in b))
    written = json.loads((project / "models" / example["name"] / "manifest.json").read_text())
    assert (example["macs"], example["params"], example["spec"]) == (written["macs"], written["params"], written["spec"])
    shown = example["artifacts"][0]
    real = next(a for a in written["artifacts"] if (a["format"], a["precision"]) == (shown["format"], shown["precision"]))
    assert {k: shown[k] for k in ("path", "bytes", "macs", "params")} == {k: real[k] for k in ("path", "bytes", "macs", "params")}
    assert set(shown["verification"]) == set(real["verification"])
    assert {k: v for k, v in shown["verification"].items() if k in ("verifier", "probes", "max_logit_diff", "passed")} == {
        k: v for k, v in real["verification"].items() if k in ("verifier", "probes", "max_logit_diff", "passed")}
