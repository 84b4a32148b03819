"""The official LiteRT/TFLite `benchmark_model` binary, run over adb.

Three parts: building its command line from TimingOptions for the flavour
the request needs (the pinned LiteRT 2.x tool, or the classic TFLite tool for
op profiling, NNAPI and runs without XNNPACK: benchmark_release.py), getting
the binary (`--benchmark-binary PATH`, or one download into ~/.cache/mbdeploy
whose URL, version, flavour and sha256 go into every record), and parsing
what it prints (benchmark_output.py) and the op profile it writes to a file
(op_profile.py). The benchmark APK runs the same classic tool (benchmark_app.py).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from pathlib import Path

from mbdeploy.atomic import sha256_file
from mbdeploy.devices.base import Device
from mbdeploy.devices.leftovers import bounded, pid_file
from mbdeploy.errors import DeviceError, InvalidInput, RunnerError
from mbdeploy.runners.base import Probes, RunOutcome, Runner, TimingOptions
from mbdeploy.runners.benchmark_output import parse_output
from mbdeploy.runners.benchmark_release import FLAVOURS, Release, fetch, release_for
from mbdeploy.runners.op_profile import by_node_type, parse_op_profile
from mbdeploy.runners.tensor_files import through_files

DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi", "npu")
# What only one flavour can do (each flag checked against that tool's source; see benchmark_release.py).
CLASSIC_ONLY = {"cpu": "running without XNNPACK", "nnapi": "the NNAPI delegate"}
LITERT_ONLY = {"npu": "the NPU (vendor dispatch libraries)"}
OP_PROFILE_NAME = "op_profile.pb"
PROBE_INPUT = "input"  # the name given in --input_layer; upstream matches inputs by position, not by this name
PROBE_INPUT_NAME, PROBE_OUTPUT_NAME = "probe_input.bin", "probe_output.bin"
# Checked in google-ai-edge/LiteRT at f674577 (2026-08-21): litert/tools/benchmark_litert_model.h declares no
# input-file or output-file flag (only --input_layer_value_range), so its outputs on chosen inputs cannot be read.
LITERT_HAS_NO_TENSOR_FILES = (
    "the LiteRT 2.x benchmark_model (flavour litert, the pinned download) has no --input_layer_value_files or "
    "--output_filepath; to check outputs use the classic tool (--benchmark-flavour tflite with "
    "--benchmark-release nightly or --benchmark-binary PATH) or --runner litert")
OUTPUT_FLAG_SINCE = ("--input_layer_value_files/--output_filepath; use a classic TFLite benchmark_model that has "
                     "both (the nightly build does: --benchmark-release nightly)")


def choose_flavour(delegate: str, op_profiling: bool, flavour: str | None = None) -> str:
    """The tool flavour a request needs: the pinned LiteRT 2.x tool unless only the classic one can do it."""
    needs_classic = CLASSIC_ONLY.get(delegate) or ("op profiling to a file" if op_profiling else None)
    needs_litert = LITERT_ONLY.get(delegate)
    if needs_classic and needs_litert:
        raise InvalidInput(f"{needs_classic} and {needs_litert} need different benchmark_model flavours")
    if flavour is not None:
        if flavour not in FLAVOURS:
            raise InvalidInput(f"benchmark_model flavour {flavour!r} is not one of: {', '.join(FLAVOURS)}")
        if flavour == "litert" and needs_classic:
            raise InvalidInput(f"{needs_classic} needs the classic TFLite benchmark_model (flavour tflite), not litert")
        if flavour == "tflite" and needs_litert:
            raise InvalidInput(f"{needs_litert} needs the LiteRT 2.x benchmark_model (flavour litert), not tflite")
        return flavour
    return "tflite" if needs_classic else "litert"


# ---------------------------------------------------------------- the command line
def tool_flags(
    options: TimingOptions,
    remote_model: str,
    delegate: str = "xnnpack",
    op_profiling: bool = False,
    peak_memory: bool = False,
    flavour: str = "tflite",
    op_profile_file: str | None = None,
    dispatch_path: str | None = None,
    plugin_path: str | None = None,
) -> list[str]:
    """benchmark_model's flags for one model (shared by the binary and the APK), per flavour."""
    # The tool runs while either count or time is short of its minimum, so a fixed --runs needs
    # min_secs 0, and --warmup N needs warmup_min_secs 0 (upstream also warms up for 0.5 s by default).
    min_secs = 0 if options.runs is not None else options.min_secs
    flags = [
        f"--graph={remote_model}",
        f"--num_threads={options.threads}",
        f"--warmup_runs={options.warmup_runs}",
        "--warmup_min_secs=0",
        f"--min_secs={min_secs:g}",
        f"--max_secs={options.max_secs:g}",
    ]
    if flavour == "tflite":
        flags.append(f"--use_xnnpack={'true' if delegate == 'xnnpack' else 'false'}")
    if options.runs is not None:
        flags.append(f"--num_runs={options.runs}")
    if delegate == "gpu":
        flags.append("--use_gpu=true")
    if delegate == "nnapi":
        flags.append("--use_nnapi=true")
    if delegate == "npu":
        flags.append("--use_npu=true")
        if dispatch_path:
            flags.append(f"--dispatch_library_path={dispatch_path}")
        if plugin_path:
            flags.append(f"--compiler_plugin_library_path={plugin_path}")
    if op_profiling:
        flags.append("--enable_op_profiling=true")
        if op_profile_file:
            flags += ["--op_profiling_output_mode=proto", f"--op_profiling_output_file={op_profile_file}"]
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


