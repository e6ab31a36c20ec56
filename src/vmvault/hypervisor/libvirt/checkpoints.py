"""libvirt checkpoints and the qcow2 persistent bitmaps behind them.

A checkpoint ``N`` made with a backup (``backupBegin(backup_xml, checkpoint_xml)``) is two
things: libvirt's metadata (``/var/lib/libvirt/qemu/checkpoint/<vm>/N.xml``) and, on every
qcow2 disk it covers, a persistent dirty bitmap named ``N`` that QEMU keeps in memory while
the VM runs and writes into the image when it closes it (clean shutdown).

vmvault only ever touches its own checkpoints, named ``vmvault-<point-id>``
(:func:`vmvault.domain.recovery_point.is_our_checkpoint`); :func:`delete_checkpoint` refuses
any other name.

Facts that shape this module (libvirt 9.0 / QEMU 7.2, measured):

* ``qemu-img info -U`` on a running VM's image lists only the bitmaps that were in the image
  when QEMU opened it: a bitmap created since then is **not** in the header yet.  So
  :func:`image_bitmaps` asks the running QEMU instead when the image is in use, and
  :func:`verify_checkpoint` asks it through libvirt (checkpoint XML with ``XML_SIZE``: a disk
  whose bitmap is missing or broken has no ``size``).
* Deleting a checkpoint whose bitmap is gone fails (``bitmap 'N' not found in backing chain``);
  :func:`delete_checkpoint` then drops the metadata only.
* libvirt 9.0 cannot create a checkpoint of a shut-off VM ("cannot create checkpoint for
  inactive domain").
"""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu

from vmvault.domain.errors import (
    CheckpointMissing,
    CheckpointOperationFailed,
    HostUnreachable,
    InvalidInput,
)
from vmvault.domain.recovery_point import CHECKPOINT_PREFIX, is_our_checkpoint
from vmvault.hypervisor.libvirt.connection import connection, error_message, lookup_domain
from vmvault.hypervisor.libvirt.domxml import DomainDisk, parse_disks


def _ordered(dom: Any) -> list[Any]:
    """The domain's checkpoints, oldest first: libvirt's topological (parent-before-child)
    order, then by creation time (a redefined checkpoint may become a sibling)."""
    cps = list(dom.listAllCheckpoints(libvirt.VIR_DOMAIN_CHECKPOINT_LIST_TOPOLOGICAL))
    keyed = []
    for i, cp in enumerate(cps):
        try:
            root = ET.fromstring(cp.getXMLDesc(libvirt.VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN))
            created = int(root.findtext("creationTime") or 0)
        except (libvirt.libvirtError, ET.ParseError, ValueError):
            created = 0
        keyed.append((created, i, cp))
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [cp for _, _, cp in keyed]


def list_checkpoints(uri: str, vm_uuid: str) -> list[str]:
    """Names of the VM's checkpoints (all of them, ours or not), oldest first."""
    with connection(uri) as conn:
        dom = lookup_domain(conn, uri, vm_uuid)
        try:
            return [str(cp.getName()) for cp in _ordered(dom)]
        except libvirt.libvirtError as exc:
            raise CheckpointOperationFailed(
                error_message(exc), operation="list", checkpoint="*", vm=vm_uuid
            ) from None


def checkpoint_xml(uri: str, vm_uuid: str, name: str) -> str:
    """The checkpoint's XML as libvirt gives it (with its ``<domain>``, no secrets): what
    :func:`redefine_checkpoint` takes back after libvirt lost its metadata."""
    with connection(uri) as conn:
        dom = lookup_domain(conn, uri, vm_uuid)
        try:
            return str(dom.checkpointLookupByName(name).getXMLDesc(0))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_CHECKPOINT:
                raise CheckpointMissing(
                    "libvirt has no such checkpoint", checkpoint=name, vm=vm_uuid
                ) from None
            raise CheckpointOperationFailed(
                error_message(exc), operation="read", checkpoint=name, vm=vm_uuid
            ) from None


