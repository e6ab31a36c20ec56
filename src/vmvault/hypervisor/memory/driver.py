"""The in-memory :class:`~vmvault.services.ports.BackupDriver` and its point sessions."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from types import TracebackType
from typing import Any

from vmvault.domain.cluster import pause_forbidden
from vmvault.domain.consistency import NOT_RUN, HookState
from vmvault.domain.errors import (
    BackupBeginFailed,
    BackupJobRunning,
    BackupVmNotRunning,
    Cancelled,
    CheckpointMissing,
    FreezeFailed,
    FreezeRequired,
    InvalidInput,
    VmvaultError,
)
from vmvault.domain.recovery_point import Method, TakenPoint, UnfinishedBackup, is_our_checkpoint
from vmvault.domain.vm import Disk, PowerState
from vmvault.hypervisor.memory.world import (
    MemoryDomain,
    MemoryHypervisor,
    MemorySource,
)


class MemoryBackupDriver:
    """:class:`~vmvault.services.ports.BackupDriver` over a :class:`MemoryHypervisor`."""

    def __init__(self, hv: MemoryHypervisor) -> None:
        self.hv = hv
        #: the ``pull_tls`` of the last point taken (None: read on the host), for tests
        self.pulled: str | None = None

    def checkpoints(self, uri: str, vm_uuid: str) -> list[str]:
        return list(self.hv.dom(vm_uuid).checkpoints)

    def checkpoint_xml(self, uri: str, vm_uuid: str, name: str) -> str:
        if name not in self.hv.dom(vm_uuid).checkpoints:
            raise CheckpointMissing("no such checkpoint", checkpoint=name, vm=vm_uuid)
        return f"<domaincheckpoint><name>{name}</name></domaincheckpoint>"

    def redefine_checkpoint(self, uri: str, vm_uuid: str, xml: str) -> None:
        d = self.hv.dom(vm_uuid)
        name = ET.fromstring(xml).findtext("name") or ""
        if name in d.checkpoints:
            return
        if not any(name in disk.bitmaps for disk in d.disks):
            raise CheckpointMissing("its bitmaps are gone", checkpoint=name, vm=d.name)
        d.checkpoints.append(name)

    def delete_checkpoint(self, uri: str, vm_uuid: str, name: str) -> None:
        if not is_our_checkpoint(name):
            raise InvalidInput("not a vmvault checkpoint", what=f"checkpoint {name}")
        d = self.hv.dom(vm_uuid)
        if name in d.checkpoints:
            d.checkpoints.remove(name)
        for disk in d.disks:
            disk.bitmaps.pop(name, None)
            disk.broken.discard(name)

    def forget_checkpoint(self, vm_uuid: str, name: str) -> None:
        """libvirt lost the checkpoint's metadata; the bitmaps stay in the images."""
        self.hv.dom(vm_uuid).checkpoints.remove(name)

    def checkpoint_problems(
        self, uri: str, vm_uuid: str, name: str, targets: list[str]
    ) -> list[str]:
        d = self.hv.dom(vm_uuid)
        if name not in d.checkpoints:
            return [f"checkpoint {name} missing"]
        problems = []
        for t in targets:
            disk = d.disk(t)
            if name not in disk.bitmaps:  # as libvirt: a disk added later has none either
                problems.append(f"checkpoint {name} has no bitmap for disk {t}")
            elif name in disk.broken:
                problems.append(f"bitmap {name} of disk {t} is missing or inconsistent")
        return problems

    def disk_sizes(self, uri: str, vm_uuid: str) -> dict[str, int]:
        return {disk.target: disk.size for disk in self.hv.dom(vm_uuid).disks}

    def domain_xml(self, uri: str, vm_uuid: str) -> str:
        d = self.hv.dom(vm_uuid)
        disks = "".join(
            f"<disk type='file' device='disk'><driver type='{x.format}'/>"
            f"<target dev='{x.target}'/></disk>"
            for x in d.disks
        )
        return (
            f"<domain><name>{d.name}</name><uuid>{d.uuid}</uuid><devices>{disks}</devices></domain>"
        )

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
    ) -> MemorySession:
        if quiesce == "pause" and not allow_pause:
            raise pause_forbidden(f"{self.hv.hostname(uri)}/{self.hv.dom(vm_uuid).name}")
        session = MemorySession(
            self.hv, vm_uuid, [x.target for x in disks], checkpoint, incremental_from, quiesce,
            cancel, in_window, after_begin=after_begin, allow_pause=allow_pause,
        )  # fmt: skip
        session.before_pause = before_pause
        self.pulled = pull_tls
        return session

    def offline(self, disks: list[Disk], bitmap: str | None) -> MemorySession:
        targets = {x.target for x in disks}
        dom = next(d for d in self.hv.domains.values() if {x.target for x in d.disks} >= targets)
        return MemorySession(
            self.hv, dom.uuid, [x.target for x in disks], None, bitmap, "none",
            lambda: False, None, offline=True,
        )  # fmt: skip

    def cleanup_stale(
        self, uri: str, vm_uuid: str, left: UnfinishedBackup | None = None
    ) -> list[str]:
        d = self.hv.dom(vm_uuid)
        if d.owner is not None and d.owner.alive:
            return ["a live vmvault process holds the VM: nothing done"]
        done: list[str] = []
        d.owner = None
        if d.job is not None:
            d.job = None
            done.append(f"aborted the stale backup job of {d.name}")
        if left is not None and left.checkpoint and left.checkpoint in d.checkpoints:
            done.append(
                f"the interrupted backup had created checkpoint {left.checkpoint} "
                "(not deleted here: only the catalog knows whether a recovery point uses it)"
            )
        if d.paused_by_backup and left is not None and left.may_have_paused:
            d.power, d.paused_by_backup = PowerState.RUNNING, False
            done.append(f"resumed {d.name} (paused by the interrupted backup)")
        if d.agent is not None and d.agent.frozen and d.agent.thaw():
            done.append(f"thawed {d.agent.filesystems} file system(s) of {d.name}")
        return done


