"""Writes that never leave a truncated file under its final name.

Everything is written under a temporary name in the same folder (so the
rename is atomic on one filesystem) and renamed into place only when whole.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mbdeploy.errors import OutputError


def cannot_write(final: Path, exc: OSError) -> OutputError:
    """A failed write as the one-line error a user can act on (a full disk, a read-only folder)."""
    return OutputError(f"cannot write {final}: {exc.strerror or exc}; nothing was left under that name",
                       path=str(final), errno=exc.errno)


@contextmanager
def temporary_path(final: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling of `final`; rename it over `final` on success.

    An OSError on the way (ENOSPC, EROFS, EACCES) becomes an OutputError naming
    `final`, after the temporary file is removed.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f"{suffix}.tmp", dir=final.parent)
        os.close(fd)
    except OSError as exc:
        raise cannot_write(final, exc) from None
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the user's usual mode
        yield tmp
        os.replace(tmp, final)
    except OSError as exc:
        raise cannot_write(final, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(final: Path, data: bytes) -> None:
    with temporary_path(final) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def write_text(final: Path, text: str) -> None:
    write_bytes(final, text.encode("utf-8"))


def write_json(final: Path, data: object) -> None:
    write_text(final, json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextmanager
def temporary_dir(final: Path) -> Iterator[Path]:
    """A folder built under a temporary name and renamed whole (an .mlpackage)."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    except OSError as exc:
        raise cannot_write(final, exc) from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as exc:
        raise cannot_write(final, exc) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_writable_folder(folder: Path, what: str = "output folder") -> None:
    """Create `folder` if needed and prove a file can be made in it, before any work starts."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} {folder} is a file; name a folder (it is created when missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what} {folder} is not writable: {exc.strerror or exc}") from None


def give_usual_mode(folder: Path) -> None:
    """A folder from mkdtemp (0700) gets the user's usual mode before it is renamed into place."""
    os.chmod(folder, 0o777 & ~_umask())


def _umask() -> int:
    """The process umask; read from /proc where possible, since setting it to read it races with threads."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def append_line(path: Path, line: str) -> None:
    """Append one whole line, then fsync; on any failure cut the file back to where it was.

    One `write` in append mode lands whole on a local filesystem, but a full
    disk makes it short: the rest is retried (which then fails with the reason),
    and on any failure the bytes that did land are cut off again, so the next append never fuses with half a record. The
    caller gets the OSError and must stop (nothing was stored).
    """
    if "\n" in line:
        raise ValueError("a record must be a single line")
    data = (line + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            done = 0
            while done < len(data):  # a short write is retried: the retry fails with the real reason (ENOSPC)
                written = os.write(fd, data[done:])
                if written == 0:
                    raise OSError(errno.EIO, f"write of {path} made no progress")
                done += written
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass  # the reader still drops a last line without its newline; --resume repairs the rest
            raise
    finally:
        os.close(fd)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_regular_file(path: Path) -> bytes | None:
    """The bytes of a regular file, or None if it is missing, unreadable, a link, a FIFO or a device.

    For files a program wrote earlier into a folder anyone could have changed since (a
    previous report): a FIFO would block the read for ever, a link would lead out of the folder.
    """
    import stat

    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            return None
        with os.fdopen(handle, "rb", closefd=False) as stream:
            return stream.read()
    except OSError:
        return None
    finally:
        os.close(handle)
