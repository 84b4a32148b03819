"""A usbmuxd socket with stand-in phones behind it, for pymobiledevice3's own usbmux client.

Linux reaches iPhones through usbmuxd's UNIX socket (pymobiledevice3 honours
`USBMUXD_SOCKET_ADDRESS`). This answers as usbmuxd's plist protocol does
(libimobiledevice's usbmuxd; pymobiledevice3/usbmux.py is the client):
packets of a little-endian header (length, version 1, message 8 = plist,
tag) and an XML plist, for `ReadBUID`, `ListDevices` (one `Attached` entry
per connection: a phone on USB and Wi-Fi is two entries under one serial),
`ReadPairRecord` (none: the host has not paired) and `Connect`. After a
`Connect` the socket is the phone's lockdownd (big-endian length-prefixed
plists): `QueryType` and an unpaired `GetValue` with the values a phone
gives before pairing. Nothing else a phone does is played.

    with FakeUsbmuxd(tmp / "usbmuxd.sock", [Phone(udid=..., version="17.5.1")]) as usbmuxd:
        ...  # USBMUXD_SOCKET_ADDRESS=usbmuxd.path pymobiledevice3 usbmux list
"""

from __future__ import annotations

import plistlib
import socket
import struct
import threading
from dataclasses import dataclass, replace
from pathlib import Path

PLIST_VERSION, PLIST_MESSAGE = 1, 8


@dataclass(frozen=True)
class Phone:
    udid: str
    product_type: str = "iPhone15,2"
    version: str = "17.5.1"
    build: str = "21F90"
    name: str = "iPhone"
    device_class: str = "iPhone"
    connection: str = "USB"  # or "Network"

    def over_wifi(self) -> "Phone":
        return replace(self, connection="Network")

    def lockdown_values(self) -> dict:
        return {"DeviceClass": self.device_class, "DeviceName": self.name, "BuildVersion": self.build,
                "ProductVersion": self.version, "ProductType": self.product_type, "UniqueDeviceID": self.udid}


class FakeUsbmuxd:
    def __init__(self, path: Path, phones: list[Phone]) -> None:
        self.path = Path(path)
        self.phones = list(phones)
        self.requests: list[str] = []  # every usbmuxd MessageType and lockdownd Request seen
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def __enter__(self) -> "FakeUsbmuxd":
        self._server.bind(str(self.path))
        self._server.listen(8)
        self._server.settimeout(0.2)
        thread = threading.Thread(target=self._accept, name="fake-usbmuxd", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._server.close()
        self.path.unlink(missing_ok=True)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn:
            try:
                while not self._stopping.is_set():
                    header = _recv(conn, 16)
                    if header is None:
                        return
                    length, _version, _message, tag = struct.unpack("<IIII", header)
                    request = plistlib.loads(_recv(conn, length - 16) or b"")
                    kind = request.get("MessageType")
                    self.requests.append(kind)
                    if kind == "Connect":
                        phone = self.phones[request["DeviceID"] - 1]
                        _send_mux(conn, tag, {"MessageType": "Result", "Number": 0})
                        self._lockdownd(conn, phone)
                        return
                    _send_mux(conn, tag, self._answer(kind))
            except (OSError, TimeoutError):
                return

    def _answer(self, kind: str) -> dict:
        if kind == "ReadBUID":
            return {"BUID": "00000000-0000-4000-8000-000000000000"}
        if kind == "ListDevices":
            return {"DeviceList": [
                {"MessageType": "Attached", "DeviceID": number,
                 "Properties": {"ConnectionType": phone.connection, "DeviceID": number, "SerialNumber": phone.udid}}
                for number, phone in enumerate(self.phones, start=1)]}
        if kind == "ReadPairRecord":
            return {"MessageType": "Result", "Number": 2}  # no record: this host has not paired
        return {"MessageType": "Result", "Number": 1}  # BADCOMMAND

    def _lockdownd(self, conn: socket.socket, phone: Phone) -> None:
        while True:
            size = _recv(conn, 4)
            if size is None:
                return
            request = plistlib.loads(_recv(conn, struct.unpack(">I", size)[0]) or b"")
            name = request.get("Request")
            self.requests.append(name)
            if name == "QueryType":
                answer = {"Request": name, "Type": "com.apple.mobile.lockdown"}
            elif name == "GetValue" and "Key" not in request:
                answer = {"Request": name, "Value": phone.lockdown_values()}
            elif name == "GetValue":
                answer = {"Request": name, "Key": request["Key"], "Value": phone.lockdown_values().get(request["Key"])}
            else:
                answer = {"Request": name, "Error": "InvalidService"}
            payload = plistlib.dumps(answer)
            conn.sendall(struct.pack(">I", len(payload)) + payload)


def _recv(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _send_mux(conn: socket.socket, tag: int, answer: dict) -> None:
    payload = plistlib.dumps(answer)
    conn.sendall(struct.pack("<IIII", 16 + len(payload), PLIST_VERSION, PLIST_MESSAGE, tag) + payload)
