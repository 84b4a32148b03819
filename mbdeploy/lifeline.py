"""Child processes that never outlive mbdeploy: their own process group, killed when we die.

Every program mbdeploy starts for device work (the local runner, the ssh
master and sessions) goes through `spawn`: the child gets its own process
group, so a Ctrl-C at the terminal reaches mbdeploy alone and mbdeploy
decides the order of the clean-up; and it gets SIGKILL from the kernel the
moment the thread that started it dies (Linux `PR_SET_PDEATHSIG`), so even a
`kill -9` of mbdeploy leaves nothing timing.

The death signal is set by a tiny launcher that then `exec`s the real
program, rather than in `preexec_fn` (not safe in a threaded process). The
launcher checks that its parent is still the one that started it after
setting the signal, closing the race where mbdeploy died in between. Where
prctl is unavailable (not Linux) the launcher just execs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

# argv: parent pid, program, args...  Kept free of imports beyond os/sys/ctypes for a fast start.
_LAUNCHER = (
    "import os,sys\n"
    "try:\n"
    " import ctypes\n"
    " ctypes.CDLL(None,use_errno=True).prctl(1,9,0,0,0)\n"  # PR_SET_PDEATHSIG, SIGKILL
    "except (OSError,AttributeError):\n"
    " pass\n"
    "if os.getppid()!=int(sys.argv[1]):\n"
    " os._exit(137)\n"  # our parent is already gone: run nothing
    "try:\n"
    " os.execvp(sys.argv[2],sys.argv[2:])\n"
    "except OSError as e:\n"
    " sys.stderr.write(f'{sys.argv[2]}: {e.strerror}\\n');os._exit(127)\n"
)


def launcher_argv(argv: list[str]) -> list[str]:
    """argv wrapped so the program dies with the calling thread."""
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()), *map(str, argv)]


def spawn(argv: list[str], **popen_kwargs) -> subprocess.Popen:  # noqa: ANN003 - passed to Popen as is
    """Popen in a new process group, SIGKILLed by the kernel when the calling thread exits."""
    return subprocess.Popen(launcher_argv(argv), process_group=0, **popen_kwargs)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group (the child and whatever it started), then reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.kill()
    except OSError:
        pass
    process.wait()


def run(argv: list[str], timeout: float | None = None, input_bytes: bytes | None = None,
        pass_fds: tuple[int, ...] = (), **popen_kwargs) -> tuple[int, bytes, bytes]:  # noqa: ANN003
    """Like subprocess.run with captured output, but through `spawn`; any exception kills the whole group.

    Raises subprocess.TimeoutExpired after killing the group when `timeout` passes.
    """
    process = spawn(argv, stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=pass_fds, **popen_kwargs)
    try:
        out, err = process.communicate(input_bytes, timeout=timeout)
    except BaseException:  # a timeout, Ctrl-C, SIGTERM: nothing we started keeps running
        kill_group(process)
        raise
    return process.returncode, out, err
