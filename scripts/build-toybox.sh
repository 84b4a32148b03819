#!/bin/sh
# Build toybox with Android's own applet list, for the adb test device's
# phone-like shell (mbdeploy/testing/phone_shell.py). Debian's toybox package
# leaves out applets Android ships (tr, for one), so this builds toybox from
# Debian's source package with toybox's `kconfig/android_miniconfig`, the
# configuration Android's external/toybox follows, minus the applets that
# need SELinux, libcrypto or zlib headers (chcon, getenforce, load_policy,
# restorecon, runcon, setenforce, -Z options; md5/sha via toybox's own code).
# Android-only applets (getprop, setprop, log, start, stop, sendevent...) do
# not build outside bionic; the test device has stand-ins for what we call.
#
#   sh scripts/build-toybox.sh [CACHE_DIR]
#
# Cached: CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/mbdeploy/toybox-android)
# gets bin/toybox and one link per applet in bin/; a second run with the
# binary present does nothing. The source is fetched with `apt-get source`
# through a private deb-src list, so the system's apt configuration is left
# alone and no root is needed. Needs: apt-get, dpkg-source (dpkg-dev), cc, make.
set -eu

CACHE=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/mbdeploy/toybox-android}
BIN=$CACHE/bin
if [ -x "$BIN/toybox" ] && [ -e "$BIN/tr" ]; then
    exit 0
fi
for tool in apt-get cc make; do
    command -v "$tool" >/dev/null 2>&1 || { echo "build-toybox: $tool is missing (apt-get install dpkg-dev build-essential)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/mbdeploy-toybox.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/parts"
# deb-src twins of the system's sources: one-line lists and deb822 .sources files.
cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | sed -n 's/^deb \(.*\)/deb-src \1/p' \
    > "$work/sources.list"
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && sed 's/^Types:.*/Types: deb-src/' "$f" > "$work/parts/${f##*/}"
done
apt_src() {
    apt-get -qq -o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts="$work/parts" \
        -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o Debug::NoLocking=1 "$@"
}
apt_src update
# Only the upstream tarball is needed (Debian's packaging patches do not touch the applets).
(cd "$work" && apt_src source --download-only toybox >/dev/null 2>&1) || true
tarball=$(find "$work" -maxdepth 1 -name "toybox_*.orig.tar.*" | head -n 1)
if [ -z "$tarball" ]; then
    echo "build-toybox: apt-get source toybox gave no toybox source tarball" >&2
    exit 1
fi
tar -xf "$tarball" -C "$work"
src=$(find "$work" -maxdepth 1 -type d -name "toybox-*" | head -n 1)
grep -v -e '^CONFIG_CHCON=' -e '^CONFIG_GETENFORCE=' -e '^CONFIG_LOAD_POLICY=' -e '^CONFIG_RESTORECON=' \
    -e '^CONFIG_RUNCON=' -e '^CONFIG_SETENFORCE=' -e '^CONFIG_TOYBOX_SELINUX=' -e '^CONFIG_TOYBOX_LIBCRYPTO=' \
    -e '^CONFIG_TOYBOX_LIBZ=' "$src/kconfig/android_miniconfig" > "$work/miniconfig"
(cd "$src" && make allnoconfig KCONFIG_ALLCONFIG="$work/miniconfig" >/dev/null && make toybox >/dev/null 2>&1) || {
    echo "build-toybox: building toybox from $tarball failed" >&2
    exit 1
}
mkdir -p "$BIN.new"
cp "$src/toybox" "$BIN.new/toybox"
for applet in $("$BIN.new/toybox"); do
    [ "$applet" = toybox ] || ln -sf toybox "$BIN.new/$applet"
done
rm -rf "$BIN"
mv "$BIN.new" "$BIN"
echo "build-toybox: $("$BIN/toybox" | wc -w) applets in $BIN" >&2
