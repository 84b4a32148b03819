"""The official LiteRT/TFLite `benchmark_model` binary, run over adb.

Three parts: building its command line from TimingOptions, getting the
binary (`--benchmark-binary PATH`, or one download into ~/.cache/mbdeploy
whose sha256 is recorded and checked ever after), and parsing what it prints
into a RunOutcome. The parser follows the tool's own printing code:
`BenchmarkModel::Run` ("Initialized session in", one `Stat::OutputToStream`
line per phase), `BenchmarkLoggingListener::OnBenchmarkEnd` ("Inference
timings in us", memory footprint), the delegate coverage lines of
`BenchmarkTfLiteModel::Init`, and the op profiler's StatsCalculator tables.
The benchmark APK prints the same lines to logcat (see benchmark_app.py).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from mbdeploy.atomic import sha256_file, write_text
from mbdeploy.cache import cache_root
from mbdeploy.devices.base import Device
from mbdeploy.errors import InvalidInput, RunnerError
from mbdeploy.runners.base import RunOutcome, Runner, TimingOptions

# The official prebuilt tools live only under the nightly "latest" folder (the
# LiteRT performance docs link there); there is no versioned path to pin. So
# the pin is the sha256 recorded at the first download: a later file that
# differs is refused, and a user can pin a hash of their own with sha256=.
RELEASE_BASE_URL = "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/tools/nightly/latest"
RELEASE_VERSION = "nightly-latest"
ABI_FILES = {
    "arm64-v8a": "android_aarch64_benchmark_model",
    "armeabi-v7a": "android_arm_benchmark_model",
    "x86_64": "android_x86_64_benchmark_model",
    "x86": "android_x86_benchmark_model",
}
DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi")


# ---------------------------------------------------------------- the binary
def cache_dir() -> Path:
    return cache_root() / "benchmark_model" / RELEASE_VERSION


def release_file(abi: str, apk: bool = False) -> str:
    if abi not in ABI_FILES:
        raise InvalidInput(f"no official benchmark_model build for ABI {abi!r}; allowed: {', '.join(ABI_FILES)}")
    return ABI_FILES[abi] + (".apk" if apk else "")


def fetch_release(
    abi: str,
    apk: bool = False,
    cache: Path | None = None,
    base_url: str = RELEASE_BASE_URL,
    sha256: str | None = None,
) -> Path:
    """The official build for `abi`, downloaded once; its sha256 is recorded and a changed file refused."""
    name = release_file(abi, apk)
    folder = Path(cache) if cache else cache_dir()
    target, record = folder / name, folder / f"{name}.sha256"
    recorded = record.read_text().split()[0] if record.exists() else None
    expected = sha256 or recorded
    if target.exists():
        digest = sha256_file(target)
        if expected and digest != expected:
            raise RunnerError(f"cached {target} has sha256 {digest}, but {expected} was recorded; delete it to download again")
        return target
    folder.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{name}"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".download", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as exc:
            raise RunnerError(f"could not download {url} ({exc}); pass --benchmark-binary PATH instead") from None
        digest = sha256_file(tmp)
        if expected and digest != expected:
            raise RunnerError(f"downloaded {url} has sha256 {digest}, expected {expected}; refusing a changed file")
        tmp.chmod(0o755)
        os.replace(tmp, target)
        if not recorded:
            write_text(record, f"{digest}  {name}  {url}\n")
    finally:
        tmp.unlink(missing_ok=True)
    return target


# ---------------------------------------------------------------- the command line
def tool_flags(
    options: TimingOptions,
    remote_model: str,
    delegate: str = "xnnpack",
    op_profiling: bool = False,
    peak_memory: bool = False,
) -> list[str]:
    """benchmark_model's flags for one model (shared by the binary and the APK)."""
    # benchmark_model runs while either count or time is short of its minimum, so a
    # fixed --runs needs min_secs 0 to mean exactly that many runs.
    min_secs = 0 if options.runs is not None else options.min_secs
    flags = [
        f"--graph={remote_model}",
        f"--num_threads={options.threads}",
        f"--warmup_runs={options.warmup_runs}",
        f"--min_secs={min_secs:g}",
        f"--max_secs={options.max_secs:g}",
        f"--use_xnnpack={'true' if delegate == 'xnnpack' else 'false'}",
    ]
    if options.runs is not None:
        flags.append(f"--num_runs={options.runs}")
    if delegate == "gpu":
        flags.append("--use_gpu=true")
    if delegate == "nnapi":
        flags.append("--use_nnapi=true")
    if op_profiling:
        flags.append("--enable_op_profiling=true")
    if peak_memory:
        flags.append("--report_peak_memory_footprint=true")
    return flags


