"""The log-log latency fit, the Pareto front and the x86 peak, on inputs with known answers."""

from __future__ import annotations

import math

import pytest

from mbdeploy.errors import ResultsError
from mbdeploy.devices.peak import parse_cpuinfo
from mbdeploy.records.fit import fit_groups, fit_power_law
from mbdeploy.report.pareto import pareto_front

MACS = [14e6, 21e6, 34e6, 41e6, 49e6, 77e6, 110e6, 150e6, 186e6, 291e6, 418e6, 569e6]


@pytest.mark.parametrize("scale, exponent", [(3e-6, 0.9), (1e-4, 0.7), (2e-9, 1.25)])
def test_exact_power_law_is_recovered(scale, exponent):
    latency = [scale * m ** exponent for m in MACS]
    fit = fit_power_law(MACS, latency)
    assert fit.slope == pytest.approx(exponent, rel=1e-9)
    assert math.exp(fit.intercept) == pytest.approx(scale, rel=1e-6)
    assert fit.r_squared == pytest.approx(1.0, abs=1e-12)
    assert fit.loo_median_abs_error == pytest.approx(0.0, abs=1e-9)
    assert fit.predict(250e6) == pytest.approx(scale * 250e6 ** exponent, rel=1e-9)


def test_r_squared_and_leave_one_out_on_a_perturbed_law():
    # Every other point 10% slow: the fit sits between the two lines and its
    # left-out predictions miss by about 5%; R^2 stays high but below 1.
    latency = [2e-6 * m * (1.10 if i % 2 else 1.0) for i, m in enumerate(MACS)]
    fit = fit_power_law(MACS, latency)
    assert 0.99 < fit.r_squared < 1.0
    assert 0.03 < fit.loo_median_abs_error < 0.08
    # Leave-one-out errors are those of a refit without the point, computed by hand for point 0.
    xs = [math.log(m) for m in MACS[1:]]
    ys = [math.log(t) for t in latency[1:]]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    predicted = math.exp(my - slope * mx + slope * math.log(MACS[0]))
    assert fit.loo_errors[0] == pytest.approx((predicted - latency[0]) / latency[0], rel=1e-9)


def test_two_points_fit_without_leave_one_out():
    fit = fit_power_law([1e6, 4e6], [1.0, 2.0])
    assert fit.slope == pytest.approx(0.5)
    assert fit.loo_median_abs_error is None


@pytest.mark.parametrize("macs, latency, message", [
    ([1e6], [1.0], "at least 2"),
    ([1e6, 1e6], [1.0, 2.0], "same MACs"),
    ([1e6, 2e6], [1.0, 0.0], "positive"),
])
def test_fit_refuses_what_cannot_be_fitted(macs, latency, message):
    with pytest.raises(ResultsError, match=message):
        fit_power_law(macs, latency)


def test_fit_groups_keeps_devices_and_precisions_apart():
    rows = []
    for device, precision, scale in (("a", "fp32", 1e-6), ("a", "int8", 4e-7), ("b", "fp32", 5e-6)):
        for m in MACS[:5]:
            rows.append({"device_id": device, "format": "tflite", "precision": precision, "config_key": "c",
                         "status": "ok", "macs_m": m / 1e6, "latency_ms_median": scale * m})
    rows.append({"device_id": "c", "format": "tflite", "precision": "fp32", "config_key": "c", "status": "ok",
                 "macs_m": 14.0, "latency_ms_median": 1.0})  # a single point: no fit
    fits = fit_groups(rows)
    assert set(fits) == {("a", "tflite", "fp32", "c"), ("a", "tflite", "int8", "c"), ("b", "tflite", "fp32", "c")}
    assert fits[("a", "tflite", "int8", "c")].predict(100e6) == pytest.approx(4e-7 * 100e6)


def test_pareto_front_membership():
    # (latency, top-1)
    points = [(1.0, 40.0), (2.0, 50.0), (2.5, 45.0), (3.0, 50.0), (4.0, 70.0), (5.0, 65.0), (0.5, 30.0), (4.0, 69.0)]
    assert pareto_front(points) == [6, 0, 1, 4]
    # ties: identical points are both on the front; a slower equal one is not
    assert pareto_front([(1.0, 50.0), (1.0, 50.0), (2.0, 50.0)]) == [0, 1]


AVX2_CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz
cpu MHz\t\t: 1200.000
flags\t\t: fpu sse sse2 avx fma avx2
processor\t: 1
model name\t: Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz
flags\t\t: fpu sse sse2 avx fma avx2
"""


def test_peak_from_vector_width_and_clock():
    peak = parse_cpuinfo(AVX2_CPUINFO)
    assert (peak.vector, peak.macs_per_cycle, peak.clock_ghz, peak.clock_source, peak.cores) == (
        "avx2+fma", 16, 2.5, "model name", 2)
    assert peak.gmacs_per_s(1) == pytest.approx(40.0)
    assert peak.gmacs_per_s() == pytest.approx(80.0)
    assert parse_cpuinfo(AVX2_CPUINFO, max_freq_khz=3_300_000).gmacs_per_s(1) == pytest.approx(16 * 3.3)
    avx512 = AVX2_CPUINFO.replace("avx2", "avx2 avx512f")
    assert parse_cpuinfo(avx512).macs_per_cycle == 32
    no_fma = AVX2_CPUINFO.replace(" fma avx2", "")
    assert parse_cpuinfo(no_fma).macs_per_cycle == 8


def test_peak_unknown_off_x86_or_without_clock():
    arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm\nCPU implementer\t: 0x41\n"
    assert parse_cpuinfo(arm) is None
    assert parse_cpuinfo("processor\t: 0\nmodel name\t: x\nflags\t\t: sse2 avx\n") is None
