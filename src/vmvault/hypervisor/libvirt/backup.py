"""One libvirt pull-mode backup job: the point in time of a running (or paused) VM.

::

    with PullBackup(uri, vm_uuid, disks, checkpoint="vmvault-P2", incremental_from="vmvault-P1",
                    work_dir=Path("/var/lib/vmvault/run")) as pb:
        pb.point_in_time          # frozen?, window, checkpoint, fsinfo ...
        src = pb.source("vda")    # NbdSource: size, extents(), pread_into(), dirty_extents()
        ...                       # read every disk
    # the job is aborted (that is how a pull job ends), socket and scratch files are gone

``__enter__``, in order (everything that can be checked is checked before the guest is
touched):

1. lock ``work_dir/<uuid>/lock`` (one vmvault backup per VM on this host), prepare
   ``sock/`` and ``scratch/`` (:mod:`~vmvault.hypervisor.libvirt.rundir`);
2. refuse a VM that is not running/paused (``BACKUP_VM_NOT_RUNNING``) or that already has a job
   (``BACKUP_JOB_RUNNING``);
3. incremental: the checkpoint must exist and QEMU must still have its bitmap on every qcow2
   disk it covers (``CHECKPOINT_MISSING`` otherwise).  Disks it does not cover (raw disks,
   disks added later) are exported *full* in the same job (per-disk ``backupmode='full'``);
4. ``guest-get-fsinfo`` (before the freeze: a frozen agent refuses almost everything), then
   ``cancel()`` is asked;
5. the point in time (:mod:`~vmvault.hypervisor.libvirt.quiesce`): freeze → ``backupBegin`` →
   thaw (or suspend → ``backupBegin`` → resume), thaw/resume always.  Before a freeze a token
   is written into the guest and after the thaw its hook dispatcher's report is read
   (:mod:`~vmvault.hypervisor.libvirt.hooks`: application-consistent or not).  A freeze that
   fails or times out is not fatal, and is never a ``guest-quiesce`` point: the guest is
   thawed — verified with ``guest-fsfreeze-status`` when the agent answers — and, if
   ``allow_pause``, ``before_pause(reason)`` is called and the point taken **saved-state**
   (suspend → ``backupBegin`` → resume; ``point_in_time.fallback_reason`` says why); if not,
   ``FREEZE_REQUIRED`` with nothing begun.  Inside the window only ``in_window()`` (in
   memory: it must not block or do I/O), ``backupBegin`` and ``after_begin()`` (a backup
   set's bounded wait for its other VMs) run; if ``in_window()`` raises, the guest is thawed /
   resumed with nothing begun; if ``after_begin()`` raises, the guest is thawed / resumed,
   the job aborted and the new checkpoint deleted;
6. once the guest is released, ``cancel()`` is asked again (it may read a catalog); connect
   nothing yet: :meth:`source` connects to a disk's export on first use.

**A pull** (``pull=PullTarget(address, certificates, point)``: a VM of a host no node runs
on, domain/pull.py) differs in a few places only: before anything, the client PKI
directory must be usable (:mod:`~vmvault.hypervisor.pull_dir`; ``PULL_TLS_FAILED``
otherwise) and every disk backed up an image file (``PULL_DISK_NOT_FILE``), the guest
untouched; then, each in :mod:`~vmvault.hypervisor.libvirt.pulljob`,
the job serves on TCP with TLS at ``address`` and a port of
:data:`~vmvault.domain.pull.PULL_PORTS` picked at random, its exports named
``vmvault-<POINT>-<target>``, each scratch file next to its disk's image on that host
(``IMAGE.vmvault-<POINT>.scratch``: libvirt creates and removes it); :meth:`source` reads
with TLS required.  The run directory here keeps only its lock.

If ``__enter__`` fails after ``backupBegin`` it aborts the job and deletes the new checkpoint
itself (the caller has nothing to clean).  ``__exit__`` never deletes the new checkpoint: a
caller whose recovery point did not commit deletes it (``checkpoints.delete_checkpoint``).

A vmvault process that dies mid-backup leaves a job whose socket lives under ``work_dir`` (and
maybe a frozen or paused guest): :func:`~vmvault.hypervisor.libvirt.stale.cleanup_stale` ends
it, told by the caller what the dead backup was doing (its journal), and using the lock to
tell a dead owner from a live one.
"""