def check_delegate(delegate: str | None, xnnpack: bool) -> str:
    delegate = delegate or ("xnnpack" if xnnpack else "cpu")
    if delegate not in DELEGATES:
        raise InvalidInput(f"benchmark_model delegate {delegate!r} is not one of: {', '.join(DELEGATES)}")
    return delegate


def check_cpu_mask(mask: str | None) -> str | None:
    if mask is None:
        return None
    if not re.fullmatch(r"(0x)?[0-9a-fA-F]{1,16}", mask) or int(mask, 16) == 0:
        raise InvalidInput(f"CPU mask {mask!r} must be a non-zero hex bit mask such as f0 (cores 4-7) or 0x0f")
    return mask.lower().removeprefix("0x")


# ---------------------------------------------------------------- the output
_PREFIX = re.compile(r"^\s*(?:INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG): ")
_NUMBER = r"-?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)"


def _strip(line: str) -> str:
    return _PREFIX.sub("", line.rstrip("\r"))


def parse_stat(line: str) -> dict | None:
    """One `Stat::OutputToStream` line (microseconds) -> its fields; None if not one.

    Forms: `count=0`, `count=N curr=X` with `(all same)` when N > 1, the full
    `count= first= curr= min= max= avg= std=`, each optionally followed by
    `p5= median= p95=` (StatWithPercentiles in newer builds, `nan` when empty).
    """
    text = _strip(line).strip()
    if not text.startswith("count="):
        return None
    fields = {key: float(value) for key, value in re.findall(rf"\b(\w+)=({_NUMBER})", text)}
    fields = {key: value for key, value in fields.items() if not math.isnan(value)}
    fields["count"] = int(fields.get("count", 0))
    if fields["count"] and "min" not in fields and "curr" in fields:  # every run took the same time
        for key in ("first", "min", "max", "avg"):
            fields[key] = fields["curr"]
        fields["std"] = 0.0
    fields["all_same"] = "(all same)" in text
    return fields


def _section(lines: list[str], title: str) -> list[str]:
    """The lines after a line containing `title`, up to the next profiling section."""
    for index, line in enumerate(lines):
        if title in line:
            rest = lines[index + 1 :]
            for end, later in enumerate(rest):
                if "Profiling Info for" in later:
                    return rest[:end]
            return rest
    return []


def parse_node_type_table(lines: list[str]) -> list[dict]:
    """The op profiler's `Summary by node type` table (StatsCalculator::GetStatsByNodeType)."""
    rows: list[dict] = []
    inside = False
    for line in lines:
        cells = [cell.strip() for cell in _strip(line).split("\t") if cell.strip()]
        if cells[:1] == ["[Node type]"]:
            inside, rows = True, []
            continue
        if inside:
            if len(cells) < 7:
                break
            try:
                rows.append({
                    "node_type": cells[0],
                    "count": int(cells[1]),
                    "avg_ms": float(cells[2]),
                    "avg_percent": float(cells[3].rstrip("%")),
                    "cdf_percent": float(cells[4].rstrip("%")),
                    "mem_kb": float(cells[5]),
                    "times_called": int(cells[6]),
                })
            except ValueError:
                break
    return rows


