"""Unpacking a tar a guest's file system produced (libguestfs ``tar-out``) on the host.

The archive's content is the guest's: whoever is root in the guest chose its names, links
and modes.  ``tarfile.extractall`` of this Python (3.11.2, no extraction filters) trusts an
archive fully: a symlink ``s -> /etc/shadow`` plus a hard link ``h -> s`` makes it ``chown``,
``chmod`` and ``utime`` the host's file through the link (reproduced in review).  So members
are made one by one, by rules that never follow a link the archive made:

* a name that is absolute or has a ``..`` component is skipped (the raw name, not a
  normalised one: ``a/../../x`` is refused, ``./..foo`` is a plain name);
* a member is made only where its parent, resolved, is exactly the directory its name says
  under ``target`` (a symlink made by an earlier member is never a way out), and only if
  nothing exists at its path yet (``O_EXCL``, ``mkdir``, ``symlink``, ``mkfifo`` all refuse an
  existing path: a later member never writes through an earlier one);
* a hard link becomes a copy of its target's bytes (``tarfile`` reads them from the archive),
  never a link to a path on the host;
* owners by number with ``follow_symlinks=False``; modes only on what this code just made
  (never a symlink), without setuid/setgid; times with ``follow_symlinks=False``; directories'
  modes and times last, deepest first (making their entries would change them);
* character and block devices are never made: their guest paths are returned.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path, PurePosixPath

from vmvault.hypervisor.fsread import SETID


def unpack(tf: tarfile.TarFile, target: Path) -> tuple[list[str], list[str]]:
    """Unpack ``tf`` into the existing directory ``target``: (device members not made,
    members skipped with the reason) — both by archive name."""
    root = os.path.realpath(target)
    devices: list[str] = []
    skipped: list[str] = []
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    for m in tf.getmembers():
        raw = PurePosixPath(m.name)
        parts = [p for p in raw.parts if p not in (".", "/")]
        if m.name.startswith("/") or ".." in parts:
            skipped.append(f"{m.name} (outside the tree)")
            continue
        if not parts:
            continue  # the tree's own root: ``target`` itself
        dest = os.path.join(root, *parts)
        if os.path.realpath(os.path.dirname(dest)) != os.path.dirname(dest):
            skipped.append(f"{m.name} (under a link)")
            continue
        if m.ischr() or m.isblk():
            devices.append(m.name)
            continue
        try:
            made = _make(tf, m, dest)
        except FileExistsError:
            skipped.append(f"{m.name} (named twice)")
            continue
        except KeyError:  # a hard link to nothing in the archive (e.g. to a symlink's target)
            skipped.append(f"{m.name} (a link to nothing in the tree)")
            continue
        if not made:
            skipped.append(f"{m.name} (unsupported kind)")
            continue
        os.chown(dest, m.uid, m.gid, follow_symlinks=False)
        if m.isdir():
            dirs.append((dest, m))
            continue
        if not m.issym():
            os.chmod(dest, stat.S_IMODE(m.mode) & ~SETID)
        os.utime(dest, (m.mtime, m.mtime), follow_symlinks=False)
    for dest, m in sorted(dirs, key=lambda d: d[0].count(os.sep), reverse=True):
        os.chmod(dest, stat.S_IMODE(m.mode) & ~SETID)
        os.utime(dest, (m.mtime, m.mtime), follow_symlinks=False)
    return devices, skipped


def _make(tf: tarfile.TarFile, m: tarfile.TarInfo, dest: str) -> bool:
    """Make member ``m`` at ``dest`` (nothing may be there); False for a kind never made."""
    if m.isdir():
        os.mkdir(dest, 0o700)
    elif m.issym():
        os.symlink(m.linkname, dest)
    elif m.isfifo():
        os.mkfifo(dest, 0o600)
    elif m.isreg() or m.islnk():  # a hard link: a copy of its target's bytes
        src = tf.extractfile(m)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(dest, flags, 0o600), "wb") as out:
            if src is not None:
                shutil.copyfileobj(src, out, 1 << 20)
    else:
        return False
    return True
