"""The backup service's :class:`~vmvault.services.ports.BackupDriver` over libvirt.

Thin: it adapts :mod:`~vmvault.hypervisor.libvirt.backup` (pull-mode backup of a running or
paused VM), :mod:`vmvault.hypervisor.offline` (qemu-nbd over the images of a shut-off VM),
:mod:`~vmvault.hypervisor.libvirt.stale` and :mod:`~vmvault.hypervisor.libvirt.checkpoints`
to the shape the service expects, and reports each point in time as a typed
:class:`~vmvault.domain.recovery_point.TakenPoint`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

import libvirt

from vmvault.domain.cluster import pause_forbidden
from vmvault.domain.consistency import NOT_RUN, HookState
from vmvault.domain.errors import VmvaultError
from vmvault.domain.pull import PullTarget, nbd_address
from vmvault.domain.recovery_point import Method, TakenPoint, UnfinishedBackup
from vmvault.domain.vm import Disk
from vmvault.hypervisor import offline as offline_mod
from vmvault.hypervisor.libvirt import checkpoints as cps
from vmvault.hypervisor.libvirt.backup import DiskSpec, PointInTime, PullBackup
from vmvault.hypervisor.libvirt.connection import connection, lookup_domain
from vmvault.hypervisor.libvirt.domxml import parse_disks
from vmvault.hypervisor.libvirt.stale import cleanup_stale
from vmvault.hypervisor.nbd import NbdSource
from vmvault.hypervisor.offline import OfflineExport

_OFFLINE = TakenPoint(
    method=Method.OFFLINE,
    reason="VM is shut off: its images are read directly",
    notes=("VM shut off: its images are read directly (qemu-nbd, read-only)",),
)


def _label(uri: str, vm_uuid: str) -> str:
    """``HOST/NAME`` of the domain, as messages name VMs (its uuid if libvirt cannot say)."""
    try:
        with connection(uri) as conn:
            dom = lookup_domain(conn, uri, vm_uuid)
            return f"{conn.getHostname()}/{dom.name()}"
    except (libvirt.libvirtError, VmvaultError):
        return vm_uuid


def taken_point(pit: PointInTime) -> TakenPoint:
    """The service's view of how the point in time was taken."""
    warnings: list[str] = []
    notes: list[str] = []
    if pit.quiesce == "freeze" and pit.frozen:
        method = Method.GUEST_QUIESCE
        reason = f"the guest agent froze {pit.fs_frozen} file system(s); {pit.hooks.summary()}"
        if pit.hooks.state is HookState.FAILED:
            warnings.append(
                f"application hook failed ({pit.hooks.summary()}): the point is "
                "file-system-consistent, not application-consistent"
            )
    elif pit.quiesce == "freeze":
        # never a guest-quiesce point that was not frozen: the saved-state fallback
        method = Method.SAVED_STATE
        how = "VM paused while the point in time was taken" if pit.paused else "VM already paused"
        reason = f"the guest could not be frozen ({pit.fallback_reason}): {how}"
        warnings.append(f"the guest could not be frozen ({pit.fallback_reason}): saved-state")
        verified = {
            True: "thaw verified",
            False: "thaw not verified",
            None: "freeze not sent or agent silent: nothing to verify",
        }
        notes.append(
            f"freeze attempt {pit.freeze_attempt_ms} ms ({verified[pit.thaw_verified]}), "
            "then saved-state"
        )
    elif pit.paused:
        method, reason = Method.SAVED_STATE, "VM paused while the point in time was taken"
    else:
        method = Method.SAVED_STATE
        reason = "VM already paused: taken as it is" if pit.was_paused else "taken as it runs"
    if pit.paused:
        notes.append(f"VM paused for {pit.paused_ms} ms while the point was taken")
    elif pit.frozen:
        notes.append(f"{pit.fs_frozen} file system(s) frozen for {pit.frozen_ms} ms")
        notes.append(f"application hooks: {pit.hooks.summary()}")
    if pit.thaw_error:
        warnings.append(f"{pit.thaw_error}: the guest may still be frozen")
    if pit.resume_error:
        warnings.append(f"{pit.resume_error}: the VM may still be paused")
    for target, why in pit.full_disks.items():
        notes.append(f"disk {target} exported in full: {why}")
    if pit.pulled_from is not None:
        notes.append(f"disks pulled over NBD with TLS from {pit.pulled_from}")
    return TakenPoint(
        method=method,
        reason=reason,
        frozen=pit.frozen,
        fs_frozen=pit.fs_frozen,
        frozen_ms=pit.frozen_ms if pit.frozen else pit.freeze_attempt_ms,
        paused_ms=pit.paused_ms,
        released=not pit.held,
        warnings=tuple(warnings),
        notes=tuple(notes),
        fsinfo=tuple(pit.fsinfo) if pit.fsinfo is not None else None,
        full_disks=dict(pit.full_disks),
        hooks=pit.hooks if pit.frozen else NOT_RUN,
    )


class _PullSession:
    def __init__(self, backup: PullBackup) -> None:
        self.backup = backup
        self.taken = TakenPoint(method=Method.SAVED_STATE, reason="not taken yet")

    def __enter__(self) -> _PullSession:
        self.backup.__enter__()
        self.taken = taken_point(self.backup.point_in_time)
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.backup.__exit__(t, e, tb)

    @property
    def released(self) -> bool:
        return not self.backup.point_in_time.held

    def source(self, target: str) -> NbdSource:
        return self.backup.source(target)


class _OfflineSession:
    def __init__(self, disks: list[Disk], bitmap: str | None, work_dir: Path) -> None:
        self.disks = disks
        self.bitmap = bitmap
        self.work_dir = work_dir
        self.taken = _OFFLINE
        self.released = True
        self._stack = ExitStack()
        self._exports: dict[str, OfflineExport] = {}

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

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    def source(self, target: str) -> NbdSource:
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
            for target in [d.target for d in parse_disks(dom.XMLDesc(0)) if d.target]:
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
        in_window: Callable[[], None] | None = None,
        allow_pause: bool = True,
        after_begin: Callable[[], None] | None = None,
        before_pause: Callable[[str], None] | None = None,
        pull_tls: str | None = None,
        point: str | None = None,
    ) -> _PullSession:
        if quiesce == "pause" and not allow_pause:
            raise pause_forbidden(_label(uri, vm_uuid))
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
            in_window=in_window,
            after_begin=after_begin,
            allow_pause=allow_pause,
            before_pause=before_pause,
            pull=PullTarget.of(nbd_address(uri), pull_tls, point) if pull_tls is not None else None,
        )
        return _PullSession(backup)

    def offline(self, disks: list[Disk], bitmap: str | None) -> _OfflineSession:
        return _OfflineSession(disks, bitmap, self.work_dir)

    def cleanup_stale(
        self, uri: str, vm_uuid: str, left: UnfinishedBackup | None = None
    ) -> list[str]:
        return cleanup_stale(uri, vm_uuid, self.work_dir, left)
