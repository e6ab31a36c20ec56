"""The backup service's :class:`~vmvault.services.backups.BackupDriver` over libvirt.

Thin: it adapts :mod:`vmvault.hypervisor.libvirt.backup` (pull-mode backup of a running or
paused VM), :mod:`vmvault.hypervisor.offline` (qemu-nbd over the images of a shut-off VM)
and :mod:`vmvault.hypervisor.libvirt.checkpoints` to the shape the service expects.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import libvirt

from vmvault.domain.vm import Disk
from vmvault.hypervisor import offline as offline_mod
from vmvault.hypervisor.libvirt import checkpoints as cps
from vmvault.hypervisor.libvirt.backup import DiskSpec, PullBackup, cleanup_stale
from vmvault.hypervisor.libvirt.connection import connection, lookup_domain


class _PullSession:
    def __init__(self, backup: PullBackup) -> None:
        self.backup = backup
        self.frozen = False
        self.frozen_ms = 0
        self.notes: list[str] = []
        self.fsinfo: list[dict[str, Any]] | None = None

    def __enter__(self) -> _PullSession:
        self.backup.__enter__()
        pit = self.backup.point_in_time
        self.fsinfo = pit.fsinfo
        self.frozen = pit.frozen
        self.frozen_ms = pit.frozen_ms
        if pit.freeze_error:
            self.notes.append(
                f"warning: the guest could not be frozen ({pit.freeze_error}): crash-consistent"
            )
        if pit.paused:
            self.notes.append(f"VM paused for {pit.frozen_ms} ms while the point was taken")
        elif pit.frozen:
            self.notes.append(f"{pit.fs_frozen} file system(s) frozen for {pit.frozen_ms} ms")
        return self

    def __exit__(self, *exc: object) -> None:
        self.backup.__exit__(*exc)  # type: ignore[arg-type]

    def source(self, target: str) -> Any:
        return self.backup.source(target)


class _OfflineSession:
    def __init__(self, disks: list[Disk], bitmap: str | None, work_dir: Path) -> None:
        self.disks = disks
        self.bitmap = bitmap
        self.work_dir = work_dir
        self.frozen = False
        self.frozen_ms = 0
        self.fsinfo: list[dict[str, Any]] | None = None
        self.notes = ["VM shut off: its images are read directly (qemu-nbd, read-only)"]
        self._stack = ExitStack()
        self._exports: dict[str, offline_mod.OfflineExport] = {}

    def __enter__(self) -> _OfflineSession:
        try:
            for disk in self.disks:
                assert disk.path is not None and disk.format is not None
                bitmap = self.bitmap if disk.format == "qcow2" else None
                export = offline_mod.OfflineExport(
                    Path(disk.path), disk.format, self.work_dir, bitmap=bitmap
                )
                self._exports[disk.target] = self._stack.enter_context(export)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def source(self, target: str) -> Any:
        return self._exports[target].source()


class LibvirtBackupDriver:
    def __init__(self, work_dir: Path, freeze_timeout: int = 10) -> None:
        self.work_dir = work_dir
        self.freeze_timeout = freeze_timeout

    def checkpoints(self, uri: str, vm_uuid: str) -> list[str]:
        return cps.list_checkpoints(uri, vm_uuid)

    def checkpoint_xml(self, uri: str, vm_uuid: str, name: str) -> str:
        return cps.checkpoint_xml(uri, vm_uuid, name)

    def redefine_checkpoint(self, uri: str, vm_uuid: str, xml: str) -> None:
        cps.redefine_checkpoint(uri, vm_uuid, xml)

    def delete_checkpoint(self, uri: str, vm_uuid: str, name: str) -> None:
        cps.delete_checkpoint(uri, vm_uuid, name)

    def checkpoint_problems(
        self, uri: str, vm_uuid: str, name: str, targets: list[str]
    ) -> list[str]:
        return cps.verify_checkpoint(uri, vm_uuid, name, targets)

    def domain_xml(self, uri: str, vm_uuid: str) -> str:
        """The persistent configuration (what a restore defines), without secrets."""
        with connection(uri) as conn:
            dom = lookup_domain(conn, uri, vm_uuid)
            flags = libvirt.VIR_DOMAIN_XML_INACTIVE if dom.isPersistent() else 0
            return str(dom.XMLDesc(flags))

    def disk_sizes(self, uri: str, vm_uuid: str) -> dict[str, int]:
        with connection(uri) as conn:
            dom = lookup_domain(conn, uri, vm_uuid)
            sizes = {}
            for target in _targets(dom.XMLDesc(0)):
                try:
                    sizes[target] = int(dom.blockInfo(target)[0])
                except libvirt.libvirtError:
                    continue  # empty drive, network disk without size …
            return sizes

    def take_point(
        self,
        uri: str,
        vm_uuid: str,
        disks: list[Disk],
        *,
        checkpoint: str | None,
        incremental_from: str | None,
        quiesce: str,
        cancel: Callable[[], bool],
        before_begin: Callable[[], None] | None = None,
    ) -> _PullSession:
        specs = [DiskSpec(d.target, d.path or "", d.format or "raw") for d in disks]
        backup = PullBackup(
            uri,
            vm_uuid,
            specs,
            checkpoint=checkpoint,
            incremental_from=incremental_from,
            work_dir=self.work_dir,
            quiesce=quiesce,
            freeze_timeout=self.freeze_timeout,
            cancel=cancel,
            before_begin=before_begin,
        )
        return _PullSession(backup)

    def offline(self, disks: list[Disk], bitmap: str | None) -> _OfflineSession:
        return _OfflineSession(disks, bitmap, self.work_dir)

    def cleanup_stale(self, uri: str, vm_uuid: str) -> list[str]:
        return cleanup_stale(uri, vm_uuid, self.work_dir)


def _targets(xml: str) -> list[str]:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    return [
        t.get("dev", "")
        for t in (d.find("target") for d in root.findall("./devices/disk"))
        if t is not None and t.get("dev")
    ]
