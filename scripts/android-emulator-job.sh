#!/bin/sh
# The Android emulator CI job (.github/workflows/android-emulator.yml).
# android-emulator-runner runs each `script` line in a shell of its own, so
# the whole job lives here and the workflow calls this file in one line.
#
# It checks that the pipeline works on an emulator, with published tools
# only: two small variants are converted, `mbdeploy devices` lists the
# emulator, `mbdeploy bench --check-outputs` runs convert's probe inputs
# through the tool (input files in, output file pulled) and times them,
# `mbdeploy report` renders, and every record of this job is valid against
# the record schema with status ok and its outputs checked and right.
# Emulator latencies are not phone latencies; no figure is judged here.
#
# Google publishes benchmark_model for arm64 (and 32-bit arm) only. On the
# x86_64 emulator the job runs the published arm64 benchmark APK
# (--runner benchmark_app): API 30+ x86_64 system images translate ARM code
# in apps (Android Developers Blog, "Run ARM apps on the Android Emulator",
# 2020), and the image lists arm64-v8a among its ABIs. The APK is published
# only in the nightly folder, so the job opts in with --benchmark-release
# nightly and the records carry its URL and sha256.
#
# Environment (all optional):
#   MBDEPLOY, PYTHON       the mbdeploy and python to use (default: on PATH)
#   OUT                    where models, device list, results and report go (default: ci-out)
#   RESULTS                where bench stores this job's runs (default: $OUT/results; only
#                          these are reported and checked, never an earlier `make demo`'s)
#   DEVICE                 the --device name (default: emulator, an alias of
#                          the one device adb sees, written to a config file)
#   RUNNER                 the bench runner (default: benchmark_app; litert for the
#                          adb test device, which runs the host's Python)
set -eu

MBDEPLOY=${MBDEPLOY:-mbdeploy}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-ci-out}
RESULTS=${RESULTS:-$OUT/results}
DEVICE=${DEVICE:-emulator}
RUNNER=${RUNNER:-benchmark_app}
VARIANTS="0.25_128 0.5_128"

mkdir -p "$OUT"
echo "== adb sees"
adb devices -l

# Name the emulator: `--device emulator` is an alias of its serial.
if [ -z "${MBDEPLOY_CONFIG:-}" ]; then
    serial=$(adb get-serialno)
    printf '[aliases]\nemulator = "%s"\n' "$serial" > "$OUT/mbdeploy.toml"
    MBDEPLOY_CONFIG="$OUT/mbdeploy.toml"
    export MBDEPLOY_CONFIG
fi

echo "== convert"
for variant in $VARIANTS; do
    alpha=${variant%_*}
    res=${variant#*_}
    "$MBDEPLOY" convert --alpha "$alpha" --res "$res" --precisions fp32 --formats tflite --out "$OUT/models"
done

echo "== devices"
"$MBDEPLOY" devices
"$MBDEPLOY" devices --json > "$OUT/devices.json"

set --
if [ "$RUNNER" = benchmark_app ]; then
    set -- --benchmark-release nightly
fi

echo "== bench"
"$MBDEPLOY" bench --device "$DEVICE" --models "$OUT/models" --runner "$RUNNER" --out "$RESULTS" --check-outputs "$@"

echo "== report"
"$MBDEPLOY" report "$RESULTS" --models "$OUT/models" --out "$OUT/report"

echo "== check records"
"$PYTHON" - "$RESULTS" "$RUNNER" <<'PY'
"""Every stored record validates against the schema and says status ok."""
import json
import sys
from importlib import resources
from pathlib import Path

import jsonschema

schema = json.loads(resources.files("mbdeploy").joinpath("schemas/record.schema.json").read_text())
validator = jsonschema.Draft202012Validator(schema)
files = sorted(Path(sys.argv[1]).rglob("results.jsonl"))
if not files:
    sys.exit(f"no results.jsonl under {sys.argv[1]}")
records = []
for path in files:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        record = json.loads(line)
        errors = sorted(validator.iter_errors(record), key=str)
        if errors:
            sys.exit(f"{path}:{number}: invalid record: {errors[0].message}")
        if record["status"] != "ok":
            sys.exit(f"{path}:{number}: status {record['status']}: {record.get('error')}")
        if (record.get("numerics") or {}).get("passed") is not True:
            sys.exit(f"{path}:{number}: outputs on the device not checked or wrong: {record.get('numerics')}")
        if record["device"]["kind"] != "android" or record["runner"]["name"] != sys.argv[2]:
            sys.exit(f"{path}:{number}: expected an android {sys.argv[2]} record")
        if sys.argv[2] in ("benchmark_model", "benchmark_app"):
            tool = "apk" if sys.argv[2] == "benchmark_app" else "binary"
            missing = [k for k in ("flavour", f"{tool}_url", f"{tool}_version", f"{tool}_sha256") if not record["runner"].get(k)]
            if missing:
                sys.exit(f"{path}:{number}: the record does not say which tool ran (no {', '.join(missing)})")
        records.append(record)
names = sorted({r["artifact"]["name"] for r in records})
if len(names) < 2:
    sys.exit(f"expected records for both variants, found {names}")
for r in records:
    print(f"ok  {r['artifact']['name']:<28} {r['artifact']['precision']:<6} median {r['latency_ms']['median']} ms")
PY
find "$OUT/report" -maxdepth 2 | head -n 20
echo "== emulator job passed"