def redefine_checkpoint(uri: str, vm_uuid: str, xml: str) -> None:
    """Give libvirt back the metadata of a checkpoint whose bitmaps are still in the images
    (``VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE``).  A checkpoint that already exists is left
    alone.  On a running VM libvirt also validates that QEMU still has the bitmaps
    (``REDEFINE_VALIDATE``): if not, ``CHECKPOINT_MISSING`` and nothing is redefined."""
    try:
        name = ET.fromstring(xml).findtext("name") or "?"
    except ET.ParseError as exc:
        raise InvalidInput(str(exc), what="checkpoint XML") from None
    with connection(uri) as conn:
        dom = lookup_domain(conn, uri, vm_uuid)
        try:
            dom.checkpointLookupByName(name)
            return
        except libvirt.libvirtError:
            pass
        flags = libvirt.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE
        if dom.isActive():
            # QEMU must still hold the bitmaps: never re-create a checkpoint that cannot work
            flags |= libvirt.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE
        try:
            dom.checkpointCreateXML(xml, flags)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_CHECKPOINT_INCONSISTENT:
                raise CheckpointMissing(error_message(exc), checkpoint=name, vm=vm_uuid) from None
            raise CheckpointOperationFailed(
                error_message(exc), operation="redefine", checkpoint=name, vm=vm_uuid
            ) from None


def delete_checkpoint(uri: str, vm_uuid: str, name: str, *, metadata_only: bool = False) -> None:
    """Delete one of *our* checkpoints (its bitmaps are merged into the parent's, so older
    checkpoints stay usable).  Deleting a checkpoint that does not exist is a no-op.

    ``metadata_only`` drops libvirt's record only and keeps the bitmaps in the images (what
    libvirt does when it "loses" a checkpoint).  If the bitmap of a disk is already gone, a
    normal delete fails in libvirt; the metadata is then dropped alone.
    """
    if not is_our_checkpoint(name):
        raise InvalidInput(
            f"vmvault deletes only its own checkpoints ({CHECKPOINT_PREFIX}*)",
            what=f"checkpoint {name}",
        )
    with connection(uri) as conn:
        dom = lookup_domain(conn, uri, vm_uuid)
        try:
            cp = dom.checkpointLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_CHECKPOINT:
                return
            raise CheckpointOperationFailed(
                error_message(exc), operation="delete", checkpoint=name, vm=vm_uuid
            ) from None
        flags = libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY if metadata_only else 0
        try:
            cp.delete(flags)
        except libvirt.libvirtError as exc:
            message = error_message(exc)
            if not metadata_only and "not found" in message and "bitmap" in message:
                try:
                    cp.delete(libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)
                    return
                except libvirt.libvirtError as exc2:
                    message = error_message(exc2)
            raise CheckpointOperationFailed(
                message, operation="delete", checkpoint=name, vm=vm_uuid
            ) from None


# --- bitmaps -------------------------------------------------------------------------------


