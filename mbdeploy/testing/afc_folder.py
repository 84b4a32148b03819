"""An app container for pymobiledevice3's real AFC code: a folder answers the AFC requests.

`pymobiledevice3 apps push/pull/rm` go through `AfcService.push/pull/rm`,
which turn a file or folder copy into AFC operations (stat, make dir, open,
write, read, close, read dir, remove) sent one packet at a time through
`AfcService._send_and_wait`. `FolderAfc` keeps all of that code and answers
each operation below that one method, from a folder standing in for the
app's data container, the way the phone's afcd answers: status codes from
`AfcError`, stat as `st_ifmt`/`st_size`/... key-value lists, directory lists
with `.` and `..` first. So what lands where is what the real push does.

Needs pymobiledevice3 (the `ios` extra); imported only when used.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path


def folder_afc(root: Path):
    """An `AfcService` whose device is the folder `root` (the container: `Documents/` lives in it)."""
    from pymobiledevice3.services import afc

    class FolderAfc(afc.AfcService):
        def __init__(self) -> None:  # no lockdown: the "device" is a folder
            self.root = Path(root)
            self.packet_num = 0
            self._handles: dict[int, object] = {}

        async def connect(self) -> None:
            return None

        async def close(self) -> None:
            for handle in self._handles.values():
                handle.close()
            self._handles.clear()

        def _path(self, name: str) -> Path:
            # Paths are from the container's root; nothing may climb out of it.
            parts = [part for part in name.split("/") if part not in ("", ".")]
            if ".." in parts:
                raise PermissionError(name)
            return self.root.joinpath(*parts)

        async def _send_and_wait(self, operation, data: bytes, this_length: int = 0):
            self.packet_num += 1
            try:
                return afc.AfcError.SUCCESS, self._answer(afc.AfcOpcode(operation), bytes(data))
            except FileNotFoundError:
                return afc.AfcError.OBJECT_NOT_FOUND, b""
            except (IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError, OSError):
                return afc.AfcError.PERM_DENIED, b""

        def _answer(self, op, data: bytes) -> bytes:
            codes = afc.AfcOpcode
            if op == codes.GET_FILE_INFO:
                path = self._path(_cstring(data))
                info = path.lstat()
                kind = "S_IFDIR" if path.is_dir() else "S_IFREG"
                return _kv({"st_size": info.st_size, "st_blocks": (info.st_size + 511) // 512,
                            "st_nlink": info.st_nlink, "st_ifmt": kind,
                            "st_mtime": int(info.st_mtime * 1e9), "st_birthtime": int(info.st_mtime * 1e9)})
            if op == codes.MAKE_DIR:
                self._path(_cstring(data)).mkdir(parents=True, exist_ok=True)
                return b""
            if op == codes.READ_DIR:
                names = [".", ".."] + sorted(os.listdir(self._path(_cstring(data))))
                return b"".join(name.encode() + b"\0" for name in names)
            if op == codes.REMOVE_PATH:
                path = self._path(_cstring(data))
                if path.is_dir():
                    path.rmdir()  # afcd removes only an empty folder; AfcService.rm recurses itself
                else:
                    path.unlink()
                return b""
            if op == codes.FILE_OPEN:
                request = afc.AfcFopenRequest.parse(data)
                path = self._path(request.filename)
                writing = request.mode in (afc.AfcFopenMode.WRONLY, afc.AfcFopenMode.WR, afc.AfcFopenMode.RW,
                                           afc.AfcFopenMode.APPEND, afc.AfcFopenMode.RDAPPEND)
                if writing and not path.parent.is_dir():
                    raise FileNotFoundError(path.parent)
                handle = len(self._handles) + 1
                self._handles[handle] = open(path, _MODES.get(request.mode.name, "rb"))  # noqa: SIM115
                return afc.AfcFopenResponse(handle=handle).build()
            if op == codes.WRITE:
                (handle,) = struct.unpack_from("<Q", data)
                self._handles[handle].write(data[8:])
                return b""
            if op == codes.READ:
                request = afc.AfcFreadRequest.parse(data)
                return self._handles[request.handle].read(request.size)
            if op == codes.FILE_CLOSE:
                self._handles.pop(afc.AfcFcloseRequest.parse(data).handle).close()
                return b""
            raise PermissionError(f"{op.name} is not served by this stand-in")

    return FolderAfc()


_MODES = {"RDONLY": "rb", "RW": "r+b", "WRONLY": "wb", "WR": "w+b", "APPEND": "ab", "RDAPPEND": "a+b"}


def _cstring(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode()


def _kv(values: dict) -> bytes:
    return b"".join(f"{key}\0{value}\0".encode() for key, value in values.items())

