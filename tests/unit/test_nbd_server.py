"""NbdServer's socket file: a live one is refused, a stale one replaced, only its own removed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from vmvault.dataplane.nbd_server import NbdServer
from vmvault.domain.errors import InvalidInput


class _Disk:
    size = 4096
    writable = False

    def pread(self, length: int, offset: int) -> bytes:
        return bytes(length)

    def pwrite(self, data: bytes, offset: int) -> None:
        raise AssertionError("read-only")


def test_a_live_socket_is_refused_a_stale_one_replaced(tmp_path: Path) -> None:
    path = tmp_path / "s"
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(path))
    live.listen()
    with pytest.raises(InvalidInput, match="listens"):
        NbdServer(path, {"vda": _Disk()}).start()
    assert path.is_socket()
    live.close()  # the file stays: stale now
    server = NbdServer(path, {"vda": _Disk()})
    server.start()
    try:
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(str(path))
        probe.close()
    finally:
        server.close()
    assert not path.exists()


def test_close_removes_only_the_socket_it_bound(tmp_path: Path) -> None:
    path = tmp_path / "s"
    server = NbdServer(path, {"vda": _Disk()})
    server.start()
    path.unlink()
    path.write_text("someone else's")
    server.close()
    assert path.read_text() == "someone else's"


def test_a_file_that_is_no_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_text("data")
    with pytest.raises(InvalidInput, match="no socket"):
        NbdServer(path, {"vda": _Disk()}).start()
    assert path.read_text() == "data"
