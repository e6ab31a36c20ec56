"""hypervisor/guest_tar.py: a tar a guest made never reaches a host file outside the tree."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

from vmvault.hypervisor.guest_tar import unpack


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    with tarfile.open(path, "w") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)


def _info(name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o644
    info.uid = info.gid = 4321
    info.mtime = 1_577_934_245
    for k, v in kw.items():
        setattr(info, k, v)
    return info


def test_a_hard_link_to_a_symlink_out_of_the_tree_touches_nothing_outside(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host secret")
    victim.chmod(0o600)
    before = victim.stat()
    tar = tmp_path / "g.tar"
    _tar(
        tar,
        [
            (_info("./s", tarfile.SYMTYPE, linkname=str(victim), mode=0o777), None),
            (_info("./h", tarfile.LNKTYPE, linkname="./s", mode=0o777), None),
        ],
    )
    target = tmp_path / "out"
    target.mkdir()
    with tarfile.open(tar) as tf:
        _, skipped = unpack(tf, target)
    after = victim.stat()
    assert (after.st_mode, after.st_uid, after.st_gid) == (
        before.st_mode,
        before.st_uid,
        before.st_gid,
    )
    assert victim.read_text() == "host secret"
    assert os.readlink(target / "s") == str(victim)  # the guest's symlink, as it was
    assert not (target / "h").exists() and any(s.startswith("./h") for s in skipped)


def test_names_out_of_the_tree_and_paths_through_links_are_skipped(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    tar = tmp_path / "g.tar"
    _tar(
        tar,
        [
            (_info("../escape", size=1), b"x"),
            (_info("/abs", size=1), b"x"),
            (_info("a/../../escape2", size=1), b"x"),
            (_info("d", tarfile.SYMTYPE, linkname=str(outside)), None),
            (_info("d/planted", size=1), b"x"),
            (_info("./..foo", size=2), b"ok"),
        ],
    )
    target = tmp_path / "out"
    target.mkdir()
    with tarfile.open(tar) as tf:
        _, skipped = unpack(tf, target)
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "escape").exists() and not (tmp_path / "escape2").exists()
    assert (target / "..foo").read_bytes() == b"ok"  # a plain name that starts with dots
    assert len(skipped) == 4, skipped


def test_a_later_member_never_writes_through_an_earlier_one(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host")
    tar = tmp_path / "g.tar"
    _tar(
        tar,
        [
            (_info("f", tarfile.SYMTYPE, linkname=str(victim)), None),
            (_info("f", size=5), b"guest"),
        ],
    )
    target = tmp_path / "out"
    target.mkdir()
    with tarfile.open(tar) as tf:
        _, skipped = unpack(tf, target)
    assert victim.read_text() == "host" and skipped == ["f (named twice)"]


def test_owners_modes_times_links_fifos_and_no_devices_nor_setid(tmp_path: Path) -> None:
    tar = tmp_path / "g.tar"
    _tar(
        tar,
        [
            (_info("./", tarfile.DIRTYPE, mode=0o755), None),
            (_info("./docs", tarfile.DIRTYPE, mode=0o750), None),
            (_info("./docs/a.txt", size=3, mode=0o4755), b"abc"),
            (_info("./docs/hard", tarfile.LNKTYPE, linkname="./docs/a.txt"), None),
            (_info("./docs/link", tarfile.SYMTYPE, linkname="a.txt"), None),
            (_info("./docs/pipe", tarfile.FIFOTYPE, mode=0o600), None),
            (_info("./docs/sda", tarfile.BLKTYPE, devmajor=8, devminor=0), None),
        ],
    )
    target = tmp_path / "out"
    target.mkdir()
    with tarfile.open(tar) as tf:
        devices, skipped = unpack(tf, target)
    assert devices == ["./docs/sda"] and skipped == []
    a = (target / "docs" / "a.txt").stat()
    assert (stat.S_IMODE(a.st_mode), a.st_uid, a.st_gid, a.st_mtime) == (
        0o755,
        4321,
        4321,
        1_577_934_245,
    )
    assert (target / "docs" / "hard").read_bytes() == b"abc"
    assert not (target / "docs" / "hard").is_symlink()
    assert os.readlink(target / "docs" / "link") == "a.txt"
    assert stat.S_ISFIFO((target / "docs" / "pipe").lstat().st_mode)
    d = (target / "docs").stat()
    assert (stat.S_IMODE(d.st_mode), d.st_mtime) == (0o750, 1_577_934_245)
    assert not (target / "docs" / "sda").exists()