def check_release(release: str | None) -> str | None:
    if release not in (None, "nightly"):
        raise InvalidInput(f"--benchmark-release {release!r}: the only release to opt into is 'nightly'")
    return release


def read_device_file(device: Device, remote: str, what: str, reader: list[str] | None = None) -> bytes:
    """The bytes of a file the tool wrote on the device; RunnerError naming `what` if it is not there.

    `reader`: for a file only another user can read (the APK's own folder), a device command printing it,
    whose output is written to the work folder by the device shell and pulled from there.
    """
    source = remote
    if reader is not None:
        source = f"{device.workdir}/{Path(remote).name}"
        copied = device.shell(["sh", "-c", '"$@" > "$0"', source, *reader])
        if not copied.ok:
            raise RunnerError(f"could not read the {what} {remote}: {copied.stderr.strip() or copied.stdout.strip()}")
    with tempfile.TemporaryDirectory(prefix="mbdeploy-tool-file-") as tmp:
        local = Path(tmp) / Path(remote).name
        try:
            device.pull(source, local)
        except DeviceError as exc:
            raise RunnerError(f"benchmark_model wrote no {what} to {remote}: {exc.message}") from None
        return local.read_bytes()


def read_op_profile(device: Device, remote: str, reader: list[str] | None = None) -> list[dict]:
    """Pull the tool's op-profile file and parse it into per-node rows (runners/op_profile.py)."""
    return parse_op_profile(read_device_file(device, remote, "op profile", reader))


def push_bytes(device: Device, data: bytes, remote: str) -> str:
    with tempfile.TemporaryDirectory(prefix="mbdeploy-probe-") as tmp:
        local = Path(tmp) / Path(remote).name
        local.write_bytes(data)
        device.push(local, remote)
    return remote


def probe_flags(options: TimingOptions, remote_model: str, delegate: str, flavour: str, input_file: str,
                shape: tuple[int, ...], output_file: str, dispatch_path: str | None = None,
                plugin_path: str | None = None) -> list[str]:
    """One invoke on a chosen input, outputs to a file: the timed run's threads and delegate, no warm-up loop."""
    if flavour != "tflite":
        raise RunnerError(LITERT_HAS_NO_TENSOR_FILES)
    for path in (input_file, output_file):
        if any(c in path for c in ":, "):
            raise RunnerError(f"benchmark_model cannot name the file {path!r} in its flags (':', ',' and spaces "
                              "separate its items); choose a device work folder without them")
    single = dataclasses.replace(options, runs=1, warmup_runs=0, min_secs=0.0)
    flags = tool_flags(single, remote_model, delegate, False, False, flavour, None, dispatch_path, plugin_path)
    return flags + [f"--input_layer={PROBE_INPUT}", f"--input_layer_shape={','.join(str(d) for d in shape)}",
                    f"--input_layer_value_files={PROBE_INPUT}:{input_file}", f"--output_filepath={output_file}"]


