"""File-level restore through libguestfs on the real lab: xfs in a partition and ext4 in LVM
logical volumes, guest paths from the point's /etc/fstab.

A ``files`` guest (started here, removed at the end: the session's variants are unchanged)
has vdc = the lab's files disk, version ``a`` (hypervisor/lab/files_disk.py: every byte
known).  The busybox guest mounts neither xfs nor LVM, so the change between the two points
is written under it: back up, write the blocks where version ``b`` differs (a.txt
rewritten, gone.bin and gone-lv.txt deleted: 2.2 MB) onto /dev/vdc from inside the guest,
back up again (no reboot, and QEMU sees every write).  Two of the four ``files`` calls
read xfs and so start a libguestfs appliance under TCG (one per point: an appliance reads the
disk of one export; 35 s each on a quiet machine, 80-100 s loaded); the LVM volumes are ext4
and go to debugfs, and so does the FILE_NOT_FOUND check: the rule is the service's
(services/files.py), whichever reader answers that the path is missing.  The xfs file deleted
after the first point is checked absent from the second point's extracted xfs tree.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from tests.conftest import Result
from tests.integration.conftest import lab_settings
from tests.integration.guests import guest
from tests.integration.test_restore import run_cli
from vmvault.bootstrap import bootstrap
from vmvault.hypervisor.lab.disks import files_templates
from vmvault.hypervisor.lab.files_disk import OWNER, appliance_env, contents
from vmvault.hypervisor.lab.waiting import destroy_and_undefine
from vmvault.hypervisor.libvirt import agent

pytestmark = pytest.mark.lab

SLOW = 1800.0  # a CLI call launching an appliance under TCG on a loaded machine
BLOCK = 4096
PIECE = 128 << 10


@dataclass
class World:
    home: Path
    first: str  # vdc version a
    second: str  # vdc version b

    def cli(self, *args: str) -> Result:
        return run_cli(self.home, *args, timeout=SLOW)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # not the session's ``lab`` fixture: one guest of its own (the others are not needed)
    home = tmp_path_factory.mktemp("files-guestfs-home")
    services = bootstrap(lab_settings(home))
    services.lab.ensure_daemons()
    cache = services.settings.lab_cache
    saved = dict(os.environ)
    os.environ.update(appliance_env(cache))  # the CLI's appliance needs a kernel here
    before, after = files_templates(cache)
    (vm,) = services.lab.up(1, ["files"])
    name = str(vm["name"])
    conn = libvirt.open("qemu:///system")
    try:
        guest(name, "echo fr > /data/fr-mark && sync")  # ext4 records /data as mounted on
        assert run_cli(home, "vault", "create", "main", "--location", "local").code == 0
        assert run_cli(home, "discover").code in (0, 3)
        assert run_cli(home, "register", name).code in (0, 3)
        r = run_cli(home, "backup", name, "--json")
        assert r.code in (0, 3), r.stdout + r.stderr
        first = r.json()[0]["point"]["id"]
        dom = conn.lookupByName(name)
        for offset, data in _changes(before, after):  # vdc becomes version b, byte for byte
            _write_in_guest(dom, "/dev/vdc", offset, data)
        r = run_cli(home, "backup", name, "--json")
        assert r.code in (0, 3), r.stdout + r.stderr
        second = r.json()[0]["point"]["id"]
        yield World(home, first, second)
    finally:
        try:
            dom = conn.lookupByName(name)
            vm_dir = Path(services.settings.lab_dir) / "vms" / name
            destroy_and_undefine(dom)
            shutil.rmtree(vm_dir, ignore_errors=True)
        finally:
            conn.close()
            os.environ.clear()
            os.environ.update(saved)


def _changes(before: Path, after: Path) -> Iterator[tuple[int, bytes]]:
    """Where ``after`` differs from ``before`` (same size): runs of whole :data:`BLOCK` s,
    as (offset, bytes)."""
    run_at, run = 0, bytearray()
    with before.open("rb") as fa, after.open("rb") as fb:
        at = 0
        while chunk := fb.read(1 << 20):
            old = fa.read(len(chunk))
            for i in range(0, len(chunk), BLOCK) if chunk != old else ():
                block = chunk[i : i + BLOCK]
                if block == old[i : i + BLOCK]:
                    continue
                if run and run_at + len(run) != at + i:
                    yield run_at, bytes(run)
                    run = bytearray()
                if not run:
                    run_at = at + i
                run += block
            at += len(chunk)
    if run:
        yield run_at, bytes(run)


def _write_in_guest(dom: libvirt.virDomain, device: str, offset: int, data: bytes) -> None:
    """``data`` written at ``offset`` of the guest's ``device`` by the guest (gzipped over the
    agent: 2.2 MB of the files disk's changes are 120 kB)."""
    packed = gzip.compress(data, 6)
    assert len(packed) < PIECE, len(packed)  # one guest-exec's input
    script = f"set -o pipefail; gunzip -c | dd of={device} bs={BLOCK} seek={offset // BLOCK}"
    res = agent.exec_(dom, "/bin/sh", ["-c", f"{script} conv=notrunc && sync"], 120, packed)
    assert res.exitcode == 0, res.stderr


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _tree(top: Path, mount: str) -> dict[str, str]:
    """md5 of each regular file under ``top`` by guest path (``top`` holds ``mount``'s tree)."""
    return {
        mount + "/" + str(p.relative_to(top)): _md5(p.read_bytes())
        for p in top.rglob("*")
        if p.is_file() and not p.is_symlink() and stat.S_ISREG(p.lstat().st_mode)
    }


