"""How ``vmvault serve`` binds its local socket (jobs/local_socket.py; docs/server.md, "The
local socket"): owned through a lock for the server's life, mode 0600, listening only once
served, removed when its server ends if it is still its own, and none where it cannot be."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from vmvault.config import Settings
from vmvault.jobs import local_socket


def _settings(home: Path, **env: str) -> Settings:
    return Settings.from_env({"VMVAULT_HOME": str(home), **env})


def test_the_socket_is_owned_by_one_server_and_removed_by_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    bound = local_socket.bind(settings)
    assert bound is not None and bound.path == tmp_path / "api.sock"
    mode = bound.path.lstat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    # bound but not listening yet (recovery runs first): a client is refused at once
    with socket.socket(socket.AF_UNIX) as client, pytest.raises(ConnectionRefusedError):
        client.connect(str(bound.path))
    # a second server of the same home gets none, and leaves the file alone
    assert local_socket.bind(settings) is None
    assert bound.path.lstat().st_ino == bound.identity[1]
    bound.close()
    assert not bound.path.exists()
    # a dead server's socket (its lock released) is removed and bound anew
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(tmp_path / "api.sock"))
    dead.close()
    again = local_socket.bind(settings)
    assert again is not None and stat.S_IMODE(again.path.lstat().st_mode) == 0o600
    again.close()
    assert not again.path.exists()


def test_another_file_at_the_path_is_left_alone_and_a_later_servers_socket_too(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    (tmp_path / "api.sock").write_text("not a socket")
    assert local_socket.bind(settings) is None
    assert (tmp_path / "api.sock").read_text() == "not a socket"
    (tmp_path / "api.sock").unlink()
    first = local_socket.bind(settings)
    assert first is not None
    first.path.unlink()  # removed by hand while it ran; another socket made there since
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(first.path))
    first.close()
    assert stat.S_ISSOCK(first.path.lstat().st_mode)  # not the one it bound: left
    other.close()


def test_none_when_off_or_when_the_path_is_too_long(tmp_path: Path) -> None:
    assert local_socket.bind(_settings(tmp_path, VMVAULT_LOCAL_SOCKET="0")) is None
    deep = tmp_path / ("d" * 100)
    assert local_socket.bind(_settings(deep)) is None
    assert not deep.exists()
