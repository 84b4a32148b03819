"""Device-side processes that cannot outlive their run: a deadline, a recorded pid, ended at the next start.

A phone keeps running what a dead host started: when the host's stream goes
away, adbd sends SIGHUP to the one process it spawned and closes its pipes
(`shell_service.cpp`: "protocol FD died, sending SIGHUP"); a child in another
process group, or one that outlives that pid, never hears of it. So every
long device-side command is started through `bounded()`:

- it `exec`s into the command, so the command IS the pid adbd hangs up on
  (mksh execs a lone simple command, and so does the wrapper). An external
  `timeout` would not do: toybox's and coreutils' both move the command into
  a process group of their own and do not pass SIGHUP on, so a dead host
  would leave the command running with no deadline at all;
- a small guard beside it kills it at a deadline derived from the run's own
  limits, whatever the host does, and exits within a second once the
  command has ended;
- its pid goes into `<workdir>/pids/NAME.pid` first, so `end_leftovers()`,
  run when a bench first uses the device, kills whatever an earlier
  (crashed, killed, unplugged) bench left, checking first that the pid still
  runs something from the work folder (pids are reused).
"""

from __future__ import annotations

import math

from mbdeploy.devices.base import Device

# $0: the pid file, $1: seconds, then the command. `$$` stays the command's pid across exec; the guard
# (a subshell, where $$ is still that pid) polls it once a second and kills it at the deadline.
_GUARDED_EXEC = (
    'echo $$ > "$0" || exit 125; s=$1; shift; '
    '( while [ "$s" -gt 0 ] && kill -0 $$ 2>/dev/null; do sleep 1; s=$((s - 1)); done; '
    'kill -0 $$ 2>/dev/null && kill -9 $$ ) > /dev/null 2>&1 < /dev/null & '
    'exec "$@"'
)
# For each recorded pid still running a command from the work folder ($1): kill it; then forget the files.
_END = (
    'for f in "$1"/pids/*.pid; do [ -f "$f" ] || continue; read -r p < "$f"; '
    'case "$p" in ""|*[!0-9]*) ;; *) if [ -r "/proc/$p/cmdline" ] && grep -q -F -- "$1" "/proc/$p/cmdline"; then '
    'kill -9 "$p" 2>/dev/null && echo "$p"; fi ;; esac; rm -f "$f"; done; true'
)


def pid_file(workdir: str, name: str) -> str:
    return f"{workdir}/pids/{name}.pid"


def bounded(argv: list[str], seconds: float, pid_path: str) -> list[str]:
    """`argv` killed after `seconds` by the device itself, its pid written to `pid_path` first."""
    return ["sh", "-c", _GUARDED_EXEC, pid_path, str(max(1, math.ceil(seconds))), *argv]


def end_leftovers(device: Device, workdir: str) -> list[int]:
    """Kill what an earlier bench left running from `workdir`; returns the pids it ended."""
    device.shell(["mkdir", "-p", f"{workdir}/pids"])
    result = device.shell(["sh", "-c", _END, "end-leftovers", workdir], timeout=60)
    return [int(p) for p in result.stdout.split() if p.isdigit()]
