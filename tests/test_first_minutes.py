"""A newcomer's first five minutes (issue 13, items 27 and 28): quiet libraries, precisions that fit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mbdeploy.export import installed_formats
from mbdeploy.formats import FORMATS

# What TensorFlow, absl and LiteRT print on their own; never ours.
LIBRARY_LINES = ("oneDNN custom operations", "absl::InitializeLog", "Created TensorFlow Lite XNNPACK delegate")


def bare_cli(*args, cwd=None):
    """The CLI with the user's environment as it is on a fresh shell: no log level set for TensorFlow."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MBDEPLOY_VERBOSE")}
    return subprocess.run([sys.executable, "-m", "mbdeploy", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_convert_prints_no_library_log_lines_unless_verbose(tmp_path):
    args = ["convert", "--alpha", "0.25", "--res", "128", "--formats", "tflite", "--precisions", "fp32", "--json"]
    quiet = bare_cli(*args, "--out", tmp_path / "a")
    assert quiet.returncode == 0, quiet.stderr
    assert not [line for line in quiet.stderr.splitlines() if any(text in line for text in LIBRARY_LINES)], quiet.stderr
    loud = bare_cli("--verbose", *args, "--out", tmp_path / "b")
    assert loud.returncode == 0, loud.stderr
    assert "oneDNN custom operations" in loud.stderr  # what was hidden is really TensorFlow's, and --verbose shows it


def test_eval_prints_no_litert_banner_and_each_warning_once(tmp_path, small_models, reference_dir):
    models = tmp_path / "models"
    for copy in ("a", "b"):  # two manifests, each meeting the same unreadable image
        shutil.copytree(small_models, models / copy)
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(reference_dir / "cat.bmp", data / "cat.bmp")
    (data / "broken.jpg").write_bytes(b"not a jpeg")
    done = bare_cli("eval", "--data", data, "--models", models, "--json")
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stderr.splitlines() if any(text in line for text in LIBRARY_LINES)], done.stderr
    assert done.stderr.count("Warning: skipped 1 unreadable image(s): broken.jpg") == 1, done.stderr
    loud = bare_cli("--verbose", "eval", "--data", data, "--models", models / "a", "--json")
    assert "Created TensorFlow Lite XNNPACK delegate" in loud.stderr


def test_a_precision_applies_to_the_default_formats_that_take_it(tmp_path):
    """`convert --precisions fp16` without --formats: built where fp16 exists, the rest named as skipped."""
    expected = [fmt for fmt in installed_formats() if "dynamic" in FORMATS[fmt].precisions]
    skipped = [fmt for fmt in installed_formats() if fmt not in expected]
    if not skipped:
        pytest.skip("every installed format takes 'dynamic': nothing to skip here")
    done = bare_cli("convert", "--alpha", "0.25", "--res", "128", "--precisions", "dynamic", "--out", tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    assert [a["format"] for a in json.loads(done.stdout)["artifacts"]] == expected
    warning = [line for line in done.stderr.splitlines() if line.startswith("Warning: precision dynamic")]
    assert warning == [f"Warning: precision dynamic is built for {', '.join(expected)} only; skipped for "
                       + ", ".join(f"{fmt} (takes {', '.join(FORMATS[fmt].precisions)})" for fmt in skipped)
                       + "; name --formats to require it"]


def test_a_named_format_that_cannot_take_the_precision_is_still_an_error(tmp_path):
    done = bare_cli("convert", "--alpha", "0.25", "--res", "128", "--formats", "tflite,onnx", "--precisions", "fp16",
                    "--out", tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == "Error: precision 'fp16' is not supported for onnx; allowed: fp32, int8"
    assert not any(tmp_path.iterdir())


def test_the_main_job_benches_enough_family_members_for_a_latency_fit(tmp_path):
    """`make demo` converts and benches several (alpha, resolution) pairs in fp32 and int8, so the first
    report's latency-versus-MACs figure has a fit with quality (>= 4 points), not one point.
    Its wall time is benchmarks/bench_demo.py's business."""
    import shlex

    from mbdeploy.accounting import model_cost
    from mbdeploy.architecture import ModelSpec, model_name
    from mbdeploy.records.fit import MIN_POINTS_FOR_QUALITY
    from support.paths import ROOT

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    stamp = tmp_path / "stamp"
    stamp.touch()
    printed = subprocess.run(["make", "-s", "-n", "-f", ROOT / "Makefile", "-o", stamp, "demo", "BIN=bin",
                              f"STAMP={stamp}"], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    steps = [shlex.split(line)[1:] for line in printed.splitlines() if line.startswith("bin/mbdeploy ")]
    converted = {}
    for step in steps:
        if step[0] == "convert":
            options = dict(zip(step[1::2], step[2::2]))
            spec = ModelSpec(float(options["--alpha"]), int(options["--res"]))
            converted[model_name(spec.alpha, spec.resolution)] = (spec, options.get("--precisions", ""))
    assert len({model_cost(spec).macs for spec, _ in converted.values()}) >= MIN_POINTS_FOR_QUALITY
    assert all({"fp32", "int8"} <= set(precisions.split(",")) for _, precisions in converted.values())
    bench = next(step for step in steps if step[0] == "bench")
    benched = {Path(value).name for option, value in zip(bench, bench[1:]) if option == "--models"}
    assert set(converted) <= benched or "models" in bench
    assert ["report"] in steps


@pytest.mark.parametrize("args, message", [
    (["convert", "--bogus"], "Error: No such option '--bogus'. Did you mean '--out'? (see 'mbdeploy convert --help')"),
    (["frob"], "Error: No such command 'frob'. (see 'mbdeploy --help')"),
    (["select", "--budget-ms", "5"], "Error: Missing option '--device'. (see 'mbdeploy select --help')"),
    (["bench", "--threads", "two"], "Error: Invalid value for '--threads': 'two' is not a valid integer range. "
                                    "(see 'mbdeploy bench --help')"),
    (["bench", "--cooldown-temp", "-500"], "Error: Invalid value for '--cooldown-temp': -500.0 is not in the range "
                                           "0<=x<=120. (see 'mbdeploy bench --help')"),
    (["eval", "--data", ".", "--formats", "tflite,foo"],
     "Error: Invalid value for '--formats': foo unknown; allowed: tflite, coreml, onnx (a comma list, or repeat the "
     "option) (see 'mbdeploy eval --help')"),
    (["select", "--device", "local", "--budget-ms", "5", "--formats", "onnx", "--formats", "tf"],
     "Error: Invalid value for '--formats': tf unknown; allowed: tflite, coreml, onnx (a comma list, or repeat the "
     "option) (see 'mbdeploy select --help')"),
    (["select", "--device", "local", "--budget-ms", "5", "--models", "no-such-folder"],
     "Error: Invalid value for '--models': no-such-folder does not exist (give model folders or manifest.json files) "
     "(see 'mbdeploy select --help')"),
    (["report", "--models", "no-such-folder"],
     "Error: Invalid value for '--models': no-such-folder does not exist (give model folders or manifest.json files) "
     "(see 'mbdeploy report --help')"),
    (["select", "--device", "local", "--budget-ms", "5", "--formats", ","],
     "Error: Invalid value for '--formats': names no format; allowed: tflite, coreml, onnx "
     "(see 'mbdeploy select --help')"),
    (["eval", "--data", ".", "--limit", "0"],
     "Error: Invalid value for '--limit': 0 is not in the range x>=1. (see 'mbdeploy eval --help')"),
])
def test_usage_errors_are_one_line(args, message):
    done = bare_cli(*args)
    assert done.returncode == 2 and done.stderr.splitlines() == [message]


def test_eval_data_that_is_a_file_says_so(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"")
    done = bare_cli("eval", "--data", tmp_path / "photo.jpg", "--models", tmp_path)
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"Error: --data {tmp_path / 'photo.jpg'} is not a folder; give a folder of images (class subfolders, "
        "or flat with --labels)"]
