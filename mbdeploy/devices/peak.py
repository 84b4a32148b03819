"""Theoretical fp32 peak of an x86 CPU, from its vector width and clock.

A local device records this in its info; the report divides measured throughput (MACs per second) by it to show how
much of the machine a model uses. The peak is per core:

    MACs/cycle = FMA units x fp32 lanes per vector register
    (AVX-512 with FMA: 2 x 16 = 32; AVX2 with FMA: 2 x 8 = 16;
     AVX without FMA: one 8-lane multiply and one add per cycle = 8; SSE: 4)

times the clock. Two FMA units is what every AVX2 core since Haswell/Zen has;
some AVX-512 parts have only one, so their peak here is an upper bound. The
clock is the maximum frequency from sysfs when the kernel exposes it, else the
nominal clock in the model name, else the current `cpu MHz`. Anything else
(ARM, no flags, no clock) has no known peak: None, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

CPUINFO = "proc/cpuinfo"
MAX_FREQ = "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"

# (flags required, name, fp32 MACs per cycle per core), widest first.
_VECTOR_UNITS = (
    ({"avx512f"}, "avx512", 32),
    ({"avx2", "fma"}, "avx2+fma", 16),
    ({"avx"}, "avx", 8),
    ({"sse2"}, "sse2", 4),
)


@dataclass(frozen=True)
class CpuPeak:
    model: str
    vector: str
    macs_per_cycle: int
    clock_ghz: float
    clock_source: str
    cores: int

    def gmacs_per_s(self, threads: int | None = None) -> float:
        """Peak GMAC/s of `threads` cores (all cores when None)."""
        used = self.cores if threads is None else max(1, min(threads, self.cores))
        return self.macs_per_cycle * self.clock_ghz * used

    def to_dict(self) -> dict:
        return asdict(self)


def parse_cpuinfo(text: str, max_freq_khz: int | None = None) -> CpuPeak | None:
    """The peak described by a /proc/cpuinfo text; None when it is not x86 or has no clock."""
    flags: set[str] = set()
    model = ""
    mhz: float | None = None
    cores = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            cores += 1
        elif key == "flags" and not flags:
            flags = set(value.split())
        elif key == "model name" and not model:
            model = value
        elif key == "cpu MHz" and mhz is None:
            try:
                mhz = float(value)
            except ValueError:
                pass
    unit = next(((name, macs) for needed, name, macs in _VECTOR_UNITS if needed <= flags), None)
    if unit is None:
        return None
    nominal = re.search(r"@\s*([0-9.]+)\s*GHz", model)
    if max_freq_khz:
        clock, source = max_freq_khz / 1e6, "cpuinfo_max_freq"
    elif nominal:
        clock, source = float(nominal.group(1)), "model name"
    elif mhz:
        clock, source = mhz / 1e3, "cpu MHz"
    else:
        return None
    return CpuPeak(model or "unknown x86", unit[0], unit[1], clock, source, max(cores, 1))


def peak_under(root: Path | str = "/") -> CpuPeak | None:
    """The peak of the machine whose /proc and /sys are under `root`, or None where it cannot be known."""
    try:
        text = (Path(root) / CPUINFO).read_text()
    except OSError:
        return None
    try:
        max_freq = int((Path(root) / MAX_FREQ).read_text().strip())
    except (OSError, ValueError):
        max_freq = None
    return parse_cpuinfo(text, max_freq)
