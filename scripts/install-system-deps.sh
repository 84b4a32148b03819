#!/usr/bin/env bash
# System programs the test suite drives for real: the adb server, an OpenSSH
# server (ssh device tests on loopback), headless Chromium (report test), and
# the adb test device's phone-like shell: mksh (Android's shell) with toybox
# built from source with Android's configuration (scripts/build-toybox.sh,
# cached under ~/.cache/mbdeploy/toybox-android).
# Installs only what is missing; needs root (or sudo) for apt-get.
set -euo pipefail

missing=()
command -v adb >/dev/null 2>&1 || missing+=(adb)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v mksh >/dev/null 2>&1 || missing+=(mksh)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || missing+=(make)
here=$(cd "$(dirname "$0")" && pwd)
# Chromium last and best-effort: some distributions ship it only as a snap;
# the browser test then skips and says why.
want_chromium=0
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || want_chromium=1

if [ ${#missing[@]} -eq 0 ] && [ "$want_chromium" -eq 0 ]; then
  exec sh "$here/build-toybox.sh"
fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
  else
    echo "install-system-deps: please install: ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
  fi
else
  SUDO=
fi
$SUDO apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-system-deps: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$want_chromium" -eq 1 ]; then
  echo "install-system-deps: installing chromium" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || echo "install-system-deps: chromium is not installable here; the browser test will skip" >&2
fi
sh "$here/build-toybox.sh"
