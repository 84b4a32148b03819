"""Measuring one artifact on one device: always a record (ok or failed), never an exception for the model.

The ok record and the setup-failed record grow from one skeleton, so both
carry the same fields.
"""

from __future__ import annotations

import posixpath
import time

from mbdeploy.bench.artifacts import Artifact
from mbdeploy.bench.numerics import check_outputs, not_checked
from mbdeploy.bench.options import BenchOptions
from mbdeploy.bench.thermal import throttle_reasons
from mbdeploy.devices.base import Device
from mbdeploy.devices.power import PowerMeter, PowerResult
from mbdeploy.devices.sensors import loop_power
from mbdeploy.errors import MbdeployError, ResultsError
from mbdeploy.records import stats
from mbdeploy.records.schema import RECORD_SCHEMA, validate_record
from mbdeploy.records.store import utc_now
from mbdeploy.runners.base import RunOutcome, Runner


def latency_block(outcome: RunOutcome) -> dict | None:
    if outcome.samples_ms:
        return stats.summarize(outcome.samples_ms)
    if outcome.summary_ms:
        return {key: outcome.summary_ms.get(key) for key in stats.LATENCY_KEYS}
    return None


def device_block(device: Device, info: dict | None) -> dict:
    info = dict(info or {"kind": device.kind, "id": device.id})
    info["kind"], info["id"] = device.kind, device.id
    return info


def record_skeleton(device: Device, info: dict, runner: Runner, artifact: Artifact, run_id: str,
                    error: str | None, power_reason: str, thermal: dict) -> dict:
    """A failed record with every field; a measurement that succeeds fills it in."""
    now = utc_now()
    return {
        "schema": RECORD_SCHEMA, "run_id": run_id, "status": "failed", "error": error,
        "device": device_block(device, info), "artifact": artifact.record_fields(),
        "runner": runner.config(), "config_key": runner.config_key(),
        "latency_ms": None, "stop_reason": None, "init_ms": None, "first_inference_ms": None,
        "peak_memory_mb": None, "power": PowerResult.unavailable(power_reason).to_dict(),
        "thermal": thermal, "throttled": False, "started_at": now, "finished_at": now,
    }


def measure_one_failed(device: Device, info: dict, runner: Runner, artifact: Artifact, run_id: str,
                       error: str) -> dict:
    """The record of a model that never ran because the runner could not be set up on the device."""
    return record_skeleton(device, info, runner, artifact, run_id, f"runner setup failed: {error}",
                           "the run did not start", {})


def measure_one(device: Device, device_info: dict, runner: Runner, artifact: Artifact, run_id: str,
                options: BenchOptions, cooldown: dict | None, meter: PowerMeter | None = None) -> dict:
    """Time one artifact on one device; always returns a record (ok or failed), never raises for the model.

    The pushed model stays in the device's work folder until the device's
    sweep ends (`clean_device`): one shell round trip less per model.
    """
    phases: dict[str, float] = {}
    clock = time.perf_counter
    begin = clock()
    record = record_skeleton(device, device_info, runner, artifact, run_id, None, "the run did not finish",
                             {"cooldown": cooldown})
    metering = False
    try:
        remote = posixpath.join(device.workdir, "models", artifact.sha256[:16], artifact.path.name)
        before = device.sensors()
        if meter is not None and meter.source is not None and options.idle_power_s > 0:
            t = clock()
            meter.measure_idle(options.idle_power_s)
            phases["idle_power"] = (clock() - t) * 1e3
        t = clock()
        device.push(artifact.path, remote)
        phases["push"] = (clock() - t) * 1e3
        if options.check_outputs:
            # Before timing, with the same runner settings: does the device compute what convert verified?
            t = clock()
            try:
                record["numerics"] = check_outputs(device, runner, artifact, remote)
            except MbdeployError as exc:
                record["numerics"] = not_checked(exc.message)
            phases["check_outputs"] = (clock() - t) * 1e3
        t = clock()
        if meter is not None:
            meter.start(runner.time_limit_s())
            metering = True
        try:
            outcome = runner.run(device, remote)
        finally:
            phases["run"] = (clock() - t) * 1e3
        latency = latency_block(outcome)
        median = (latency or {}).get("median")
        count = (latency or {}).get("count") or 0
        metering = False
        power = meter.stop(count, median) if meter is not None else PowerResult.unavailable(device.no_power_reason)
        # Energy the device itself read around its timed loop beats the host's wider window.
        loop_energy = (outcome.extra or {}).get("loop_energy")
        if isinstance(loop_energy, dict):
            power = loop_power(loop_energy, meter.idle_power_mw if meter else None, median) or power
        after = device.sensors()
        # What the sensors show, plus what the runner itself saw (e.g. the iOS app's thermal state).
        reasons = throttle_reasons(before, after, options.throttle_freq_drop, options.throttle_temp_rise_c)
        reasons += outcome.throttle_reasons
        extra = dict(outcome.extra)
        if device.settings_applied:
            extra["device_settings"] = list(device.settings_applied)
        record.update({
            "status": "ok", "latency_ms": latency, "stop_reason": outcome.stop_reason,
            "samples_ms": outcome.samples_ms or [], "init_ms": outcome.init_ms,
            "first_inference_ms": outcome.first_inference_ms, "peak_memory_mb": outcome.peak_memory_mb,
            "power": power.to_dict(), "throttled": bool(reasons), "runner_extra": extra,
            "thermal": {"cooldown": cooldown, "before": before.to_dict(), "after": after.to_dict(),
                        "throttle_reasons": reasons},
        })
        # What the phone's own sampler saw inside the timed loop (Android: thermal status, hottest zone).
        during = meter.thermal() if meter is not None else {}
        if during:
            record["thermal"]["during_run"] = during
    except Exception as exc:  # noqa: BLE001 - one failing model must not stop the sweep
        message = exc.message if isinstance(exc, MbdeployError) else f"{type(exc).__name__}: {exc}"
        record.update({"status": "failed", "error": message})
        if metering and meter is not None:
            try:
                meter.stop(0, None)  # end the sampling window; a failed run has no energy figure
            except Exception:  # noqa: BLE001
                pass
    phases["total"] = (clock() - begin) * 1e3
    record["phases_ms"] = phases
    record["finished_at"] = utc_now()
    try:
        validate_record(record)
    except ResultsError as exc:
        # What the device sent does not fit the contract: keep the failure, drop the untrusted figures.
        record.update({"status": "failed", "error": f"invalid runner output: {exc.message}", "latency_ms": None,
                       "samples_ms": [], "init_ms": None, "first_inference_ms": None, "peak_memory_mb": None,
                       "runner_extra": {}, "power": PowerResult.unavailable("the run's output was invalid").to_dict()})
    return record