def parse_output(text: str, options: TimingOptions | None = None) -> RunOutcome:
    """benchmark_model's output (stdout+stderr, or the APK's logcat messages) -> RunOutcome."""
    lines = [_strip(line) for line in text.splitlines()]
    stats = [s for s in (parse_stat(line) for line in lines) if s is not None]
    extra: dict = {"delegates": []}
    outcome = RunOutcome(extra=extra)
    for line in lines:
        if match := re.search(rf"Initialized session in ({_NUMBER})\s*ms", line):
            outcome.init_ms = float(match.group(1))
        elif match := re.search(rf"input model file size \(MB\): ({_NUMBER})", line):
            extra["model_size_mb"] = float(match.group(1))
        elif line.startswith(("Inference timings in us:", "Average inference timings in us:")):
            fields = {k.strip(): float(v) for k, v in re.findall(rf"([A-Za-z ()]+): ({_NUMBER})", line.split(":", 1)[1])}
            extra["timings_us"] = fields
            if "First inference" in fields:
                outcome.first_inference_ms = fields["First inference"] / 1000
            if outcome.init_ms is None and "Init" in fields:
                outcome.init_ms = fields["Init"] / 1000
        elif match := re.search(rf"footprint delta from the start of the tool \(MB\): init=({_NUMBER}) overall=({_NUMBER})", line):
            extra["memory_delta_mb"] = {"init": float(match.group(1)), "overall": float(match.group(2))}
        elif match := re.search(rf"^Peak memory footprint \(MB\): init=({_NUMBER}) overall=({_NUMBER})", line):
            # Builds before the periodic monitor printed this delta under a "peak" name.
            extra["memory_delta_mb"] = {"init": float(match.group(1)), "overall": float(match.group(2))}
        elif match := re.search(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUMBER})", line):
            outcome.peak_memory_mb = float(match.group(1))
        elif match := re.search(r"Explicitly applied (.+?) delegate, and the model graph will be (completely|partially) executed by the delegate(?: w/ (\d+) delegate kernels)?", line):
            extra["delegates"].append({
                "delegate": match.group(1),
                "coverage": "complete" if match.group(2) == "completely" else "partial",
                "delegate_kernels": int(match.group(3)) if match.group(3) else None,
            })
        elif match := re.search(r"Though (.+?) delegate is explicitly applied, the model graph will not be executed", line):
            extra["delegates"].append({"delegate": match.group(1), "coverage": "none", "delegate_kernels": 0})
    phases = stats
    # The run stats are the last bare `count=` line printed before the end summary;
    # the op profiler's own "Timings (microseconds): count=..." lines do not start with count=.
    if not phases or phases[-1]["count"] == 0:
        tail = " | ".join(line for line in lines if line.strip())[-300:]
        raise RunnerError(f"benchmark_model printed no timed runs; its output ended with: {tail or '(nothing)'}")
    run = phases[-1]
    if len(phases) >= 2:
        extra["warmup_us"] = {k: v for k, v in phases[-2].items() if k != "all_same"}
        if phases[-2]["count"] == 0:
            outcome.first_inference_ms = None  # no warm-up: the tool prints 0 for a first run it never timed
    us = 1000.0
    outcome.summary_ms = {
        "count": run["count"],
        "mean": run["avg"] / us,
        "median": run["median"] / us if "median" in run else (run["avg"] / us if run["all_same"] else None),
        "p5": run["p5"] / us if "p5" in run else None,
        "p95": run["p95"] / us if "p95" in run else None,
        "p90": None,
        "p99": None,
        "std": run["std"] / us,
        "min": run["min"] / us,
        "max": run["max"] / us,
    }
    op_table = parse_node_type_table(_section(lines, "Operator-wise Profiling Info for Regular Benchmark Runs"))
    if op_table:
        extra["op_profile_by_type"] = op_table
    partial = [d for d in extra["delegates"] if d["coverage"] != "complete"]
    if partial:
        extra["delegate_warning"] = "; ".join(
            f"{d['delegate']} runs {'part' if d['coverage'] == 'partial' else 'none'} of the graph"
            + (f" ({d['delegate_kernels']} delegate kernels)" if d["delegate_kernels"] else "")
            for d in partial
        )
    if options is not None:
        elapsed_s = run["count"] * run["avg"] / 1e6
        if elapsed_s >= options.max_secs:
            outcome.stop_reason = "max_secs"
        elif options.runs is not None and run["count"] <= options.runs:
            outcome.stop_reason = "runs"
        else:
            outcome.stop_reason = "min_secs"
    return outcome


