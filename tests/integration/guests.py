"""What the lab tests do in and around a lab guest, one helper each: run a shell script in it
through its guest agent, write and checksum a file there, copy an image a restore or an export
produced as raw, and read a file of, or check, a raw ext4 image (debugfs and e2fsck: nothing
is mounted)."""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt

from vmvault.hypervisor.libvirt import agent

#: The lab's libvirt (its second host is reached by the URI ``lab host up`` prints).
URI = "qemu:///system"


@contextlib.contextmanager
def libvirt_conn(uri: str = URI) -> Iterator[Any]:
    conn = libvirt.open(uri)
    try:
        yield conn
    finally:
        conn.close()


def sh(dom: Any, script: str, timeout: float = 120) -> str:
    """``script`` run by ``/bin/sh`` in the guest of ``dom``; its stdout. It must succeed."""
    res = agent.exec_(dom, "/bin/sh", ["-c", script], timeout=timeout)
    assert res.exitcode == 0, (script, res)
    return res.stdout.decode()


def guest(name: str, script: str, timeout: float = 120, uri: str = URI) -> str:
    """:func:`sh` in the guest of the domain ``name`` of ``uri``."""
    with libvirt_conn(uri) as conn:
        return sh(conn.lookupByName(name), script, timeout)


def guest_md5(name: str, path: str) -> str:
    return guest(name, f"md5sum {path}").split()[0]


def write_file(name: str, path: str, mib: int, uri: str = URI) -> str:
    """MiB of random data in the guest's ``path``, synced; its md5."""
    script = f"dd if=/dev/urandom of={path} bs=1M count={mib} 2>/dev/null; sync; md5sum {path}"
    return guest(name, script, uri=uri).split()[0]


def raw_copy(image: Path, raw: Path) -> Path:
    """``raw``: a raw copy of ``image`` (any format; debugfs and e2fsck read raw images), made
    while a guest may hold it (``-U``)."""
    raw.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["qemu-img", "convert", "-U", "-O", "raw", str(image), str(raw)],
        check=True,
        capture_output=True,
    )
    return raw


def image_file(img: Path, path: str) -> bytes:
    """A file of a raw ext4 image, read without mounting it."""
    p = subprocess.run(["debugfs", "-R", f"cat {path}", str(img)], capture_output=True, check=True)
    return p.stdout


def md5_in_image(img: Path, path: str) -> str:
    return hashlib.md5(image_file(img, path)).hexdigest()


def fsck_clean(img: Path) -> None:
    """The raw ext4 image's file system is clean (``e2fsck -fn``: nothing changed)."""
    p = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
