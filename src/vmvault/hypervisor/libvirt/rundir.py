"""The run directory of one VM's backup: ``work_dir/<uuid>/``.

::

    work_dir/<uuid>/lock       flock'ed by the process backing the VM up (one per VM per host)
    work_dir/<uuid>/sock/      owned by QEMU's uid:gid, 0750: QEMU creates nbd.sock here
    work_dir/<uuid>/scratch/   libvirt creates (and labels) the <target>.scratch files here

The lock is what tells a live owner from a dead one: the kernel releases a ``flock`` when its
holder dies, so whoever gets the lock knows that no live vmvault process on this host is
backing the VM up, and may clean up what is left (:mod:`~vmvault.hypervisor.libvirt.stale`).
What a dead backup was doing is not kept here: the backup job's journal in the catalog says
it (``docs/backup.md``); the adapter only ever keeps the lock file between backups.

Every existing parent of ``work_dir`` must be traversable by others (``o+x``): QEMU runs as
``libvirt-qemu`` and must reach the socket and scratch directories (``WORK_DIR_UNUSABLE``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vmvault.domain.errors import WorkDirUnusable
from vmvault.hypervisor.host import untraversable

SOCKET_NAME = "nbd.sock"
LOCK_NAME = "lock"


@dataclass(frozen=True)
class RunDir:
    """Paths of one VM's run directory under ``root`` (the driver's work directory)."""

    root: Path
    vm_uuid: str

    @classmethod
    def of(cls, work_dir: Path, vm_uuid: str) -> RunDir:
        return cls(Path(work_dir).absolute(), vm_uuid)

    @property
    def path(self) -> Path:
        return self.root / self.vm_uuid

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    @property
    def sock_dir(self) -> Path:
        return self.path / "sock"

    @property
    def scratch_dir(self) -> Path:
        return self.path / "scratch"

    @property
    def socket(self) -> Path:
        return self.sock_dir / SOCKET_NAME

    def owns_socket(self, socket: str | None) -> bool:
        """Is ``socket`` (a backup job's) one of vmvault's, under :attr:`root`?"""
        return bool(socket) and Path(str(socket)).absolute().is_relative_to(self.root)

    def create(self) -> None:
        """Make the directories (sock/ gets its owner later, in :meth:`hand_to_qemu`)."""
        check_work_dir(self.root)
        try:
            for path, mode in (
                (self.root, 0o755),
                (self.path, 0o755),
                (self.scratch_dir, 0o755),
                (self.sock_dir, 0o750),
            ):
                path.mkdir(parents=True, exist_ok=True)
                os.chmod(path, mode)
        except OSError as exc:
            raise WorkDirUnusable(str(exc), path=str(self.path), culprit=str(self.path)) from None

    def try_lock(self) -> IO[str] | None:
        """``flock`` the VM's lock without blocking; None while another process holds it.
        The caller keeps the returned file open for as long as it owns the VM."""
        fh = open(self.lock_path, "a+")  # noqa: SIM115 - held by the caller
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return None
        return fh

    def hand_to_qemu(self, domain_xml: ET.Element) -> None:
        """Give sock/ to QEMU's user and remove a leftover socket and scratch files."""
        uid, gid = qemu_owner(domain_xml)
        try:
            os.chown(self.sock_dir, uid, gid)
            os.chmod(self.sock_dir, 0o750)
            self.remove_leftovers()
        except OSError as exc:
            raise WorkDirUnusable(
                str(exc), path=str(self.sock_dir), culprit=str(self.sock_dir)
            ) from None

    def leftovers(self) -> list[Path]:
        """The socket and scratch files present now."""
        found = [self.socket] if self.socket.exists() else []
        if self.scratch_dir.is_dir():
            found += sorted(self.scratch_dir.glob("*.scratch"))
        return found

    def remove_leftovers(self) -> list[Path]:
        """Remove the socket and scratch files; returns those removed.  Only the lock holder
        may call it."""
        removed = []
        for p in self.leftovers():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
        return removed


def check_work_dir(path: Path) -> None:
    """Every existing ancestor of ``path`` must be traversable by others (QEMU runs as
    libvirt-qemu and must reach the socket and scratch directories)."""
    path = Path(path).absolute()
    found = untraversable(path)
    if found is None:
        return
    p, mode = found
    if mode is None:
        raise WorkDirUnusable(f"{p} is not a directory", path=str(path), culprit=str(p))
    raise WorkDirUnusable(
        f"{p} has mode {mode}: QEMU cannot reach the NBD socket",
        path=str(path),
        culprit=str(p),
    )


def qemu_owner(domain_xml: ET.Element) -> tuple[int, int]:
    """uid/gid QEMU runs as: the DAC seclabel of the live XML (``+64055:+64055``), else the
    libvirt-qemu user, else root."""
    for sl in domain_xml.findall("seclabel"):
        if sl.get("model") == "dac":
            label = sl.findtext("label") or ""
            try:
                u, g = label.split(":")
                return int(u.lstrip("+")), int(g.lstrip("+"))
            except ValueError:
                break
    try:
        import pwd

        pw = pwd.getpwnam("libvirt-qemu")
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        return 0, 0


__all__ = ["LOCK_NAME", "SOCKET_NAME", "RunDir", "check_work_dir", "qemu_owner"]