from __future__ import annotations

import contextlib
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import IO, Any

import libvirt

from vmvault.domain.errors import (
    AgentCommandFailed,
    BackupAbortFailed,
    BackupBeginFailed,
    BackupJobRunning,
    Cancelled,
    CheckpointMissing,
    InvalidInput,
)
from vmvault.domain.pull import PullTarget
from vmvault.hypervisor.libvirt import agent, backup_xml, hooks
from vmvault.hypervisor.libvirt.checkpoints import checkpoint_coverage
from vmvault.hypervisor.libvirt.connection import error_message, lookup_domain, open_connection
from vmvault.hypervisor.libvirt.domxml import has_agent_channel, parse_disks
from vmvault.hypervisor.libvirt.jobcontrol import (
    BackupServer,
    domain_name,
    end_backup_job,
    has_checkpoint,
    refuse_unless_ready,
)
from vmvault.hypervisor.libvirt.pulljob import begin_on_a_port, is_our_pull, pulled_disks
from vmvault.hypervisor.libvirt.quiesce import (
    QUIESCE_MODES,
    Window,
    freeze_or_pause,
    pause_window,
    resume,
    thaw,
    why_not_freeze,
)
from vmvault.hypervisor.libvirt.rundir import RunDir, check_work_dir
from vmvault.hypervisor.nbd import DIRTY_BITMAP_PREFIX, NbdSource, NbdTls, check_client_files


@dataclass(frozen=True)
class DiskSpec:
    """A disk to back up (the caller lists only those; the others get ``backup='no'``)."""

    target: str
    path: str
    format: str  # qcow2 | raw


@dataclass
class PointInTime(Window):
    """How the point in time was taken: the window (:class:`~.quiesce.Window`: frozen,
    fs_frozen, frozen_ms, paused_ms, freeze_error …) and the rest of the job."""

    checkpoint: str | None = None  # the checkpoint created with the point
    incremental_from: str | None = None
    fsinfo: list[dict[str, Any]] | None = None  # guest-get-fsinfo, before the freeze
    was_paused: bool = False  # the VM was already paused (and stays so)
    began_at: float = 0.0  # epoch seconds of backupBegin
    full_disks: dict[str, str] = field(default_factory=dict)  # target -> why full (incremental)
    pulled_from: str | None = None  # a pull's NBD server, ADDRESS:PORT (TLS)