def image_bitmap_info(path: Path) -> list[dict[str, Any]]:
    """The persistent bitmaps in a qcow2 image's header (``qemu-img info -U``): dicts with
    ``name``, ``granularity`` and ``flags`` (``auto`` = enabled; ``in-use`` = opened by a QEMU,
    or, for an image nobody has open, left inconsistent by a QEMU that did not close it)."""
    try:
        proc = subprocess.run(
            ["qemu-img", "info", "-U", "--output=json", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InvalidInput(str(exc), what=f"image {path}") from None
    if proc.returncode != 0:
        raise InvalidInput(
            proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "qemu-img failed",
            what=f"image {path}",
        )
    info = json.loads(proc.stdout)
    if info.get("format") != "qcow2":
        return []
    bitmaps = info.get("format-specific", {}).get("data", {}).get("bitmaps") or []
    return [dict(b) for b in bitmaps]


def image_bitmaps(path: Path, *, uri: str = "qemu:///system") -> list[str]:
    """Names of the persistent bitmaps of a qcow2 image (``[]`` for raw images).

    Shut-off VM: the image's header.  While a QEMU has the image open the header is stale (a
    bitmap created since QEMU started reaches it only when QEMU closes the image), so the
    bitmaps are asked of that QEMU: the running domain of ``uri`` that uses the image, through
    a read-only ``query-named-block-nodes`` (libvirt logs the domain as tainted by a custom
    monitor command).  Bitmaps QEMU flags inconsistent are left out.
    """
    path = Path(path)
    header = [str(b.get("name")) for b in image_bitmap_info(path)]
    if _image_in_use(path):
        live = _live_bitmaps(uri, path)
        if live is not None:
            return live
    return header


def _image_in_use(path: Path) -> bool:
    """True if a QEMU holds the image's write lock (``qemu-img info`` without ``-U`` fails)."""
    try:
        proc = subprocess.run(
            ["qemu-img", "info", "--output=json", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode != 0 and "lock" in proc.stderr


def _live_bitmaps(uri: str, path: Path) -> list[str] | None:
    """The persistent, consistent bitmaps the running QEMU that has ``path`` open holds, or
    None if no running domain of ``uri`` uses it (or it cannot be asked)."""
    real = os.path.realpath(path)
    try:
        with connection(uri) as conn:
            for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                try:
                    paths = {
                        os.path.realpath(d.local_path or "") for d in _local_disks(dom).values()
                    }
                except (libvirt.libvirtError, ET.ParseError):
                    continue
                if real not in paths:
                    continue
                query = '{"execute":"query-named-block-nodes","arguments":{"flat":true}}'
                reply = json.loads(libvirt_qemu.qemuMonitorCommand(dom, query, 0))
                for node in reply.get("return", []):
                    if node.get("drv") != "qcow2":
                        continue
                    if os.path.realpath(str(node.get("file", ""))) != real:
                        continue
                    return [
                        str(b["name"])
                        for b in node.get("dirty-bitmaps") or []
                        if b.get("persistent") and not b.get("inconsistent")
                    ]
                return []
    except (HostUnreachable, libvirt.libvirtError, ValueError):
        return None
    return None


def _local_disks(dom: Any) -> dict[str, DomainDisk]:
    """target -> disk, for the domain's disks backed by a file or block device on this host."""
    return {d.target: d for d in parse_disks(dom.XMLDesc(0)) if d.local_path}


def checkpoint_coverage(dom: Any, name: str) -> dict[str, str]:
    """For a *running* domain: target -> ``ok`` | ``broken`` | ``none`` for checkpoint ``name``
    (``none``: the checkpoint has no bitmap for that disk, e.g. a raw disk or a disk added
    later).  Raises :class:`CheckpointMissing` if libvirt has no such checkpoint."""
    try:
        cp = dom.checkpointLookupByName(name)
        xml = cp.getXMLDesc(
            libvirt.VIR_DOMAIN_CHECKPOINT_XML_SIZE | libvirt.VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN
        )
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_CHECKPOINT:
            raise CheckpointMissing(
                "libvirt has no such checkpoint", checkpoint=name, vm=dom.UUIDString()
            ) from None
        raise CheckpointMissing(error_message(exc), checkpoint=name, vm=dom.UUIDString()) from None
    out: dict[str, str] = {}
    for el in ET.fromstring(xml).findall("./disks/disk"):
        target = el.get("name", "")
        if el.get("checkpoint") != "bitmap":
            out[target] = "none"
        else:
            # libvirt computes `size` by asking QEMU: no size = the bitmap (or one of the
            # later checkpoints' bitmaps it is merged with) is missing or inconsistent
            out[target] = "ok" if el.get("size") is not None else "broken"
    return out


def verify_checkpoint(uri: str, vm_uuid: str, name: str, targets: Iterable[str]) -> list[str]:
    """Why checkpoint ``name`` cannot serve an incremental backup of the qcow2 disks
    ``targets`` (an empty list: it can).  Running VM: asks QEMU through libvirt; shut-off VM:
    reads the images' headers (a bitmap flagged ``in-use`` there was left inconsistent by an
    unclean stop).  Disks the checkpoint does not cover are reported too ("no bitmap")."""
    problems: list[str] = []
    with connection(uri) as conn:
        dom = lookup_domain(conn, uri, vm_uuid)
        if dom.isActive():
            try:
                coverage = checkpoint_coverage(dom, name)
            except CheckpointMissing as exc:
                return [exc.detail or exc.text]
            for t in targets:
                state = coverage.get(t, "none")
                if state == "broken":
                    problems.append(f"bitmap {name} of disk {t} is missing or inconsistent")
                elif state == "none":
                    problems.append(f"checkpoint {name} has no bitmap for disk {t}")
            return problems
        disks = _local_disks(dom)
        try:
            dom.checkpointLookupByName(name)
        except libvirt.libvirtError:
            problems.append(f"libvirt has no checkpoint {name}")
    for t in targets:
        disk = disks.get(t)
        if disk is None or disk.local_path is None:
            problems.append(f"the VM has no disk {t}")
            continue
        try:
            found = {str(b.get("name")): b for b in image_bitmap_info(Path(disk.local_path))}
        except InvalidInput as exc:
            problems.append(f"cannot read the bitmaps of {t}: {exc.detail}")
            continue
        b = found.get(name)
        if b is None:
            problems.append(f"bitmap {name} is not in the image of disk {t}")
        elif "in-use" in (b.get("flags") or []):
            problems.append(
                f"bitmap {name} of disk {t} is inconsistent (the VM was not shut down cleanly)"
            )
    return problems