class MemorySession:
    """One point in time of a memory domain (see the module docstring)."""

    def __init__(
        self,
        hv: MemoryHypervisor,
        vm_uuid: str,
        targets: list[str],
        checkpoint: str | None,
        incremental_from: str | None,
        quiesce: str,
        cancel: Callable[[], bool],
        in_window: Callable[[], None] | None,
        *,
        offline: bool = False,
        after_begin: Callable[[], None] | None = None,
        allow_pause: bool = True,
    ) -> None:
        self.hv = hv
        self.vm_uuid = vm_uuid
        self.targets = targets
        self.checkpoint = checkpoint
        self.incremental_from = incremental_from
        self.quiesce = quiesce
        self.cancel = cancel
        self.in_window = in_window
        self.after_begin = after_begin
        self.offline = offline
        #: False for a cluster-managed VM: never paused, not even after a failed freeze
        self.allow_pause = allow_pause
        self.alive = True
        self.taken = TakenPoint(method=Method.SAVED_STATE, reason="not taken yet")
        self.released = True
        self._sources: dict[str, MemorySource] = {}
        self._begun = False
        self.before_pause: Callable[[str], None] | None = None

    def __enter__(self) -> MemorySession:
        d = self.hv.dom(self.vm_uuid)
        if d.owner is not None and d.owner.alive:
            raise BackupJobRunning("another vmvault process holds the VM", vm=d.name, job="backup")
        d.owner = self
        self.hv.sessions.append(self)
        try:
            if self.offline:
                self._snapshot(d)
                self.taken = TakenPoint(Method.OFFLINE, "VM is shut off: its images are read")
            else:
                self._take(d)
        except BaseException:
            if self.alive:
                self._end(d, failed=True)
            raise
        return self

    def _take(self, d: MemoryDomain) -> None:
        if d.power is PowerState.SHUT_OFF:
            raise BackupVmNotRunning(vm=d.name, state="shut off")
        if d.job is not None:
            raise BackupJobRunning("backup job", vm=d.name, job="backup")
        if self.incremental_from is not None:
            if self.incremental_from not in d.checkpoints:
                raise CheckpointMissing("no such checkpoint", checkpoint=self.incremental_from)
            for t in self.targets:
                disk = d.disk(t)
                if disk.format == "qcow2" and self.incremental_from in disk.broken:
                    raise CheckpointMissing(
                        f"the bitmap of disk {t} is missing or inconsistent",
                        checkpoint=self.incremental_from,
                        vm=d.name,
                    )
        if self.checkpoint is not None and self.checkpoint in d.checkpoints:
            raise BackupBeginFailed(f"checkpoint {self.checkpoint} already exists", vm=d.name)
        if self.cancel():
            raise Cancelled(operation="the backup")
        running = d.power is PowerState.RUNNING
        warnings: list[str] = []
        frozen, fs, reason = False, 0, "taken as it is"
        method = Method.GUEST_QUIESCE if self.quiesce == "freeze" else Method.SAVED_STATE
        hooks = NOT_RUN
        pause = self.quiesce == "pause" and running
        if self.quiesce == "freeze":
            try:
                if d.agent is None:
                    raise FreezeFailed("the VM has no guest agent channel", vm=d.name)
                fs = d.agent.freeze(d.name)
                frozen, reason = True, f"the guest agent froze {fs} file system(s)"
                hooks = d.agent.hooks
            except VmvaultError as exc:
                # never a guest-quiesce point that was not frozen: saved-state instead
                if not self.allow_pause:
                    raise FreezeRequired(exc.text, vm=d.name) from None
                if self.before_pause is not None:
                    self.before_pause(exc.text)
                method, pause = Method.SAVED_STATE, True
                reason = f"the guest could not be frozen ({exc.text}): VM paused instead"
                warnings.append(reason)
        if pause:
            d.power, d.paused_by_backup = PowerState.PAUSED, True
            if self.quiesce == "pause":
                reason = "VM paused while the point in time was taken"
        try:
            if self.in_window is not None:
                self.in_window()
            self._snapshot(d)
            d.job = self
            if self.checkpoint is not None:
                d.checkpoints.append(self.checkpoint)
                for disk in d.disks:
                    if disk.target in self.targets and disk.format == "qcow2":
                        disk.bitmaps[self.checkpoint] = set()
            self._begun = True
            if self.after_begin is not None:
                self.after_begin()
        finally:
            if self.alive:  # a dead process releases nothing
                self.released = self._release(d)
        if not self.released:
            warnings.append("the thaw failed: the guest may still be frozen")
        if hooks.state is HookState.FAILED:
            warnings.append(f"application hook failed ({hooks.summary()}): file-system-consistent")
        self.taken = TakenPoint(
            method=method,
            reason=reason,
            frozen=frozen,
            fs_frozen=fs,
            frozen_ms=1 if frozen or self.quiesce == "freeze" else 0,
            paused_ms=1 if pause else 0,
            released=self.released,
            warnings=tuple(warnings),
            fsinfo=({"mountpoint": "/", "type": "ext4", "name": "vda1"},) if frozen else None,
            hooks=hooks,
        )
        if self.cancel():
            raise Cancelled(operation="the backup")

    def _release(self, d: MemoryDomain) -> bool:
        ok = True
        if d.agent is not None and d.agent.frozen:
            ok = d.agent.thaw()
        if d.paused_by_backup:
            d.power, d.paused_by_backup = PowerState.RUNNING, False
        return ok

    def _snapshot(self, d: MemoryDomain) -> None:
        for t in self.targets:
            disk = d.disk(t)
            dirty = None
            if self.incremental_from is not None and self.incremental_from in disk.bitmaps:
                dirty = set(disk.bitmaps[self.incremental_from])
            self._sources[t] = MemorySource(bytes(disk.data), dirty)

    def _end(self, d: MemoryDomain, failed: bool) -> None:
        if not self.released:
            self.released = self._release(d)
        if d.job is self:
            d.job = None
        if failed and self._begun and self.checkpoint in d.checkpoints:
            d.checkpoints.remove(self.checkpoint)
            for disk in d.disks:
                disk.bitmaps.pop(self.checkpoint or "", None)
        if d.owner is self:
            d.owner = None
        if self in self.hv.sessions:
            self.hv.sessions.remove(self)

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.alive:
            return  # the process died: nothing is ended, released or removed
        self._end(self.hv.domains[self.vm_uuid], failed=False)

    def source(self, target: str) -> Any:
        self.hv.alive()
        return self._sources[target]
