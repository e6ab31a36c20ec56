"""DebugfsFileSystems on small real ext4 images (mkfs.ext4 -d) and FileService's refusals."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vmvault.domain.errors import FileReadFailed, InvalidInput
from vmvault.domain.files import Volume
from vmvault.hypervisor.fsread import DebugfsFileSystems
from vmvault.services.files import FileService


def _image(tmp_path: Path, files: dict[str, bytes]) -> Path:
    src = tmp_path / "src"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    img = tmp_path / "img"
    subprocess.run(["mkfs.ext4", "-q", "-d", str(src), str(img), "4M"], check=True)
    return img


VOL = Volume("vda", None, 0, 4 << 20)


def test_a_short_read_fails_and_leaves_nothing(tmp_path: Path) -> None:
    img = _image(tmp_path, {"etc/big": os.urandom(300_000)})
    fs = DebugfsFileSystems(tmp_path / "work")
    big = fs.lookup(img, VOL, "/etc/big")
    assert big is not None and big.size == 300_000
    os.truncate(img, 1400 * 1024)  # the file's last blocks are past the end now
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FileReadFailed, match="short read"):
        fs.extract(img, VOL, big, out)
    assert list(out.iterdir()) == []


def test_names_with_quotes_and_backslashes_are_read(tmp_path: Path) -> None:
    img = _image(tmp_path, {'d/a"b': b"quote", "d/c\\d": b"backslash"})
    fs = DebugfsFileSystems(tmp_path / "work")
    assert [e.name for e in fs.listdir(img, VOL, "/d")] == ['a"b', "c\\d"]
    out = tmp_path / "out"
    out.mkdir()
    for name, data in (('a"b', b"quote"), ("c\\d", b"backslash")):
        entry = fs.lookup(img, VOL, "/d/" + name)
        assert entry is not None
        assert fs.extract(img, VOL, entry, out).read_bytes() == data


def test_a_line_break_never_reaches_debugfs(tmp_path: Path) -> None:
    img = _image(tmp_path, {"f": b"x"})
    fs = DebugfsFileSystems(tmp_path / "work")
    with pytest.raises(FileReadFailed, match="line break"):
        fs.lookup(img, VOL, "/x\n!touch /tmp/pwned/y")


def test_get_refuses_two_paths_with_one_name(tmp_path: Path) -> None:
    service = FileService.__new__(FileService)  # refused before any export is served
    with pytest.raises(InvalidInput, match="same name hosts"):
        service.get("p1", ["/a/hosts", "/b/hosts"], str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_devices_are_not_made_and_setid_bits_are_cleared(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "src"
    (src / "t").mkdir(parents=True)
    os.mknod(src / "t" / "sda", 0o20666, os.makedev(8, 0))
    os.mkfifo(src / "t" / "ff")
    (src / "t" / "su").write_bytes(b"#!/bin/sh\n")
    os.chmod(src / "t" / "su", 0o6755)
    img = tmp_path / "img"
    subprocess.run(["mkfs.ext4", "-q", "-d", str(src), str(img), "4M"], check=True)
    fs = DebugfsFileSystems(tmp_path / "work")
    out = tmp_path / "out"
    out.mkdir()
    tree = fs.lookup(img, VOL, "/t")
    assert tree is not None
    fs.extract(img, VOL, tree, out)
    assert sorted(p.name for p in (out / "t").iterdir()) == ["ff", "su"]
    assert "device nodes not recreated: /t/sda" in caplog.text
    assert (out / "t" / "su").stat().st_mode & 0o7777 == 0o755
    sda = fs.lookup(img, VOL, "/t/sda")
    assert sda is not None
    with pytest.raises(InvalidInput, match="device nodes are not recreated"):
        fs.extract(img, VOL, sda, out)
    assert not (out / "sda").exists()


def test_a_directory_cycle_ends_the_walk(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    img = tmp_path / "img"
    subprocess.run(["mkfs.ext4", "-q", "-d", str(src), str(img), "4M"], check=True)
    subprocess.run(["debugfs", "-w", "-R", "link /a /a/b/loop", str(img)], check=True)
    fs = DebugfsFileSystems(tmp_path / "work")
    walked = []
    for e in fs.walk(img, VOL, "/a"):
        walked.append(e.path)
        assert len(walked) < 50, walked
    assert walked == ["/a/b", "/a/b/loop"]


def test_a_node_that_cannot_be_made_is_file_read_failed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "ff")
    img = tmp_path / "img"
    subprocess.run(["mkfs.ext4", "-q", "-d", str(src), str(img), "4M"], check=True)
    fs = DebugfsFileSystems(tmp_path / "work")
    fifo = fs.lookup(img, VOL, "/ff")
    assert fifo is not None and fifo.kind == "fifo"
    with pytest.raises(FileReadFailed, match="No such file"):
        fs.extract(img, VOL, fifo, tmp_path / "missing")


def test_an_export_that_never_answers_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import threading

    from vmvault.hypervisor import fsread

    monkeypatch.setattr(fsread, "ATTACH_TIMEOUT", 1.0)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s"))
    sock.listen()  # accepts, never speaks NBD
    failed: list[BaseException] = []

    def attach() -> None:
        try:
            with DebugfsFileSystems(tmp_path / "work").attach(tmp_path / "s", "vda"):
                pass
        except FileReadFailed as exc:
            failed.append(exc)

    t = threading.Thread(target=attach, daemon=True)
    t.start()
    t.join(30)
    sock.close()
    assert not t.is_alive(), "attach hung reading nbdfuse's stderr"
    assert failed and "nbdfuse" in str(failed[0])


def test_a_failed_read_of_the_export_is_file_read_failed() -> None:
    import contextlib
    from types import SimpleNamespace

    @contextlib.contextmanager
    def serving(point_id: str, disk: str | None, on_error: Any) -> Any:
        on_error("chunk 0 of vda: checksum mismatch")  # what NbdServer reports
        yield SimpleNamespace(point=SimpleNamespace(id=point_id), served={}, socket=None)

    service = FileService.__new__(FileService)
    service.exports = SimpleNamespace(serving=serving)  # type: ignore[assignment]
    with pytest.raises(FileReadFailed, match="checksum mismatch"):
        service.find("p1", "*.conf")


def test_volumes_name_type_uuid_label_and_read_gives_a_files_bytes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "fstab").write_bytes(b"LABEL=lbl / ext4 defaults 0 1\n")
    img = tmp_path / "img"
    uuid = "0b7e0d5c-1111-4222-8333-944455556666"
    subprocess.run(["mkfs.ext4", "-q", "-L", "lbl", "-U", uuid, "-d", str(src), str(img), "4M"],
                   check=True)  # fmt: skip
    fs = DebugfsFileSystems(tmp_path / "work")
    (v,) = fs.volumes(img, VOL)
    assert (v.fs, v.uuid, v.fs_label, v.mounted_on) == ("ext4", uuid, "lbl", None)
    assert fs.read(img, v, "/etc/fstab", 1 << 20) == b"LABEL=lbl / ext4 defaults 0 1\n"
    assert fs.read(img, v, "/etc/fstab", 5) == b"LABEL"
    assert fs.read(img, v, "/etc/none", 10) is None
    assert fs.read(img, v, "/etc", 10) is None
    os.truncate(img, 0)
    assert fs.volumes(img, VOL) == []
