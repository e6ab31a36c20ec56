"""The libvirt side of an instant restore: overlays on the export, the block copy to local
images, the pivot, and rebuilding local images after a kill (docs/restore.md, "Instant
recovery").

Facts that shape this module (libvirt 9.0, QEMU 7.2, measured on the lab):

* ``virDomainBlockCopy`` refuses a persistent domain ("domain is not transient") unless it is
  asked for a job that does not survive the QEMU process
  (``VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB``): the job is then lost if the guest powers off, and
  the persistent definition is not changed by the pivot.  So the persistent definition is
  redefined on the local images by the service right after the pivot.
* Without ``REUSE_EXT`` libvirt creates the destination image itself (owner and label for
  QEMU) with the source's virtual size.
* The NBD client of QEMU 7.2 reconnects only with ``reconnect-delay``, which libvirt 9.0's XML
  cannot set (``<reconnect>`` for NBD came in a later libvirt): once the export's process is
  gone, every read of a block not yet in the overlay fails with EIO, for the guest (paused,
  ``rerror_policy='stop'``) and for the block copy (which ends in error).
* The export socket must be reachable by QEMU (user ``libvirt-qemu``): libvirt does not
  relabel the unix socket of a network disk, so the socket is chowned to QEMU's user.
"""

from __future__ import annotations

import os
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

from vmvault.domain.errors import InstantCopyFailed, RestoreVerifyFailed
from vmvault.domain.instant import CopyState
from vmvault.hypervisor.libvirt.connection import connection, error_message, lookup_domain
from vmvault.hypervisor.libvirt.instant_xml import copy_destination, disk_sources, instant_xml
from vmvault.hypervisor.libvirt.rundir import qemu_owner


def _qemu_img(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["qemu-img", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class LibvirtInstantDriver:
    """The restore service's ``InstantDriver`` over libvirt and qemu-img (local hosts)."""

    def __init__(self, poll: float = 0.25) -> None:
        self.poll = poll

    def render(self, xml: str, overlays: dict[str, Path], socket: Path) -> str:
        return instant_xml(xml, overlays, socket)

    # --- files ---------------------------------------------------------------------------------

    def make_overlay(self, overlay: Path, socket: Path, export: str, size: int) -> None:
        """A qcow2 of ``size`` bytes at ``overlay`` whose backing file is export ``export`` at
        ``socket`` (raw); owned by QEMU's user."""
        backing = f"nbd+unix:///{export}?socket={socket}"
        done = _qemu_img(
            "create", "-q", "-f", "qcow2", "-u", "-F", "raw", "-b", backing, str(overlay), str(size)
        )
        if done.returncode != 0:
            raise InstantCopyFailed(
                f"qemu-img create {overlay}: {done.stderr.strip()}", vm=overlay.name
            )
        self.allow_qemu(overlay)

    def allow_qemu(self, path: Path) -> None:
        """Hand ``path`` (the export's socket, an overlay) to QEMU's user."""
        uid, gid = qemu_owner(ET.Element("domain"))
        os.chown(path, uid, gid)

    def commit_overlay(self, overlay: Path, base: Path, fmt: str, target: str) -> None:
        """Write the guest's writes kept in ``overlay`` into ``base`` (the disk as the point
        had it): the overlay's backing is switched from the export to ``base`` (metadata
        only), then committed.  ``RESTORE_VERIFY_FAILED`` if qemu-img fails."""
        for args in (
            ("rebase", "-u", "-f", "qcow2", "-F", fmt, "-b", str(base), str(overlay)),
            ("commit", "-q", "-f", "qcow2", str(overlay)),
        ):
            done = _qemu_img(*args)
            if done.returncode != 0:
                raise RestoreVerifyFailed(
                    done.stderr.strip()[-500:], target=target, why=f"qemu-img {args[0]} failed"
                )

    # --- the running domain --------------------------------------------------------------------

    def sources(self, uri: str, uuid: str) -> dict[str, str | None]:
        """Each disk's source file as the running domain has it (target → path)."""
        with connection(uri) as conn:
            return disk_sources(str(lookup_domain(conn, uri, uuid).XMLDesc(0)))

    def start_copy(self, uri: str, uuid: str, target: str, dest: Path, fmt: str) -> None:
        """Start a full block copy of disk ``target`` into a new image ``dest``."""
        flags = libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB
        with connection(uri) as conn:
            dom = lookup_domain(conn, uri, uuid)
            try:
                dom.blockCopy(target, copy_destination(dest, fmt), {}, flags)
            except libvirt.libvirtError as exc:
                raise InstantCopyFailed(
                    f"block copy of {target}: {error_message(exc)}", vm=dom.name()
                ) from None

    def copy_state(self, uri: str, uuid: str, target: str) -> CopyState:
        with connection(uri) as conn:
            dom = lookup_domain(conn, uri, uuid)
            try:
                info = dom.blockJobInfo(target, 0)
            except libvirt.libvirtError:
                info = {}
            if not info:
                return CopyState(False, 0, 0, False)
            root = ET.fromstring(dom.XMLDesc(0))
            ready = False
            for el in root.findall("./devices/disk"):
                t = el.find("target")
                mirror = el.find("mirror")
                if t is not None and t.get("dev") == target and mirror is not None:
                    ready = mirror.get("ready") == "yes"
            cur, end = int(info.get("cur", 0)), int(info.get("end", 0))
            return CopyState(True, cur, end, ready and cur == end)

    def pivot(self, uri: str, uuid: str, target: str, timeout: float = 60.0) -> None:
        """Switch disk ``target`` to its copy (the copy must be ready); returns once the
        running domain reads from it."""
        with connection(uri) as conn:
            dom = lookup_domain(conn, uri, uuid)
            try:
                dom.blockJobAbort(target, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
            except libvirt.libvirtError as exc:
                raise InstantCopyFailed(
                    f"pivot of {target}: {error_message(exc)}", vm=dom.name()
                ) from None
            deadline = time.monotonic() + timeout
            while dom.blockJobInfo(target, 0):
                if time.monotonic() > deadline:
                    raise InstantCopyFailed(f"pivot of {target} did not end", vm=dom.name())
                time.sleep(self.poll)

    def abort_copy(self, uri: str, uuid: str, target: str) -> None:
        """Stop disk ``target``'s copy, if any, staying on the source."""
        with connection(uri) as conn:
            try:
                dom = conn.lookupByUUIDString(uuid)
                if dom.blockJobInfo(target, 0):
                    dom.blockJobAbort(target, 0)
            except libvirt.libvirtError:
                pass

    def paused_on_error(self, uri: str, uuid: str) -> bool:
        """True when the domain is paused on an I/O error (the export failed)."""
        with connection(uri) as conn:
            try:
                state, reason = conn.lookupByUUIDString(uuid).state()
            except libvirt.libvirtError:
                return False
        return bool(
            state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_IOERROR
        )

    def resume(self, uri: str, uuid: str) -> None:
        with connection(uri) as conn:
            dom = lookup_domain(conn, uri, uuid)
            try:
                dom.resume()
            except libvirt.libvirtError as exc:
                raise InstantCopyFailed(f"resume: {error_message(exc)}", vm=dom.name()) from None

    def destroy(self, uri: str, uuid: str) -> None:
        """Power the domain off at once (it keeps its definition)."""
        with connection(uri) as conn:
            try:
                dom = conn.lookupByUUIDString(uuid)
                if dom.isActive():
                    dom.destroy()
            except libvirt.libvirtError:
                pass
