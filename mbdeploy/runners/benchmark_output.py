"""What benchmark_model prints (binary stdout+stderr, or the APK's logcat), parsed into a RunOutcome.

Every form below comes from the tool's own printing code; tests/transcripts/
README.md names the source of each fixture:

- classic TFLite tool: `BenchmarkModel::Run` ("STARTING!", "Initialized
  session in", one `Stat::OutputToStream` line per phase: `count=0`,
  `count=N curr=X` with `(all same)` when N > 1, or `count= first= curr= min=
  max= avg= std=`, each optionally followed by ` p5= median= p95=`),
  `BenchmarkLoggingListener::OnBenchmarkEnd` ("Inference timings in us:",
  2018-2019 builds "Average inference timings in us: Warmup:, Init:, no
  stats:"), the memory lines, the delegate lines of `BenchmarkTfLiteModel::
  Init`, the interpreter's "Replacing N out of M node(s) with delegate"
  (`Subgraph::ReplaceNodeSubsetsWithDelegateKernels`), and `ParseFlags`'
  "Unconsumed cmdline flags";
- LiteRT 2.x tool (`litert/tools/benchmark_litert_model.h`): the same stats
  lines plus a "BENCHMARK RESULTS" block printed through LITERT_LOG
  (`INFO: [benchmark_litert_model.h:N] Inference (avg): X ms (N runs)`), which
  alone (logcat tag `litert`) also holds a whole result;
- logcat in `-v threadtime`, `-v brief`, `-v time` and Android Studio's panel
  layout (`logcat_messages`).

Anything malformed is a RunnerError naming the line; no KeyError or
IndexError comes out of any text.
"""

from __future__ import annotations

import math
import re

from mbdeploy.errors import RunnerError
from mbdeploy.runners.base import RunOutcome, TimingOptions
from mbdeploy.runners.op_profile import node_type_tables

_PREFIX = re.compile(r"^\s*(?:INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG): ")
_SOURCE = re.compile(r"^\[[\w.+\-]+:\d+\]\s?")  # LITERT_LOG's "[file:line] "
NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf"
_N = rf"({NUMBER})"
_PERCENTILES = rf"(?: p5={_N} median={_N} p95={_N})?"
_STAT_FORMS = (
    re.compile(rf"count=(\d+) first={_N} curr={_N} min={_N} max={_N} avg={_N} std={_N}{_PERCENTILES}"),
    re.compile(rf"count=(\d+) curr={_N}(\(all same\))?{_PERCENTILES}"),
    re.compile(rf"count=(0){_PERCENTILES}"),
)
_STAT_KEYS = (
    ("count", "first", "curr", "min", "max", "avg", "std", "p5", "median", "p95"),
    ("count", "curr", "all_same", "p5", "median", "p95"),
    ("count", "p5", "median", "p95"),
)
_TIMINGS = ("Inference timings in us:", "Average inference timings in us:")

# logcat layouts: -v threadtime, -v brief, -v time, and Android Studio's Logcat panel.
_LOGCAT = (
    re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+ [VDIWEFA] (?P<tag>\S+?)\s*: ?(?P<msg>.*)$"),
    re.compile(r"^[VDIWEFA]/(?P<tag>\S+?)\s*\(\s*\d+\): ?(?P<msg>.*)$"),
    re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+ [VDIWEFA]/(?P<tag>\S+?)\s*\(\s*\d+\): ?(?P<msg>.*)$"),
    re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+-\d+\s+(?P<tag>\S+)\s+\S+\s+[VDIWEFA]\s+(?P<msg>.*)$"),
)
LOG_TAGS = ("tflite", "litert")  # TFLITE_LOG and LITERT_LOG on Android


def logcat_messages(text: str, tags: tuple[str, ...] = LOG_TAGS) -> str:
    """The messages of the benchmark tool's tags from logcat output, one per line, prefixes removed."""
    out = []
    for line in text.splitlines():
        for layout in _LOGCAT:
            match = layout.match(line.rstrip("\r"))
            if match:
                if match["tag"] in tags:
                    out.append(match["msg"])
                break
    return "\n".join(out)


def clean(line: str) -> str:
    """A line without its log-level prefix, LITERT_LOG's [file:line] and surrounding blanks."""
    text = _PREFIX.sub("", line.rstrip("\r")).strip()
    return _SOURCE.sub("", text)


def parse_stat(line: str) -> dict | None:
    """One `Stat::OutputToStream` line (microseconds) -> its fields; None if not one; RunnerError if cut or bent."""
    text = clean(line)
    if not text.startswith("count="):
        return None
    for form, keys in zip(_STAT_FORMS, _STAT_KEYS):
        match = form.fullmatch(text)
        if match:
            break
    else:
        raise RunnerError(f"benchmark_model printed a malformed stats line: {line.strip()!r}")
    values = dict(zip(keys, match.groups()))
    all_same = values.pop("all_same", None) is not None
    fields: dict = {k: float(v) for k, v in values.items() if v is not None and not math.isnan(float(v))}
    fields["count"] = int(values["count"])
    if "curr" in fields and "min" not in fields:
        if fields["count"] > 1 and not all_same:
            raise RunnerError(f"benchmark_model printed a malformed stats line (no first/min/max/avg/std): {line.strip()!r}")
        for key in ("first", "min", "max", "avg"):
            fields[key] = fields["curr"]
        fields["std"] = 0.0
    fields["all_same"] = all_same or fields["count"] == 1
    return fields


