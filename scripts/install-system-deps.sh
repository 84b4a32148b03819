#!/usr/bin/env bash
# System programs the test suite drives for real: the adb server, an OpenSSH
# server (ssh device tests on loopback) and headless Chromium (report test).
# Installs only what is missing; needs root (or sudo) for apt-get.
set -euo pipefail

missing=()
command -v adb >/dev/null 2>&1 || missing+=(adb)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
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
echo "install-system-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