# ---------------------------------------------------------------- the runner
class BenchmarkModelRunner(Runner):
    """`benchmark_model` pushed into the device work folder and run through the device shell."""

    name = "benchmark_model"

    def __init__(
        self,
        options: TimingOptions,
        binary: Path | str | None = None,
        delegate: str | None = None,
        op_profiling: bool = False,
        peak_memory: bool = False,
        cpu_mask: str | None = None,
        cache: Path | None = None,
        base_url: str = RELEASE_BASE_URL,
        sha256: str | None = None,
        **_ignored: object,
    ) -> None:
        super().__init__(options)
        binary = binary or os.environ.get("MBDEPLOY_BENCHMARK_BINARY")
        self.binary = Path(binary) if binary else None
        if self.binary is not None and not self.binary.is_file():
            raise InvalidInput(f"--benchmark-binary {self.binary} is not a file (also read from MBDEPLOY_BENCHMARK_BINARY)")
        self.delegate = check_delegate(delegate, options.xnnpack)
        self.op_profiling = op_profiling
        self.peak_memory = peak_memory
        self.cpu_mask = check_cpu_mask(cpu_mask)
        self._cache, self._base_url, self._sha256 = cache, base_url, sha256
        self.binary_sha256: str | None = None
        self._remote: str | None = None

    def config_key(self) -> str:
        # The tool's sha256 is known only after prepare(); --resume compares keys taken before it.
        saved, self.binary_sha256 = self.binary_sha256, None
        try:
            return super().config_key()
        finally:
            self.binary_sha256 = saved

    def config(self) -> dict:
        return {
            **super().config(),
            "delegate": self.delegate,
            "op_profiling": self.op_profiling,
            "peak_memory": self.peak_memory,
            "cpu_mask": self.cpu_mask,
            "binary_sha256": self.binary_sha256,
        }

    def command(self, remote_binary: str, remote_model: str) -> list[str]:
        argv = [remote_binary, *tool_flags(self.options, remote_model, self.delegate, self.op_profiling, self.peak_memory)]
        return ["taskset", self.cpu_mask, *argv] if self.cpu_mask else argv

    def prepare(self, device: Device) -> None:
        binary = self.binary
        if binary is None:
            abi = device.properties().get("ro.product.cpu.abi", "")
            binary = fetch_release(abi, cache=self._cache, base_url=self._base_url, sha256=self._sha256)
        self.binary_sha256 = sha256_file(binary)
        self._remote = f"{device.workdir}/benchmark_model"
        device.push(binary, self._remote)
        device.shell(["chmod", "755", self._remote])

    def run(self, device: Device, remote_model: str) -> RunOutcome:
        if self._remote is None:
            self.prepare(device)
        timeout = self.options.max_secs * 2 + 120
        result = device.shell(self.command(self._remote, remote_model), timeout=timeout)
        text = result.stdout + "\n" + result.stderr
        if not result.ok:
            tail = " | ".join(line.strip() for line in text.splitlines() if line.strip())[-300:]
            raise RunnerError(f"benchmark_model exited with {result.exit_code}: {tail}")
        outcome = parse_output(text, self.options)
        outcome.extra["command"] = self.command(self._remote, remote_model)
        return outcome