class PullBackup:
    """Context manager around one libvirt pull-mode backup job (see the module docstring)."""

    def __init__(
        self,
        uri: str,
        vm_uuid: str,
        disks: list[DiskSpec],
        *,
        checkpoint: str | None,
        incremental_from: str | None,
        work_dir: Any,
        quiesce: str = "freeze",
        freeze_timeout: int = 10,
        cancel: Callable[[], bool] | None = None,
        in_window: Callable[[], None] | None = None,
        after_begin: Callable[[], None] | None = None,
        connections: int = 1,
        allow_pause: bool = True,
        before_pause: Callable[[str], None] | None = None,
        pull: PullTarget | None = None,
    ) -> None:
        if quiesce not in QUIESCE_MODES:
            raise InvalidInput(
                f"choose from {', '.join(QUIESCE_MODES)}", what=f"quiesce {quiesce!r}"
            )
        if not disks:
            raise InvalidInput("give at least one disk", what="disk list")
        targets = [d.target for d in disks]
        if len(set(targets)) != len(targets):
            raise InvalidInput("a disk is listed twice", what=f"disks {targets}")
        for d in disks:
            if d.format not in ("qcow2", "raw"):
                raise InvalidInput("use qcow2 or raw", what=f"format {d.format!r} of {d.target}")
        if freeze_timeout < 1:
            raise InvalidInput("use at least 1 second", what=f"freeze timeout {freeze_timeout}")
        self.uri = uri
        self.vm_uuid = vm_uuid
        self.disks = list(disks)
        self.checkpoint = checkpoint
        self.incremental_from = incremental_from
        self.run = RunDir.of(work_dir, vm_uuid)
        self.work_root = self.run.root
        self.vm_dir = self.run.path
        self.sock_dir = self.run.sock_dir
        self.scratch_dir = self.run.scratch_dir
        self.socket = self.run.socket
        self.quiesce = quiesce
        self.freeze_timeout = int(freeze_timeout)
        self.cancel = cancel
        #: called with the guest frozen / paused, just before ``backupBegin``; may raise; must
        #: not block or do I/O (it runs inside the window)
        self.in_window = in_window
        #: called with the guest still frozen / paused right after ``backupBegin``; may raise
        #: (then the job is aborted and the new checkpoint deleted); may block, bounded
        self.after_begin = after_begin
        #: False (a cluster-managed VM): the guest MUST NOT be paused — a failed freeze fails
        #: the backup (FREEZE_REQUIRED); the caller refuses ``quiesce='pause'`` itself
        self.allow_pause = allow_pause
        #: called with the reason before a saved-state fallback pauses the VM (guest released)
        self.before_pause = before_pause
        self.connections = connections
        #: read over TCP with TLS from a remote host (domain/pull.py); None: the unix socket
        self.pull = pull
        #: the pull's NBD server once the job runs
        self.tls: NbdTls | None = None
        self.point_in_time = PointInTime(
            checkpoint=checkpoint, incremental_from=incremental_from, quiesce=quiesce
        )
        #: target -> "full" | "incremental" once the job runs
        self.modes: dict[str, str] = {}
        #: problems met while cleaning up (never raised over an original exception)
        self.cleanup_errors: list[str] = []
        self._conn: Any = None
        self._dom: Any = None
        self._lock: IO[str] | None = None
        self._exports: dict[str, tuple[str, str | None]] = {}
        self._sources: dict[str, NbdSource] = {}
        self._job_started = False
        self._checkpoint_created = False
        self._agent_silent = False
        self._token: str | None = None
        self._unarmed: str | None = None
        self._vm = vm_uuid

    # --- context manager -------------------------------------------------------------------

    def __enter__(self) -> PullBackup:
        try:
            self._enter()
        except BaseException:
            self._cleanup(entering=True)
            raise
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._cleanup(entering=False)
        if t is None and self._job_started:
            # nothing else is in flight: a job we could not end must be known
            raise BackupAbortFailed("; ".join(self.cleanup_errors), vm=self._vm)

    # --- sources ---------------------------------------------------------------------------

    def source(self, target: str) -> NbdSource:
        """The export of disk ``target`` (connected on first use, closed by ``__exit__``)."""
        if target in self._sources:
            return self._sources[target]
        if target not in self._exports:
            raise InvalidInput(
                f"this backup exports {', '.join(self._exports) or 'nothing'}",
                what=f"disk {target}",
            )
        export, bitmap = self._exports[target]
        src = NbdSource(
            self.socket,
            export,
            disk=f"{self._vm}/{target}",
            dirty_context=f"{DIRTY_BITMAP_PREFIX}{bitmap}" if bitmap else None,
            connections=self.connections,
            tls=self.tls,
            cancel=self.cancel,
        )
        self._sources[target] = src
        return src

    # --- enter -----------------------------------------------------------------------------

    def _cancelled(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled(operation="the backup")

    def _enter(self) -> None:
        pit = self.point_in_time
        if self.pull is not None:  # before anything: the guest untouched
            check_client_files(self.pull.certificates, self.pull.address, self.vm_uuid)
        self._conn = open_connection(self.uri)
        dom = self._dom = lookup_domain(self._conn, self.uri, self.vm_uuid)
        self._vm = domain_name(dom)

        # 1. work directories and the per-VM lock
        check_work_dir(self.work_root)
        self.run.create()
        self._lock = self.run.try_lock()
        if self._lock is None:
            raise BackupJobRunning(
                f"another vmvault process holds {self.run.lock_path}",
                vm=self._vm,
                job="vmvault backup",
            )

        # 2. state of the VM, foreign jobs
        running = refuse_unless_ready(dom, self._vm)
        pit.was_paused = not running

        # the live XML: disks, QEMU's user, agent channel
        root = ET.fromstring(dom.XMLDesc(0))
        parsed = [d for d in parse_disks(root) if d.target]
        domain_disks = {d.target: d.driver_format for d in parsed}
        for d in self.disks:
            if d.target not in domain_disks:
                raise InvalidInput(
                    f"VM {self._vm} has no disk {d.target} (it has {', '.join(domain_disks)})",
                    what=f"disk {d.target}",
                )
        has_agent = has_agent_channel(root)
        wanted = [d.target for d in self.disks]
        pulled = None
        if self.pull is not None:  # PULL_DISK_NOT_FILE before the guest is touched
            pulled = pulled_disks(self.pull, parsed, wanted, vm=self._vm, uri=self.uri)

        # 3. incremental: the checkpoint and its bitmaps, per disk mode
        self._plan_modes(dom, domain_disks)
        if self.checkpoint and has_checkpoint(dom, self.checkpoint):
            raise BackupBeginFailed(
                f"checkpoint {self.checkpoint} already exists (left by an earlier attempt?)",
                vm=self._vm,
            )
        bxml = partial(
            backup_xml.backup_xml,
            domain_disks,
            wanted,
            socket=self.socket,
            scratch_dir=self.scratch_dir,
            incremental_from=self.incremental_from,
            modes=self.modes,
            pulled=pulled,
        )
        cxml = (
            backup_xml.checkpoint_xml(self.checkpoint, domain_disks, wanted)
            if self.checkpoint
            else None
        )
        if self.pull is None:
            self.run.hand_to_qemu(root)  # socket directory owned by QEMU's user; no leftovers

        # 4. what the guest mounts (the agent refuses this while frozen)
        self._agent_silent = False
        if has_agent and running:
            try:
                pit.fsinfo = agent.fsinfo(dom, timeout=min(5, self.freeze_timeout))
            except AgentCommandFailed as exc:
                # "not responding": no need to ask again with a ping before the freeze
                self._agent_silent = "not responding" in exc.text or "not available" in exc.text
            if self.quiesce == "freeze" and not self._agent_silent:
                self._token, self._unarmed = hooks.arm(dom, timeout=min(5, self.freeze_timeout))
        self._cancelled()

        # 5. the point in time: only the hook and backupBegin inside the window
        if self.quiesce == "freeze":
            why = why_not_freeze(
                dom,
                self._vm,
                running=running,
                has_agent=has_agent,
                agent_silent=self._agent_silent,
                timeout=self.freeze_timeout,
            )
            freeze_or_pause(
                dom,
                self._vm,
                pit,
                why=why,
                running=running,
                timeout=self.freeze_timeout,
                allow_pause=self.allow_pause,
                before_pause=self.before_pause,
                cancelled=self._cancelled,
                hold=partial(self._hold_and_begin, dom, bxml, cxml),
                report=lambda: hooks.report(dom, self._token, self._unarmed),
            )
        else:
            with self._window(dom, running):
                self._hold_and_begin(dom, bxml, cxml)

        # 6. the guest is released: a cancel asked meanwhile is seen here
        self._cancelled()
        self._exports = backup_xml.exports(dom.backupGetXMLDesc(0))
        missing = [d.target for d in self.disks if d.target not in self._exports]
        if missing:
            raise BackupBeginFailed(f"no export for {', '.join(missing)}", vm=self._vm)
        self._cancelled()

    def _hold_and_begin(self, dom: Any, bxml: Callable[..., str], cxml: str | None) -> None:
        """Inside the window: the caller's in-memory hook, then ``backupBegin``, then
        ``after_begin()`` (a backup set's bounded wait for its other VMs)."""
        if self.in_window is not None:
            self.in_window()
        self._begin(dom, bxml, cxml)
        if self.after_begin is not None:
            self.after_begin()

    def _window(self, dom: Any, running: bool) -> AbstractContextManager[Any]:
        """Pause (``quiesce="pause"``) or nothing: the window of a point without a freeze."""
        if self.quiesce == "pause" and running:
            return pause_window(dom, self._vm, self.point_in_time)
        return nullcontext()  # "none", or a paused VM: it is already still, and stays paused

    def _plan_modes(self, dom: Any, domain_disks: dict[str, str]) -> None:
        """Per disk, ``full`` or ``incremental`` (``CHECKPOINT_MISSING`` when a covered bitmap
        is broken); an incremental with no incremental disk becomes a plain full backup."""
        coverage = checkpoint_coverage(dom, self.incremental_from) if self.incremental_from else {}
        targets = [d.target for d in self.disks]
        plan = backup_xml.disk_modes(domain_disks, targets, self.incremental_from, coverage)
        if plan.broken is not None:
            raise CheckpointMissing(
                f"the bitmap of disk {plan.broken} is missing or inconsistent",
                checkpoint=self.incremental_from,
                vm=self._vm,
            )
        self.modes.update(plan.modes)
        self.point_in_time.full_disks.update(plan.full_disks)
        if self.incremental_from and "incremental" not in self.modes.values():
            # nothing to be incremental about: a plain full backup (no <incremental>)
            self.incremental_from = self.point_in_time.incremental_from = None

    def _begin(self, dom: Any, bxml: Callable[..., str], cxml: str | None) -> None:
        """``backupBegin`` with the XML ``bxml(tls_server=…)`` makes (a pull's on a port
        :func:`~vmvault.hypervisor.libvirt.pulljob.begin_on_a_port` picks)."""
        try:
            if self.pull is None:
                dom.backupBegin(bxml(tls_server=None), cxml, 0)
            else:
                self.tls = begin_on_a_port(
                    self.pull,
                    lambda server: dom.backupBegin(bxml(tls_server=server), cxml, 0),
                    created=lambda: bool(self.checkpoint and has_checkpoint(dom, self.checkpoint)),
                )
        except libvirt.libvirtError as exc:
            said = error_message(exc)
            if self.incremental_from and exc.get_error_code() in (
                libvirt.VIR_ERR_CHECKPOINT_INCONSISTENT,
                libvirt.VIR_ERR_NO_DOMAIN_CHECKPOINT,
            ):
                raise CheckpointMissing(
                    said, checkpoint=self.incremental_from, vm=self._vm
                ) from None
            raise BackupBeginFailed(said, vm=self._vm) from None
        self._job_started = True
        self._checkpoint_created = self.checkpoint is not None
        self.point_in_time.began_at = time.time()
        self.point_in_time.pulled_from = str(self.tls) if self.tls is not None else None

    # --- cleanup ---------------------------------------------------------------------------

    def _cleanup(self, entering: bool) -> None:
        """Close, abort, thaw/resume, remove files; record problems, never raise."""
        dom = self._dom
        pit = self.point_in_time
        for src in self._sources.values():
            try:
                src.close()
            except Exception as exc:  # pragma: no cover - close swallows libnbd errors
                self.cleanup_errors.append(f"close {src.disk}: {exc}")
        self._sources.clear()
        if dom is not None:
            if pit.needs_thaw:
                thaw(dom, self._vm, pit, budget=max(10.0, 3.0 * self.freeze_timeout))
                if pit.thaw_error:
                    self.cleanup_errors.append(pit.thaw_error)
            if pit.needs_resume:
                resume(dom, pit)
            if pit.resume_error:
                self.cleanup_errors.append(pit.resume_error)
            if self._job_started:
                self._abort(dom)
            if entering and self._checkpoint_created and self.checkpoint and not self._job_started:
                try:
                    dom.checkpointLookupByName(self.checkpoint).delete(0)
                    self._checkpoint_created = False
                except libvirt.libvirtError as exc:
                    self.cleanup_errors.append(
                        f"delete checkpoint {self.checkpoint}: {error_message(exc)}"
                    )
        if self._lock is not None:  # only the lock holder's files are ours to remove
            self.run.remove_leftovers()
            with contextlib.suppress(OSError):
                self._lock.close()
            self._lock = None
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None
            self._dom = None

    def _abort(self, dom: Any) -> None:
        """End our job (abortJob finishes a pull job) and wait until libvirt says it is gone;
        a job that is not ours (any more) is left alone."""
        end = end_backup_job(dom, self._ours)
        if end.ended:
            self._job_started = False
        elif end.error:
            self.cleanup_errors.append(end.error)

    def _ours(self, server: BackupServer | None) -> bool:
        """Our job's NBD server: our socket, or our pull's address and port (None: libvirt
        could not say — the job we began)."""
        if server is None:
            return True
        if self.tls is not None and self.pull is not None:
            return is_our_pull(server, self.tls, self.pull)
        return server.socket == str(self.socket)


__all__ = ["QUIESCE_MODES", "DiskSpec", "PointInTime", "PullBackup", "check_work_dir"]
