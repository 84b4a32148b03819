#!/bin/sh
# The Android emulator CI job (.github/workflows/android-emulator.yml).
# android-emulator-runner runs each `script` line in a shell of its own, so
# the whole job lives here and the workflow calls this file in one line.
#
# It checks that the pipeline works on an emulator: two small variants are
# converted, `mbdeploy devices` lists the emulator, `mbdeploy bench` times them
# with the official x86_64 benchmark_model, `mbdeploy report` renders, and
# every stored record is valid against the record schema with status ok.
# Emulator latencies are not phone latencies; no figure is judged here.
#
# Environment (all optional):
#   MBDEPLOY, PYTHON       the mbdeploy and python to use (default: on PATH)
#   OUT                    where models, device list and report go (default: ci-out)
#   RESULTS                where bench stores runs, read by report (default: results)
#   DEVICE                 the --device name (default: emulator, an alias of
#                          the one device adb sees, written to a config file)
#   RUNNER                 the bench runner (default: benchmark_model)
#   BENCHMARK_MODEL_URL    only when mbdeploy cannot fetch benchmark_model
#   BENCHMARK_MODEL_SHA256 itself: a pinned official binary and its sha256
set -eu

MBDEPLOY=${MBDEPLOY:-mbdeploy}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-ci-out}
RESULTS=${RESULTS:-results}
DEVICE=${DEVICE:-emulator}
RUNNER=${RUNNER:-benchmark_model}
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

# mbdeploy fetches the pinned official benchmark_model itself when its runner
# module has the download code; otherwise this job fetches it, refusing any
# file whose sha256 is not the pinned one.
set --
if [ "$RUNNER" = benchmark_model ] && ! "$PYTHON" -c "import mbdeploy.runners.benchmark_model" 2>/dev/null; then
    if [ -z "${BENCHMARK_MODEL_URL:-}" ] || [ -z "${BENCHMARK_MODEL_SHA256:-}" ]; then
        echo "error: mbdeploy has no benchmark_model download code; set BENCHMARK_MODEL_URL and BENCHMARK_MODEL_SHA256 to a pinned official x86_64 build" >&2
        exit 1
    fi
    binary="$OUT/benchmark_model_x86_64"
    curl --fail --location --silent --show-error --retry 3 --output "$binary" "$BENCHMARK_MODEL_URL"
    echo "$BENCHMARK_MODEL_SHA256  $binary" | sha256sum --check --strict
    chmod +x "$binary"
    set -- --benchmark-binary "$binary"
fi

echo "== bench"
"$MBDEPLOY" bench --device "$DEVICE" --models "$OUT/models" --runner "$RUNNER" --out "$RESULTS" "$@"

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
        if record["device"]["kind"] != "android" or record["runner"]["name"] != sys.argv[2]:
            sys.exit(f"{path}:{number}: expected an android {sys.argv[2]} record")
        records.append(record)
names = sorted({r["artifact"]["name"] for r in records})
if len(names) < 2:
    sys.exit(f"expected records for both variants, found {names}")
for r in records:
    print(f"ok  {r['artifact']['name']:<28} {r['artifact']['precision']:<6} median {r['latency_ms']['median']} ms")
PY
find "$OUT/report" -maxdepth 2 | head -n 20
echo "== emulator job passed"
