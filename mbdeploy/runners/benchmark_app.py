"""The official benchmark APK (package org.tensorflow.lite.benchmark).

The classic TFLite `benchmark_model`, built as an app: a foreground activity is
scheduled like a real app, which the tool's documentation recommends for
faithful numbers. It is started with `am start -S -W -n ... --es args "..."`
and prints its lines to logcat under the tag `tflite`; they are parsed by
the same parser as the binary's output. The op profile is written to a file
in the app's own folder and read with `run-as` (Android keeps only ~4 KB of
one logcat message, and upstream logs the whole summary as one).
"""

from __future__ import annotations

import time
from pathlib import Path

from mbdeploy.atomic import sha256_file
from mbdeploy.devices.base import Device
from mbdeploy.errors import InvalidInput, RunnerError
from mbdeploy.runners.base import Probes, RunOutcome, Runner, TimingOptions
from mbdeploy.runners.benchmark_model import (PROBE_INPUT_NAME, add_op_profile, check_delegate, check_probe_run,
                                              check_release, probe_flags, push_bytes, read_device_file,
                                              read_op_profile, tool_flags)
from mbdeploy.runners.tensor_files import through_files
from mbdeploy.runners.benchmark_output import logcat_messages, parse_output
from mbdeploy.runners.benchmark_release import NIGHTLY_FILES, fetch, release_for

PACKAGE = "org.tensorflow.lite.benchmark"
ACTIVITY = f"{PACKAGE}/.BenchmarkModelActivity"
LOG_TAG = "tflite"
# The app cannot write the shell's /data/local/tmp; it writes its op profile into its own data folder,
# which the shell reads with `run-as` (the APK is debuggable).
APP_PROFILE = f"/data/data/{PACKAGE}/mbdeploy_op_profile.pb"
APP_OUTPUT = f"/data/data/{PACKAGE}/mbdeploy_probe_output.bin"  # --output_filepath of a probe run (its own folder)
_DONE = ("Inference timings in us:", "Average inference timings in us:")
_FAILED = ("Benchmarking failed", "Failed to", "Unconsumed cmdline flags")


def app_abi(props: dict[str, str]) -> str:
    """The ABI to install an app for: the first of the phone's app ABIs that Google publishes the APK for.

    x86_64 emulator images of API 30+ list arm64-v8a among their ABIs: they translate ARM code in apps
    (not in shell executables), so the published arm64 APK runs there.
    """
    abis = [abi.strip() for abi in props.get("ro.product.cpu.abilist", "").split(",") if abi.strip()]
    primary = props.get("ro.product.cpu.abi", "")
    return next((abi for abi in [primary, *abis] if abi in NIGHTLY_FILES), primary)


class BenchmarkAppRunner(Runner):
    name = "benchmark_app"

    def __init__(
        self,
        options: TimingOptions,
        apk: Path | str | None = None,
        delegate: str | None = None,
        op_profiling: bool = False,
        peak_memory: bool = False,
        release: str | None = None,
        cache: Path | None = None,
        base_urls: dict | None = None,
        sha256: str | None = None,
        poll_s: float = 0.5,
        **_ignored: object,
    ) -> None:
        super().__init__(options)
        self.apk = Path(apk) if apk else None
        if self.apk is not None and not self.apk.is_file():
            raise InvalidInput(f"--benchmark-apk {self.apk} is not a file")
        self.delegate = check_delegate(delegate, options.xnnpack)
        if self.delegate == "npu":
            raise InvalidInput("the benchmark APK is the classic TFLite tool: it has no NPU path; use --runner benchmark_model")
        self.release = check_release(release)
        self.op_profiling = op_profiling
        self.peak_memory = peak_memory
        self.poll_s = poll_s
        self._cache, self._base_urls, self._sha256 = cache, dict(base_urls or {}), sha256
        self.apk_sha256: str | None = None
        self.apk_source: dict | None = None

    def config_key(self) -> str:
        # The tool's sha256 is known only after prepare(); --resume compares keys taken before it.
        saved = self.apk_sha256, self.apk_source
        self.apk_sha256, self.apk_source = None, None
        try:
            return super().config_key()
        finally:
            self.apk_sha256, self.apk_source = saved

    def config(self) -> dict:
        source = self.apk_source or {}
        return {**super().config(), "delegate": self.delegate, "op_profiling": self.op_profiling,
                "peak_memory": self.peak_memory, "flavour": "tflite", "apk_url": source.get("url"),
                "apk_version": source.get("version") or ("user-supplied" if self.apk else None),
                "apk_sha256": self.apk_sha256}

    def start_command(self, remote_model: str) -> list[str]:
        """`am start` argv; the whole tool command line is ONE word for --es args (quoted by the device shell)."""
        flags = tool_flags(self.options, remote_model, self.delegate, self.op_profiling, self.peak_memory, "tflite",
                           APP_PROFILE if self.op_profiling else None)
        return ["am", "start", "-S", "-W", "-n", ACTIVITY, "--es", "args", " ".join(flags)]

    def prepare(self, device: Device) -> None:
        installed = device.shell(["pm", "path", PACKAGE])
        if installed.ok and "package:" in installed.stdout and self.apk is None and self.release is None:
            return
        apk = self.apk
        if apk is None:
            if self.release != "nightly":
                raise InvalidInput("the benchmark APK is published only in the unpinned nightly folder: pass "
                                   "--benchmark-apk PATH, or opt in with --benchmark-release nightly")
            urls = {"nightly_base": self._base_urls["nightly"]} if "nightly" in self._base_urls else {}
            release = release_for("tflite", app_abi(device.properties()), apk=True, **urls)
            apk = fetch(release, cache=self._cache, sha256=self._sha256)
            self.apk_source = {"url": release.url, "version": release.version}
        self.apk_sha256 = sha256_file(apk)
        remote = f"{device.workdir}/benchmark_model.apk"
        device.push(apk, remote)
        result = device.shell(["pm", "install", "-r", "-t", "-g", remote], timeout=180)
        if not result.ok or "Success" not in result.stdout:
            raise RunnerError(f"installing the benchmark APK failed: {(result.stdout + result.stderr).strip()[-300:]}")

    @staticmethod
    def _finished(messages: str) -> bool:
        # The op profile goes to a file (logcat keeps only ~4 KB of one message), so the timings line ends the run.
        lines = [line.split(": ", 1)[-1] if line.startswith(("INFO: ", "ERROR: ", "WARN")) else line
                 for line in messages.splitlines()]
        return any(line.startswith(_DONE + _FAILED) for line in lines)

    def _stage(self, device: Device, remote_model: str) -> str:
        # The activity splits its args on spaces, so it gets a copy of the model under a plain name.
        plain = f"{device.workdir}/benchmark_app_model.tflite"
        copied = device.shell(["cp", remote_model, plain])
        if not copied.ok:
            raise RunnerError(f"could not stage {remote_model} for the benchmark app: {copied.stderr.strip()}")
        return plain

    def _start_and_wait(self, device: Device, command: list[str]) -> tuple[str, float]:
        """Start the activity and wait for its result lines in logcat: (the messages, the deadline)."""
        device.shell(["logcat", "-c"])
        started = device.shell(command, timeout=60)
        if not started.ok or "Error" in started.stdout:
            raise RunnerError(f"`am start` of {ACTIVITY} failed: {(started.stdout + started.stderr).strip()[-300:]}")
        wait_s = self.time_limit_s()
        deadline = time.monotonic() + wait_s
        while True:
            log = device.shell(["logcat", "-d", "-v", "threadtime", "-s", f"{LOG_TAG}:*", "litert:*"], timeout=60).stdout
            messages = logcat_messages(log)
            if self._finished(messages):
                return messages, deadline
            if time.monotonic() > deadline:
                raise RunnerError(f"the benchmark app printed no result within {wait_s:.0f} s (logcat tag {LOG_TAG})")
            time.sleep(self.poll_s)

    def run(self, device: Device, remote_model: str) -> RunOutcome:
        plain = self._stage(device, remote_model)
        if self.op_profiling:
            device.shell(["run-as", PACKAGE, "rm", "-f", APP_PROFILE])
        messages, deadline = self._start_and_wait(device, self.start_command(plain))
        outcome = parse_output(messages, self.options)
        outcome.extra["command"] = self.start_command(plain)
        if self.op_profiling:
            add_op_profile(outcome, self._read_profile(device, deadline))
        return outcome

    def cannot_run_inputs(self) -> str | None:
        return None

    def probe_outputs(self, device: Device, remote_model: str, probes: Probes) -> list[list[float]]:
        """Each probe as an input file the app reads; its outputs written into the app's own folder, read with run-as."""
        plain = self._stage(device, remote_model)

        def run_tool(remote_input: str, shape: tuple[int, ...], size: int) -> bytes:
            device.shell(["run-as", PACKAGE, "rm", "-f", APP_OUTPUT])
            flags = probe_flags(self.options, plain, self.delegate, "tflite", remote_input, shape, APP_OUTPUT)
            messages, deadline = self._start_and_wait(
                device, ["am", "start", "-S", "-W", "-n", ACTIVITY, "--es", "args", " ".join(flags)])
            failed = [line for line in messages.splitlines() if any(word in line for word in _FAILED)]
            check_probe_run(messages)
            if failed:
                raise RunnerError(f"the benchmark app failed on a probe input: {failed[-1].strip()[-300:]}")
            # The app writes the file after its timings line: read it once it is whole.
            while True:
                try:
                    data = read_device_file(device, APP_OUTPUT, "output file (--output_filepath)",
                                            reader=["run-as", PACKAGE, "cat", APP_OUTPUT])
                except RunnerError:
                    data = b""
                if len(data) >= size or time.monotonic() > deadline:
                    return data
                time.sleep(self.poll_s)

        return through_files(probes, lambda data: push_bytes(device, data, f"{device.workdir}/{PROBE_INPUT_NAME}"),
                             run_tool)

    def _read_profile(self, device: Device, deadline: float) -> list[dict]:
        """The app writes its profile after the timings line: read it once it parses whole."""
        while True:
            try:
                return read_op_profile(device, APP_PROFILE, reader=["run-as", PACKAGE, "cat", APP_PROFILE])
            except RunnerError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(self.poll_s)