def _runs(lines: list[str]) -> list[list[str]]:
    """The output split into one part per tool start ("STARTING!"); text before the first belongs to it."""
    parts: list[list[str]] = [[]]
    for line in lines:
        if line == "STARTING!" and "STARTING!" in parts[-1]:
            parts.append([])
        parts[-1].append(line)
    return parts


def _has_result(lines: list[str]) -> bool:
    return any(l.startswith(_TIMINGS) or l.endswith("BENCHMARK RESULTS ==========") for l in lines)


_BLOCK = {
    "init_ms": re.compile(rf"^Model initialization:\s+{_N} ms$"),
    "first_ms": re.compile(rf"^Warmup \(first\):\s+{_N} ms$"),
    "warmup": re.compile(rf"^Warmup \(avg\):\s+{_N} ms \((\d+) runs\)$"),
    "avg": re.compile(rf"^Inference \(avg\):\s+{_N} ms \((\d+) runs\)$"),
    "min": re.compile(rf"^Inference \(min\):\s+{_N} ms$"),
    "max": re.compile(rf"^Inference \(max\):\s+{_N} ms$"),
    "std": re.compile(rf"^Inference \(std\):\s+{_N}$"),
    "peak_mb": re.compile(rf"^Peak memory:\s+{_N} MB$"),
    "init_footprint_mb": re.compile(rf"^Init footprint:\s+{_N} MB$"),
    "overall_footprint_mb": re.compile(rf"^Overall footprint:\s+{_N} MB$"),
}


def parse_results_block(lines: list[str]) -> dict | None:
    """LiteRT 2.x's "BENCHMARK RESULTS" block -> its figures (ms, MB); None if the text has none."""
    starts = [i for i, line in enumerate(lines) if line.endswith("BENCHMARK RESULTS ==========")]
    if not starts:
        return None
    block: dict = {}
    for line in lines[starts[-1] + 1:]:
        if line.startswith("=====") or line.startswith("Saving benchmark result"):
            break
        for key, pattern in _BLOCK.items():
            match = pattern.match(line)
            if match:
                block[key] = float(match.group(1))
                if key in ("warmup", "avg"):
                    block[f"{key}_runs"] = int(match.group(2))
    if "avg" not in block:
        raise RunnerError("benchmark_model's BENCHMARK RESULTS block has no 'Inference (avg): X ms (N runs)' line")
    missing = [name for name in ("min", "max", "std") if name not in block]
    if block["avg_runs"] > 0 and missing:
        raise RunnerError(f"benchmark_model's BENCHMARK RESULTS block ends before its 'Inference ({missing[0]})' line")
    return block