def check_probe_run(text: str) -> None:
    """A tool that ignored the file flags (it predates them) wrote nothing: say which build is needed."""
    unconsumed = [line for line in text.splitlines() if "Unconsumed cmdline flags" in line]
    if any(flag in line for line in unconsumed for flag in ("--output_filepath", "--input_layer_value_files")):
        raise RunnerError(f"this benchmark_model predates {OUTPUT_FLAG_SINCE}: {unconsumed[-1].strip()}")


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
        flavour: str | None = None,
        release: str | None = None,
        dispatch_library: Path | str | None = None,
        compiler_plugin: Path | str | None = None,
        cache: Path | None = None,
        base_urls: dict | None = None,
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
        self.release = check_release(release)
        self.flavour = choose_flavour(self.delegate, op_profiling, flavour)
        if self.flavour == "tflite" and self.binary is None and self.release != "nightly":
            raise InvalidInput("this request needs the classic TFLite benchmark_model, which Google publishes only in "
                               "the unpinned nightly folder: pass --benchmark-binary PATH, or opt in with "
                               "--benchmark-release nightly")
        self.dispatch_library = _folder(dispatch_library, "--dispatch-library")
        self.compiler_plugin = _folder(compiler_plugin, "--compiler-plugin")
        if self.delegate == "npu" and self.dispatch_library is None:
            raise InvalidInput("--delegate npu needs the vendor's dispatch library folder: --dispatch-library DIR "
                               "(e.g. the Qualcomm or MediaTek libLiteRtDispatch_*.so)")
        self._cache, self._base_urls, self._sha256 = cache, dict(base_urls or {}), sha256
        self.binary_sha256: str | None = None
        self.binary_source: dict | None = None  # url, version, flavour of a downloaded binary
        self._remote: str | None = None
        self._remote_libs: dict[str, str] = {}

    def config_key(self) -> str:
        # The tool's sha256 is known only after prepare(); --resume compares keys taken before it.
        saved = self.binary_sha256, self.binary_source
        self.binary_sha256, self.binary_source = None, None
        try:
            return super().config_key()
        finally:
            self.binary_sha256, self.binary_source = saved

    def config(self) -> dict:
        source = self.binary_source or {}
        return {
            **super().config(),
            "delegate": self.delegate,
            "op_profiling": self.op_profiling,
            "peak_memory": self.peak_memory,
            "cpu_mask": self.cpu_mask,
            "flavour": self.flavour,
            "binary_url": source.get("url"),
            "binary_version": source.get("version") or ("user-supplied" if self.binary else None),
            "binary_sha256": self.binary_sha256,
        }

    def flags(self, remote_model: str, op_profile_file: str | None = None) -> list[str]:
        return tool_flags(self.options, remote_model, self.delegate, self.op_profiling, self.peak_memory,
                          self.flavour, op_profile_file, self._remote_libs.get("dispatch"),
                          self._remote_libs.get("plugin"))

    def command(self, remote_binary: str, remote_model: str, op_profile_file: str | None = None) -> list[str]:
        argv = [remote_binary, *self.flags(remote_model, op_profile_file)]
        return ["taskset", self.cpu_mask, *argv] if self.cpu_mask else argv

    def resolve_release(self, abi: str) -> Release:
        urls = {"litert_base": self._base_urls["litert"]} if "litert" in self._base_urls else {}
        if "nightly" in self._base_urls:
            urls["nightly_base"] = self._base_urls["nightly"]
        return release_for(self.flavour, abi, **urls)

    def prepare(self, device: Device) -> None:
        binary = self.binary
        if binary is None:
            release = self.resolve_release(device.properties().get("ro.product.cpu.abi", ""))
            binary = fetch(release, cache=self._cache, sha256=self._sha256)
            self.binary_source = {"url": release.url, "version": release.version, "flavour": release.flavour}
        self.binary_sha256 = sha256_file(binary)
        self._remote = f"{device.workdir}/benchmark_model"
        device.push(binary, self._remote)
        device.shell(["chmod", "755", self._remote])
        for key, folder in (("dispatch", self.dispatch_library), ("plugin", self.compiler_plugin)):
            if folder is not None:
                remote = f"{device.workdir}/{key}"
                for library in sorted(folder.glob("*.so")):
                    device.push(library, f"{remote}/{library.name}")
                self._remote_libs[key] = remote

    def run(self, device: Device, remote_model: str) -> RunOutcome:
        if self._remote is None:
            self.prepare(device)
        profile = f"{device.workdir}/{OP_PROFILE_NAME}" if self.op_profiling and self.flavour == "tflite" else None
        if profile:
            device.shell(["rm", "-f", profile])  # a previous model's profile must not pass for this one's
        timeout = self.time_limit_s()
        command = self.command(self._remote, remote_model, profile)
        # The device ends the tool itself at the deadline: a host that dies mid-run cannot leave it running.
        bounded_command = bounded(command, timeout, pid_file(device.workdir, "benchmark_model"))
        result = device.shell(bounded_command, timeout=timeout + 30)
        text = result.stdout + "\n" + result.stderr
        if result.exit_code == 137:  # SIGKILL: the device-side guard ended it at the deadline
            raise RunnerError(f"benchmark_model ran past its deadline of {timeout:.0f} s and was ended on the device")
        if not result.ok:
            raise RunnerError(f"benchmark_model exited with {result.exit_code}: {_tail(text)}")
        outcome = parse_output(text, self.options)
        outcome.extra["command"] = command
        if profile:
            add_op_profile(outcome, read_op_profile(device, profile))
        return outcome

    def cannot_run_inputs(self) -> str | None:
        return LITERT_HAS_NO_TENSOR_FILES if self.flavour != "tflite" else None

    def probe_outputs(self, device: Device, remote_model: str, probes: Probes) -> list[list[float]]:
        """Each probe as an input file (--input_layer_value_files), its outputs from --output_filepath."""
        if self.flavour != "tflite":
            raise RunnerError(LITERT_HAS_NO_TENSOR_FILES)
        if self._remote is None:
            self.prepare(device)
        output = f"{device.workdir}/{PROBE_OUTPUT_NAME}"
        timeout = self.time_limit_s()

        def run_tool(remote_input: str, shape: tuple[int, ...], _size: int) -> bytes:
            device.shell(["rm", "-f", output])  # the previous probe's outputs must not pass for this one's
            argv = [self._remote, *probe_flags(self.options, remote_model, self.delegate, self.flavour, remote_input,
                                                shape, output, self._remote_libs.get("dispatch"),
                                                self._remote_libs.get("plugin"))]
            argv = ["taskset", self.cpu_mask, *argv] if self.cpu_mask else argv
            result = device.shell(bounded(argv, timeout, pid_file(device.workdir, "benchmark_model")),
                                  timeout=timeout + 30)
            text = result.stdout + "\n" + result.stderr
            if not result.ok:
                raise RunnerError(f"benchmark_model on a probe input exited with {result.exit_code}: {_tail(text)}")
            check_probe_run(text)
            return read_device_file(device, output, "output file (--output_filepath)")

        return through_files(probes, lambda data: push_bytes(device, data, f"{device.workdir}/{PROBE_INPUT_NAME}"),
                             run_tool)


def _tail(text: str) -> str:
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())[-300:]


def add_op_profile(outcome: RunOutcome, rows: list[dict]) -> None:
    outcome.extra["op_profile"] = rows
    outcome.extra["op_profile_by_type"] = by_node_type(rows)


def _folder(path: Path | str | None, option: str) -> Path | None:
    if path is None:
        return None
    folder = Path(path)
    if not folder.is_dir() or not list(folder.glob("*.so")):
        raise InvalidInput(f"{option} {folder} must be a folder holding the vendor's .so libraries")
    return folder