def _got(world: World, point: str, to: Path) -> dict[str, str]:
    """``files get`` of the xfs and the LVM trees of ``point`` into ``to``: md5 by path."""
    r = world.cli("files", "get", point, "/srv/xfs/docs", "/srv/lv", "--to", str(to))
    assert r.code == 0, r.stderr
    got = _tree(to / "docs", "/srv/xfs/docs") | _tree(to / "lv", "/srv/lv")
    return {k: v for k, v in got.items() if "lost+found" not in k}


def _expected(version: str) -> dict[str, str]:
    return {path: _md5(data) for path, data in contents(version).items()}


def test_volumes_are_found_and_mounted_where_the_points_fstab_says(world: World) -> None:
    r = world.cli("files", "ls", world.first, "--json")
    assert r.code == 0, r.stderr
    found = {v["volume"]: (v["fs"], v["mounted_on"]) for v in r.json()}
    assert found["vdc1"] == ("xfs", "/srv/xfs"), found  # LABEL=fxfs
    assert found["labvg/data"] == ("ext4", "/srv/lv"), found  # UUID=...
    assert found["labvg/root"] == ("ext4", "/"), found  # the root: /etc/fstab is on it
    assert found["vda"] == ("ext4", "/data"), found  # not in that fstab: "Last mounted on"


def test_xfs_and_lvm_files_extract_byte_exact_from_the_first_point(
    world: World, tmp_path: Path
) -> None:
    assert _got(world, world.first, tmp_path) == _expected("a")
    a = (tmp_path / "docs" / "a.txt").stat()
    assert (stat.S_IMODE(a.st_mode), a.st_uid, a.st_gid) == (0o640, *OWNER)
    assert time.gmtime(a.st_mtime)[:6] == (2020, 1, 2, 3, 4, 5)
    assert os.readlink(tmp_path / "docs" / "link") == "a.txt"
    assert stat.S_ISFIFO((tmp_path / "docs" / "pipe").lstat().st_mode)


def test_the_second_point_has_the_change_and_not_the_deleted_files(
    world: World, tmp_path: Path
) -> None:
    got = _got(world, world.second, tmp_path)
    assert got == _expected("b")
    assert "/srv/xfs/docs/gone.bin" not in got and "/srv/lv/gone-lv.txt" not in got


def test_a_file_deleted_after_the_first_point_is_file_not_found(
    world: World, tmp_path: Path
) -> None:
    # on the LVM volume (debugfs): no appliance to start; the xfs one is checked absent above
    r = world.cli("files", "get", world.second, "/srv/lv/gone-lv.txt", "--to", str(tmp_path))
    assert r.code == 2 and "error FILE_NOT_FOUND" in r.stderr, r.stderr
    assert "/srv/lv/gone-lv.txt" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []
