"""The ``HostFiles`` contract (services/ports.py), run against both implementations: the
local file system (``LocalHostFiles``, in a tmp directory) and the in-memory one the service
tests use (``MemoryFiles``), so the fake cannot drift from the real thing."""

from __future__ import annotations

import errno
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vmvault.hypervisor.files import LocalHostFiles
from vmvault.hypervisor.memory.files import MemoryFiles
from vmvault.services.ports import HostFiles


@dataclass
class Host:
    files: HostFiles
    root: Path
    put: Callable[[Path, bytes], None]  # a file that exists before the test
    get: Callable[[Path], bytes]


@pytest.fixture(params=["local", "memory"])
def host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Host]:
    if request.param == "local":

        def put(path: Path, data: bytes) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

        yield Host(LocalHostFiles(), tmp_path, put, Path.read_bytes)
    else:
        mem = MemoryFiles()
        mem.add_dir(tmp_path)
        yield Host(mem, tmp_path, mem.write, mem.read)


def test_rename_replaces_the_target(host: Host) -> None:
    a, b = host.root / "a", host.root / "b"
    host.put(a, b"new")
    host.put(b, b"old")
    host.files.rename(a, b)
    assert host.get(b) == b"new" and not host.files.exists(a)
    with pytest.raises(FileNotFoundError):
        host.files.rename(a, b)


def test_make_dirs_returns_what_it_made_outermost_first(host: Host) -> None:
    deep = host.root / "x" / "y" / "z"
    assert host.files.make_dirs(deep) == [host.root / "x", host.root / "x" / "y", deep]
    assert host.files.make_dirs(deep) == []
    assert host.files.exists(deep)
    if isinstance(host.files, LocalHostFiles):
        assert stat.S_IMODE(deep.stat().st_mode) == 0o755
    host.put(deep / "f", b"")
    assert not host.files.remove_dir(deep)  # not empty: left alone
    assert host.files.remove(deep / "f")
    assert host.files.remove_dir(deep) and not host.files.exists(deep)
    assert not host.files.remove_dir(deep)  # missing


def test_symlinks_exist_even_dangling_and_are_never_overwritten(host: Host) -> None:
    link, target = host.root / "link", host.root / "target"
    host.files.symlink(link, target)
    assert host.files.exists(link)  # dangling: it still is in the way
    with pytest.raises(FileExistsError):
        host.files.symlink(link, host.root / "other")
    assert host.files.remove(link) and not host.files.exists(link)


def test_remove_says_whether_something_was_there(host: Host) -> None:
    f = host.root / "f"
    assert not host.files.remove(f)
    host.put(f, b"x")
    assert host.files.remove(f) and not host.files.exists(f)


def test_copy_of_an_unreadable_file_leaves_nothing(host: Host) -> None:
    src, dst = host.root / "src", host.root / "dst"
    with pytest.raises(OSError) as err:
        host.files.copy(src, dst)
    assert err.value.errno == errno.ENOENT and not host.files.exists(dst)
    host.put(src, b"vars")
    host.files.copy(src, dst)
    assert host.get(dst) == b"vars" and host.get(src) == b"vars"


def test_names_by_prefix_and_free_space_of_a_path_to_be_made(host: Host) -> None:
    for name in (".a.tmp.1.x", ".a.tmp.2.y", "b"):
        host.put(host.root / name, b"")
    assert host.files.names(host.root, ".a.tmp.1.") == [host.root / ".a.tmp.1.x"]
    assert host.files.names(host.root / "missing", "") == []
    space = host.files.free_space(host.root / "not" / "yet")
    assert space.at == host.root and space.free > 0
    assert space.fs == host.files.free_space(host.root).fs
