"""File-level restore through libguestfs on the real lab: xfs in a partition and ext4 in LVM
logical volumes, guest paths from the point's /etc/fstab.

A ``files`` guest (started here, removed at the end: the session's variants are unchanged)
has vdc = the lab's files disk, version ``a`` (hypervisor/lab/files_disk.py: every byte
known).  The busybox guest mounts neither xfs nor LVM, so the change between the two points
is a disk swap: back up, shut the guest off, put version ``b`` in vdc (a.txt rewritten,
gone.bin and gone-lv.txt deleted), boot, back up again.  Three of the four ``files`` calls
read xfs and so start a libguestfs appliance under TCG (80-100 s each on this loaded
machine; the LVM volumes are ext4 and go to debugfs); the module takes ~7.5 min.
"""

from __future__ import annotations

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
from tests.integration.test_restore import guest, run_cli
from vmvault.bootstrap import bootstrap
from vmvault.hypervisor.lab.disks import copy_disk, files_templates
from vmvault.hypervisor.lab.files_disk import OWNER, appliance_env, contents
from vmvault.hypervisor.lab.waiting import destroy_and_undefine, wait_for_agent

pytestmark = pytest.mark.lab

SLOW = 1800.0  # a CLI call launching an appliance under TCG on a loaded machine


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
    _, after = files_templates(cache)
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
        dom.destroy()
        vdc = next(p for p in map(Path, vm["disks"]) if p.name == "files.raw")  # type: ignore[call-overload]
        copy_disk(after, vdc)
        dom.create()
        wait_for_agent(dom, 300)
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
    assert _got(world, world.second, tmp_path) == _expected("b")


def test_a_file_deleted_after_the_first_point_is_file_not_found(
    world: World, tmp_path: Path
) -> None:
    r = world.cli("files", "get", world.second, "/srv/xfs/docs/gone.bin", "--to", str(tmp_path))
    assert r.code == 2 and "error FILE_NOT_FOUND" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []
