"""The command line as a whole: fast help, every command documented, JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from support.cli import run_cli
from support.paths import ROOT
from mbdeploy.cli import COMMANDS, cli

README = ROOT / "README.md"


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from mbdeploy.cli import cli\n"
        "try:\n    cli(['--help'], prog_name='mbdeploy')\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'ai_edge_litert', 'coremltools', 'onnxruntime', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    for name in cli.list_commands(None):
        assert name in out


def documented_commands(readme: str) -> set[str]:
    """The commands the README gives a section: each `mbdeploy X` in backticks on a `### ` heading."""
    return {name for line in readme.splitlines() if line.startswith("### ")
            for name in re.findall(r"`mbdeploy ([a-z][a-z0-9-]*)`", line)}


def command_doc_problems(commands: list[str], readme: str) -> list[str]:
    """What differs between the CLI's commands and the README's command sections, both ways."""
    documented = documented_commands(readme)
    return ([f"`mbdeploy {name}` has no `### ` section in the README" for name in sorted(set(commands) - documented)]
            + [f"the README has a section for `mbdeploy {name}`, which the CLI does not have"
               for name in sorted(documented - set(commands))])


def test_every_command_has_help_and_a_readme_section():
    listed = cli.list_commands(None)
    assert listed == list(COMMANDS), "a registered command's module is missing, so `mbdeploy --help` hides it"
    for name in listed:
        result = run_cli(name, "--help")
        assert result.returncode == 0 and "Usage:" in result.stdout, name
    assert command_doc_problems(listed, README.read_text()) == []


def test_the_readme_check_catches_a_missing_and_an_extra_section():
    readme = README.read_text()
    heading = next(line for line in readme.splitlines() if line == "### `mbdeploy eval`")
    doctored = readme.replace(heading, "### Evaluation").replace("## Manifest", "### `mbdeploy frobnicate`\n\n## Manifest")
    assert "mbdeploy eval" in doctored  # still named in the text: only a section counts
    assert command_doc_problems(list(COMMANDS), doctored) == [
        "`mbdeploy eval` has no `### ` section in the README",
        "the README has a section for `mbdeploy frobnicate`, which the CLI does not have",
    ]
    assert command_doc_problems(list(COMMANDS), readme) == []


def test_table_json_has_the_documented_fields():
    result = run_cli("table", "--json")
    rows = json.loads(result.stdout)
    assert len(rows) == 16
    required = {"name", "alpha", "resolution", "macs", "params", "published_macs_m", "published_params_m",
                "published_top1", "published_top5"}
    assert all(required <= set(row) for row in rows)
    assert rows[0]["name"] == "mobilenet_v1_1.0_224" and rows[0]["published_top1"] == 70.7


def test_table_shows_discrepancies():
    result = run_cli("table", env={"COLUMNS": "200"})
    assert result.returncode == 0
    assert "the release says 34 M MACs" in result.stdout


def test_inspect_official_models_agree_with_our_count(reference_dir):
    from mbdeploy.accounting import model_cost
    from mbdeploy.architecture import ModelSpec

    for name, alpha, resolution in (("mobilenet_v1_0.25_128_quant.tflite", 0.25, 128),
                                    ("mobilenet_v1_0.5_160_quant.tflite", 0.5, 160)):
        result = run_cli("inspect", reference_dir / name, "--json")
        report = json.loads(result.stdout)
        ours = model_cost(ModelSpec(alpha, resolution))
        assert abs(report["macs"] - ours.macs) <= 0.01 * ours.macs
        assert abs(report["params"] - ours.params) <= 0.01 * ours.params
        assert report["ops"]["CONV_2D"] == 15 and report["ops"]["DEPTHWISE_CONV_2D"] == 13
        assert report["inputs"][0]["dtype"] == "uint8"
        assert report["inputs"][0]["quantization"] == {"scale": 0.0078125, "zero_point": 128}
        assert {row["type"] for row in report["breakdown"]} == {"Conv 1x1", "Conv DW 3x3", "Conv 3x3", "Fully Connected"}


def test_inspect_rejects_unknown_files(tmp_path):
    path = tmp_path / "model.pb"
    path.write_text("x")
    result = run_cli("inspect", path)
    assert result.returncode == 2 and "Error: cannot inspect model.pb; allowed: .tflite, .mlpackage, .onnx" in result.stderr


def test_readme_starts_with_the_two_setup_commands_and_ci_runs_the_test_one():
    text = README.read_text()
    first_block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "\nmake test\n" in ci
    makefile = (README.parent / "Makefile").read_text()
    demo = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    # The main job: convert the embedded default, bench it on this host, write the report.
    assert "convert --alpha 0.75 --res 192" in demo and "bench --device local" in demo and "mbdeploy report" in demo
