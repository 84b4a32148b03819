"""The official benchmark APK (package org.tensorflow.lite.benchmark).

The same tool as `benchmark_model`, built as an app: a foreground activity is
scheduled like a real app, which the tool's documentation recommends for
faithful numbers. It is started with `am start -S -W -n ... --es args "..."`
and prints its lines to logcat under the tag `tflite`; they are parsed by
the same parser as the binary's output.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from mbdeploy.atomic import sha256_file
from mbdeploy.devices.base import Device
from mbdeploy.errors import InvalidInput, RunnerError
from mbdeploy.runners.base import RunOutcome, Runner, TimingOptions
from mbdeploy.runners.benchmark_model import (
    RELEASE_BASE_URL,
    check_delegate,
    fetch_release,
    parse_output,
    tool_flags,
)

PACKAGE = "org.tensorflow.lite.benchmark"
ACTIVITY = f"{PACKAGE}/.BenchmarkModelActivity"
LOG_TAG = "tflite"

# `adb logcat -v threadtime` ("MM-DD HH:MM:SS.mmm  PID  TID L TAG: msg") and `-v brief` ("L/TAG(PID): msg").
_THREADTIME = re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+ [VDIWEF] (\S+)\s*: ?(.*)$")
_BRIEF = re.compile(r"^[VDIWEF]/(\S+?)\s*\(\s*\d+\): ?(.*)$")
_DONE = ("Inference timings in us:", "Average inference timings in us:")


def logcat_messages(text: str, tag: str = LOG_TAG) -> str:
    """The messages of one tag from logcat output, one per line, prefixes removed."""
    out = []
    for line in text.splitlines():
        match = _THREADTIME.match(line) or _BRIEF.match(line)
        if match and match.group(1) == tag:
            out.append(match.group(2))
    return "\n".join(out)


class BenchmarkAppRunner(Runner):
    name = "benchmark_app"

    def __init__(
        self,
        options: TimingOptions,
        apk: Path | str | None = None,
        delegate: str | None = None,
        op_profiling: bool = False,
        peak_memory: bool = False,
        cache: Path | None = None,
        base_url: str = RELEASE_BASE_URL,
        sha256: str | None = None,
        poll_s: float = 0.5,
        **_ignored: object,
    ) -> None:
        super().__init__(options)
        self.apk = Path(apk) if apk else None
        if self.apk is not None and not self.apk.is_file():
            raise InvalidInput(f"--benchmark-apk {self.apk} is not a file")
        self.delegate = check_delegate(delegate, options.xnnpack)
        self.op_profiling = op_profiling
        self.peak_memory = peak_memory
        self.poll_s = poll_s
        self._cache, self._base_url, self._sha256 = cache, base_url, sha256
        self.apk_sha256: str | None = None

    def config_key(self) -> str:
        # The tool's sha256 is known only after prepare(); --resume compares keys taken before it.
        saved, self.apk_sha256 = self.apk_sha256, None
        try:
            return super().config_key()
        finally:
            self.apk_sha256 = saved

    def config(self) -> dict:
        return {**super().config(), "delegate": self.delegate, "op_profiling": self.op_profiling,
                "peak_memory": self.peak_memory, "apk_sha256": self.apk_sha256}

    def start_command(self, remote_model: str) -> list[str]:
        """`am start` argv; the whole tool command line is ONE word for --es args (quoted by the device shell)."""
        flags = tool_flags(self.options, remote_model, self.delegate, self.op_profiling, self.peak_memory)
        return ["am", "start", "-S", "-W", "-n", ACTIVITY, "--es", "args", " ".join(flags)]

    def prepare(self, device: Device) -> None:
        installed = device.shell(["pm", "path", PACKAGE])
        if installed.ok and "package:" in installed.stdout and self.apk is None:
            return
        apk = self.apk
        if apk is None:
            abi = device.properties().get("ro.product.cpu.abi", "")
            apk = fetch_release(abi, apk=True, cache=self._cache, base_url=self._base_url, sha256=self._sha256)
        self.apk_sha256 = sha256_file(apk)
        remote = f"{device.workdir}/benchmark_model.apk"
        device.push(apk, remote)
        result = device.shell(["pm", "install", "-r", "-t", "-g", remote], timeout=180)
        if not result.ok or "Success" not in result.stdout:
            raise RunnerError(f"installing the benchmark APK failed: {(result.stdout + result.stderr).strip()[-300:]}")

    def _finished(self, messages: str) -> bool:
        lines = messages.splitlines()
        if any(line.startswith(("Benchmarking failed", "Failed to")) for line in lines):
            return True
        if not any(line.startswith(_DONE[:2]) for line in lines):
            return False
        # With op profiling the tables follow the timings line; wait for the run tables' last line.
        if self.op_profiling:
            after = messages.split("Operator-wise Profiling Info for Regular Benchmark Runs", 1)
            return len(after) == 2 and "nodes observed" in after[1]
        return True

    def run(self, device: Device, remote_model: str) -> RunOutcome:
        # The activity splits its args on spaces, so it gets a copy of the model under a plain name.
        plain = f"{device.workdir}/benchmark_app_model.tflite"
        copied = device.shell(["cp", remote_model, plain])
        if not copied.ok:
            raise RunnerError(f"could not stage {remote_model} for the benchmark app: {copied.stderr.strip()}")
        device.shell(["logcat", "-c"])
        started = device.shell(self.start_command(plain), timeout=60)
        if not started.ok or "Error" in started.stdout:
            raise RunnerError(f"`am start` of {ACTIVITY} failed: {(started.stdout + started.stderr).strip()[-300:]}")
        wait_s = self.options.max_secs * 2 + 120
        deadline = time.monotonic() + wait_s
        while True:
            log = device.shell(["logcat", "-d", "-v", "threadtime", "-s", f"{LOG_TAG}:*"], timeout=60).stdout
            messages = logcat_messages(log)
            if self._finished(messages):
                break
            if time.monotonic() > deadline:
                raise RunnerError(f"the benchmark app printed no result within {wait_s:.0f} s (logcat tag {LOG_TAG})")
            time.sleep(self.poll_s)
        outcome = parse_output(messages, self.options)
        outcome.extra["command"] = self.start_command(plain)
        return outcome