def _delegates(lines: list[str], extra: dict) -> None:
    for line in lines:
        if match := re.search(r"Explicitly applied (.+?) delegate, and the model graph will be (completely|partially) "
                              r"executed by the delegate(?: w/ (\d+) delegate kernels)?", line):
            extra["delegates"].append({
                "delegate": match.group(1),
                "coverage": "complete" if match.group(2) == "completely" else "partial",
                "delegate_kernels": int(match.group(3)) if match.group(3) else None,
            })
        elif match := re.search(r"Though (.+?) delegate is explicitly applied, the model graph will not be executed", line):
            extra["delegates"].append({"delegate": match.group(1), "coverage": "none", "delegate_kernels": 0})
        elif match := re.search(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((.+?)\) node, yielding (\d+) partitions", line):
            extra["delegations"].append({"delegate": match.group(3), "nodes": int(match.group(1)),
                                         "of": int(match.group(2)), "partitions": int(match.group(4))})
    warnings = [
        f"{d['delegate']} runs {'part' if d['coverage'] == 'partial' else 'none'} of the graph"
        + (f" ({d['delegate_kernels']} delegate kernels)" if d["delegate_kernels"] else "")
        for d in extra["delegates"] if d["coverage"] != "complete"
    ]
    warnings += [f"{d['delegate']} replaces {d['nodes']} of {d['of']} nodes ({d['partitions']} partitions)"
                 for d in extra["delegations"] if d["nodes"] < d["of"]]
    if warnings:
        extra["delegate_warning"] = "; ".join(warnings)


def _tail(lines: list[str]) -> str:
    return " | ".join(line for line in lines if line)[-300:] or "(nothing)"


def parse_output(text: str, options: TimingOptions | None = None) -> RunOutcome:
    """benchmark_model's output (stdout+stderr, or the APK's logcat messages) -> RunOutcome; RunnerError if none."""
    all_lines = [clean(line) for line in text.splitlines()]
    runs = _runs(all_lines)
    lines = runs[-1]
    extra: dict = {"delegates": [], "delegations": []}
    outcome = RunOutcome(extra=extra)
    finished = sum(1 for run in runs if _has_result(run))
    if finished > 1:
        extra["runs_in_output"] = finished
        extra["output_note"] = f"the output held {finished} benchmark runs; the last one is recorded"
    for line in lines:
        if line.startswith("Unconsumed cmdline flags:"):
            raise RunnerError(f"benchmark_model ignored flags it does not know: {line}")
    stats = [s for s in (parse_stat(line) for line in lines) if s is not None]
    for line in lines:
        if match := re.search(rf"Initialized session in {_N}\s*ms", line):
            outcome.init_ms = float(match.group(1))
        elif match := re.search(rf"input model file size \(MB\): {_N}", line):
            extra["model_size_mb"] = float(match.group(1))
        elif line.startswith(_TIMINGS):
            fields = {k.strip(): float(v) for k, v in re.findall(rf"([A-Za-z ()]+): {_N}", line.split(":", 1)[1])}
            extra["timings_us"] = fields
            if "First inference" in fields:
                outcome.first_inference_ms = fields["First inference"] / 1000
            if outcome.init_ms is None and "Init" in fields:
                outcome.init_ms = fields["Init"] / 1000
        elif match := re.search(rf"footprint delta from the start of the tool \(MB\): init={_N} overall={_N}", line):
            extra["memory_delta_mb"] = {"init": float(match.group(1)), "overall": float(match.group(2))}
        elif match := re.search(rf"^Peak memory footprint \(MB\): init={_N} overall={_N}", line):
            # Builds before the periodic monitor printed this delta under a "peak" name.
            extra["memory_delta_mb"] = {"init": float(match.group(1)), "overall": float(match.group(2))}
        elif match := re.search(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_N}", line):
            outcome.peak_memory_mb = float(match.group(1))
    _delegates(lines, extra)
    block = parse_results_block(lines)
    us = 1000.0
    if stats and stats[-1]["count"] > 0:
        run = stats[-1]
        warmup = stats[-2] if len(stats) >= 2 else None
        if warmup is not None:
            extra["warmup_us"] = {k: v for k, v in warmup.items() if k != "all_same"}
            if warmup["count"] == 0:
                outcome.first_inference_ms = None  # no warm-up: the tool prints 0 for a first run it never timed
            elif outcome.first_inference_ms is None:
                # 2018-2019 builds print no "First inference": it is the warm-up's first run.
                outcome.first_inference_ms = warmup["first"] / us
        outcome.summary_ms = {
            "count": run["count"], "mean": run["avg"] / us,
            "median": run["median"] / us if "median" in run else (run["avg"] / us if run["all_same"] else None),
            "p5": run["p5"] / us if "p5" in run else None, "p95": run["p95"] / us if "p95" in run else None,
            "p90": None, "p99": None, "std": run["std"] / us, "min": run["min"] / us, "max": run["max"] / us,
        }
        mean_s, count = run["avg"] / 1e6, run["count"]
    elif block is not None and block["avg_runs"] > 0:
        extra["source"] = "BENCHMARK RESULTS block"
        outcome.summary_ms = {
            "count": block["avg_runs"], "mean": block["avg"], "median": None, "p5": None, "p95": None,
            "p90": None, "p99": None, "std": block["std"], "min": block["min"], "max": block["max"],
        }
        mean_s, count = block["avg"] / 1e3, block["avg_runs"]
    else:
        raise RunnerError(f"benchmark_model printed no timed runs; its output ended with: {_tail(lines)}")
    if block is not None:
        outcome.init_ms = outcome.init_ms if outcome.init_ms is not None else block.get("init_ms")
        if outcome.first_inference_ms is None and block.get("warmup_runs"):
            outcome.first_inference_ms = block.get("first_ms")
        if outcome.peak_memory_mb is None and block.get("peak_mb"):
            outcome.peak_memory_mb = block["peak_mb"]
        if "init_footprint_mb" in block:
            extra["memory_footprint_mb"] = {"init": block["init_footprint_mb"],
                                            "overall": block.get("overall_footprint_mb")}
    tables = node_type_tables(_after(lines, "Operator-wise Profiling Info for Regular Benchmark Runs"))
    if tables:
        extra["op_profile_by_type"] = tables[0]
    elif not any("Profiling Info for" in line for line in lines) and (tables := node_type_tables(lines)):
        extra["op_profile_by_type"] = tables[-1]  # 2018-2019 builds print the tables without a header
    if not extra["delegations"]:
        del extra["delegations"]
    if options is not None:
        if count * mean_s >= options.max_secs:
            outcome.stop_reason = "max_secs"
        elif options.runs is not None and count <= options.runs:
            outcome.stop_reason = "runs"
        else:
            outcome.stop_reason = "min_secs"
    return outcome


def _after(lines: list[str], title: str) -> list[str]:
    """The lines after the one holding `title`, up to the next profiling section."""
    for index, line in enumerate(lines):
        if title in line:
            rest = lines[index + 1:]
            for end, later in enumerate(rest):
                if "Profiling Info for" in later:
                    return rest[:end]
            return rest
    return []
