"""The ``files`` lab variant's vdc: file systems debugfs cannot read, made with libguestfs.

A GPT disk of :data:`SIZE`: partition 1 xfs (label ``fxfs``), partition 2 an LVM physical
volume of the volume group ``labvg`` with two ext4 logical volumes: ``root`` (a root file
system holding only ``/etc/fstab``, which mounts partition 1 at ``/srv/xfs`` by ``LABEL=``
and ``data`` at ``/srv/lv`` by ``UUID=``) and ``data``.  Two versions of the disk are made
in one appliance run, ``a`` (before) and ``b`` (after: a file rewritten, two deleted), from
:func:`contents`, so a test knows every byte.  The busybox guest mounts neither xfs nor LVM
(no modules, no lvm tools): the test backs the guest up with ``a``, swaps its vdc for ``b``
while it is shut off, boots it and backs it up again (vdc is raw, so both backups copy it
whole).

libguestfs needs a kernel for its appliance: a host without one in ``/boot`` (these
containers) uses the lab's Debian cloud kernel package, unpacked once under
``CACHE/appliance-kernel/`` (:func:`appliance_env`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmvault.domain.errors import LabFailed
from vmvault.hypervisor.lab.fsutil import locked, make_dirs, publish_dir

VERSION = "1"
SIZE = 640 << 20
XFS_MIB = 320  # mkfs.xfs refuses less than 300 MB
VG = "labvg"
MTIME = 1_577_934_245  # 2020-01-02 03:04:05 UTC
#: The owner of /srv/xfs/docs/a.txt (mode 0640).
OWNER = (1234, 567)


def _bytes(tag: str, size: int) -> bytes:
    """``size`` pseudo-random bytes named ``tag`` (the same on every host)."""
    out = bytearray()
    n = 0
    while len(out) < size:
        out += hashlib.sha256(f"{tag}:{n}".encode()).digest()
        n += 1
    return bytes(out[:size])


def contents(version: str) -> dict[str, bytes]:
    """The regular files of version ``a`` or ``b`` by guest path."""
    files = {
        "/srv/xfs/docs/a.txt": _bytes(f"xfs-a-{version}", 200_000 if version == "a" else 90_000),
        "/srv/xfs/docs/sub/deep.txt": b"deep in xfs\n",
        "/srv/lv/keep.bin": _bytes("lv-keep", 150_000),
    }
    if version == "a":
        files["/srv/xfs/docs/gone.bin"] = _bytes("xfs-gone", 70_000)
        files["/srv/lv/gone-lv.txt"] = _bytes("lv-gone", 30_000)
    return files


def appliance_env(cache_dir: Path) -> dict[str, str]:
    """supermin's ``SUPERMIN_*`` variables for the lab's kernel package ({} when the host has
    a kernel in /boot, or the lab has no kernel package yet)."""
    if list(Path("/boot").glob("vmlinuz-*")):
        return {}
    debs = sorted((Path(cache_dir) / "debs").glob("linux-image-*.deb"))
    if not debs:
        return {}
    root = Path(cache_dir) / "appliance-kernel"
    final = root / debs[-1].stem
    if not final.is_dir():
        make_dirs(root)
        with locked(Path(cache_dir) / ".appliance-kernel.lock"):
            if not final.is_dir():
                tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
                try:
                    _run(["dpkg-deb", "-x", str(debs[-1]), str(tmp)])
                    version = next((tmp / "lib" / "modules").iterdir()).name
                    _run(["depmod", "-b", str(tmp), version])
                    publish_dir(tmp, final)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    version = next((final / "lib" / "modules").iterdir()).name
    return {
        "SUPERMIN_KERNEL": str(final / "boot" / f"vmlinuz-{version}"),
        "SUPERMIN_MODULES": str(final / "lib" / "modules" / version),
        "SUPERMIN_KERNEL_VERSION": version,
    }


def build(a: Path, b: Path, cache_dir: Path) -> None:
    """Make version ``a`` of the disk, then ``b`` from a copy of it (raw, sparse)."""
    os.environ.update(appliance_env(cache_dir))
    with open(a, "wb") as fh:
        fh.truncate(SIZE)
    _with_appliance(a, _make)
    _run(["cp", "--sparse=always", str(a), str(b)])
    _with_appliance(b, _change)


def _with_appliance(disk: Path, work: Callable[[Any], None]) -> None:
    try:
        import guestfs
    except ImportError:
        raise LabFailed("python3-guestfs is not installed (scripts/install-system.sh)") from None
    g = guestfs.GuestFS(python_return_dict=True, close_on_exit=False)
    try:
        g.set_backend("direct")
        g.set_backend_setting("force_tcg", "1")
        g.add_drive_opts(str(disk), format="raw")
        g.launch()
        work(g)
        g.shutdown()
    except RuntimeError as exc:
        raise LabFailed(f"building the files disk: {exc}") from None
    finally:
        g.close()


def _make(g: Any) -> None:
    dev, vg = "/dev/sda", VG
    g.part_init(dev, "gpt")
    g.part_add(dev, "p", 2048, 2048 + XFS_MIB * 2048 - 1)
    g.part_add(dev, "p", 2048 + XFS_MIB * 2048, -2048)
    g.mkfs("xfs", f"{dev}1", label="fxfs")
    g.pvcreate(f"{dev}2")
    g.vgcreate(vg, [f"{dev}2"])
    g.lvcreate("root", vg, 16)
    g.lvcreate("data", vg, 64)
    g.mkfs("ext4", f"/dev/{vg}/root")
    g.mkfs("ext4", f"/dev/{vg}/data")
    g.mount(f"/dev/{vg}/root", "/")
    g.mkdir_p("/etc")
    uuid = g.vfs_uuid(f"/dev/{vg}/data")
    g.write("/etc/fstab", (
        f"# vmvault lab files disk\n/dev/mapper/{vg}-root / ext4 defaults 0 1\n"
        f"LABEL=fxfs /srv/xfs xfs defaults 0 0\nUUID={uuid} /srv/lv ext4 defaults 0 2\n"
        "proc /proc proc defaults 0 0\n"
    ).encode())  # fmt: skip
    g.umount_all()
    files = contents("a")
    for mount, device in _MOUNTS:
        g.mount(device, "/")
        for path, data in files.items():
            if path.startswith(mount + "/"):
                inner = path[len(mount) :]
                g.mkdir_p(os.path.dirname(inner))
                g.write(inner, data)
                g.utimens(inner, MTIME, 0, MTIME, 0)
        if mount == "/srv/xfs":
            g.chown(*OWNER, "/docs/a.txt")
            g.chmod(0o640, "/docs/a.txt")
            g.ln_s("a.txt", "/docs/link")
            g.mkfifo(0o644, "/docs/pipe")
        g.umount_all()


def _change(g: Any) -> None:
    """Version ``b``: what :func:`contents` says changed since ``a``."""
    before, after = contents("a"), contents("b")
    for mount, device in _MOUNTS:
        g.mount(device, "/")
        for path in before:
            if path.startswith(mount + "/"):
                inner = path[len(mount) :]
                if path not in after:
                    g.rm(inner)
                elif after[path] != before[path]:
                    g.write(inner, after[path])
        g.umount_all()


_MOUNTS = (("/srv/xfs", "/dev/sda1"), ("/srv/lv", f"/dev/{VG}/data"))


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise LabFailed(f"{' '.join(argv)} failed ({proc.returncode}): {err}")
