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
   ``work_dir/<uuid>/sock`` (owned by QEMU's user, 0750: QEMU creates the socket there) and
   ``work_dir/<uuid>/scratch`` (libvirt creates and labels the scratch files);
2. refuse a VM that is not running/paused (``BACKUP_VM_NOT_RUNNING``) or that already has a job
   (``BACKUP_JOB_RUNNING``);
3. incremental: the checkpoint must exist and QEMU must still have its bitmap on every qcow2
   disk it covers (``CHECKPOINT_MISSING`` otherwise).  Disks it does not cover (raw disks,
   disks added later) are exported *full* in the same job (per-disk ``backupmode='full'``);
4. ``guest-get-fsinfo`` (before the freeze: a frozen agent refuses almost everything);
5. the point in time: freeze → ``backupBegin`` → thaw (or suspend → ``backupBegin`` → resume),
   thaw/resume in a ``finally``.  A freeze that fails or times out is not fatal: the point is
   crash-consistent and ``point_in_time.freeze_error`` says why.  ``before_begin()`` is called
   in the window (guest frozen or paused) just before ``backupBegin``, then ``cancel()`` is
   asked: either may stop the backup there, and the guest is thawed / resumed with nothing
   begun;
6. connect nothing yet: :meth:`source` connects to a disk's export on first use.

If ``__enter__`` fails after ``backupBegin`` it aborts the job and deletes the new checkpoint
itself (the caller has nothing to clean).  ``__exit__`` never deletes the new checkpoint: a
caller whose recovery point did not commit deletes it (``checkpoints.delete_checkpoint``).

A vmvault process that dies mid-backup leaves a job whose socket lives under ``work_dir`` (and
maybe a frozen or paused guest): :func:`cleanup_stale` finds and ends it.  It uses the state
file ``work_dir/<uuid>/state.json`` that :class:`PullBackup` keeps up to date, and the lock to
tell a dead owner from a live one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import libvirt

from vmvault.domain.errors import (
    AgentCommandFailed,
    AgentFreezeTimeout,
    BackupAbortFailed,
    BackupBeginFailed,
    BackupJobRunning,
    BackupVmNotRunning,
    Cancelled,
    CheckpointMissing,
    FreezeFailed,
    InvalidInput,
    ThawFailed,
    VmvaultError,
    WorkDirUnusable,
)
from vmvault.hypervisor.host import untraversable
from vmvault.hypervisor.libvirt import agent
from vmvault.hypervisor.libvirt.checkpoints import checkpoint_coverage
from vmvault.hypervisor.libvirt.connection import lookup_domain, open_connection
from vmvault.hypervisor.nbd import DIRTY_BITMAP_PREFIX, NbdSource
from vmvault.hypervisor.offline import cleanup_stale_exports

QUIESCE_MODES = ("freeze", "pause", "none")
SOCKET_NAME = "nbd.sock"
STATE_NAME = "state.json"
LOCK_NAME = "lock"
_JOB_OPERATIONS = {
    1: "start",
    2: "save",
    3: "restore",
    4: "incoming migration",
    5: "outgoing migration",
    6: "snapshot",
    7: "snapshot revert",
    8: "dump",
    9: "backup",
    10: "snapshot delete",
}
_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "in no state",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended by the guest",
}


@dataclass(frozen=True)
class DiskSpec:
    """A disk to back up (the caller lists only those; the others get ``backup='no'``)."""

    target: str
    path: str
    format: str  # qcow2 | raw


@dataclass
class PointInTime:
    """How the point in time was taken."""

    frozen: bool = False  # the guest's file systems were frozen by the agent
    frozen_ms: int = 0  # freeze (or pause) window: freeze returned → thaw returned
    freeze_error: str | None = None  # why there was no freeze (crash-consistent)
    fs_frozen: int = 0  # file systems the agent froze
    paused: bool = False  # vmvault paused the VM for the point (quiesce="pause")
    checkpoint: str | None = None  # the checkpoint created with the point
    incremental_from: str | None = None
    fsinfo: list[dict[str, Any]] | None = None  # guest-get-fsinfo, before the freeze
    # --- beyond the contract ---
    freeze_error_code: str | None = None  # FREEZE_FAILED | AGENT_FREEZE_TIMEOUT | ...
    freeze_call_ms: int = 0  # how long fsFreeze took (the guest's fsfreeze hooks run in it)
    thaw_error: str | None = None  # set if the thaw failed: the guest may still be frozen
    quiesce: str = "freeze"
    was_paused: bool = False  # the VM was already paused (and stays so)
    began_at: float = 0.0  # epoch seconds of backupBegin
    full_disks: dict[str, str] = field(default_factory=dict)  # target -> why full (incremental)


# --- small helpers ---------------------------------------------------------------------------


def _msg(exc: libvirt.libvirtError) -> str:
    return str(exc.get_error_message() or exc)


def _name(dom: Any) -> str:
    try:
        return str(dom.name())
    except libvirt.libvirtError:
        return "?"


def job_info(dom: Any) -> tuple[int, str | None]:
    """(job type, operation name) of the domain's current job; type 0 = none."""
    try:
        stats = dom.jobStats(0)
    except libvirt.libvirtError:
        return 0, None
    jtype = int(stats.get("type", 0))
    if jtype == libvirt.VIR_DOMAIN_JOB_NONE:
        return 0, None
    op = stats.get("operation")
    return jtype, _JOB_OPERATIONS.get(int(op), f"operation {op}") if op is not None else "unknown"


def backup_socket(dom: Any) -> str | None:
    """The unix socket of the domain's running pull-mode backup job, if any."""
    try:
        root = ET.fromstring(dom.backupGetXMLDesc(0))
    except (libvirt.libvirtError, ET.ParseError):
        return None
    server = root.find("server")
    if server is None or server.get("transport", "tcp") != "unix":
        return None
    return server.get("socket")


def _qemu_owner(domain_xml: ET.Element) -> tuple[int, int]:
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


def _mkdir(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)


def _write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _try_lock(path: Path) -> IO[str] | None:
    """Open and ``flock`` ``path`` without blocking; None if another holder has it."""
    fh = open(path, "a+")  # noqa: SIM115 - held for the object's life
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def _retry(fn: Callable[[], Any], budget: float, stop: Callable[[Exception], bool]) -> Any:
    """Call ``fn`` until it succeeds, ``stop(exc)`` or the budget (s) is used; re-raise last."""
    deadline = time.monotonic() + budget
    delay = 0.1
    while True:
        try:
            return fn()
        except libvirt.libvirtError as exc:
            if stop(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def _agent_gone(exc: Exception) -> bool:
    """The agent cannot be reached at all (no channel / not connected): retrying is useless."""
    if not isinstance(exc, libvirt.libvirtError):
        return False
    text = _msg(exc)
    return exc.get_error_code() == libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED or (
        "not configured" in text or "not connected" in text
    )


# --- the backup job --------------------------------------------------------------------------


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
        work_dir: Path,
        quiesce: str = "freeze",
        freeze_timeout: int = 10,
        cancel: Callable[[], bool] | None = None,
        before_begin: Callable[[], None] | None = None,
        connections: int = 1,
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
        self.work_root = Path(work_dir).absolute()
        self.vm_dir = self.work_root / vm_uuid
        self.sock_dir = self.vm_dir / "sock"
        self.scratch_dir = self.vm_dir / "scratch"
        self.socket = self.sock_dir / SOCKET_NAME
        self.quiesce = quiesce
        self.freeze_timeout = int(freeze_timeout)
        self.cancel = cancel
        #: called with the guest frozen / paused, just before ``backupBegin``; may raise
        self.before_begin = before_begin
        self.connections = connections
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
        self._state: dict[str, Any] = {}
        self._exports: dict[str, tuple[str, str | None]] = {}
        self._sources: dict[str, NbdSource] = {}
        self._job_started = False
        self._checkpoint_created = False
        self._needs_thaw = False
        self._paused_by_us = False
        self._agent_silent = False
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
        )
        self._sources[target] = src
        return src

    # --- enter -----------------------------------------------------------------------------

    def _cancelled(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled(operation="the backup")

    def _at_point(self) -> None:
        """The last moment to stop before ``backupBegin`` (the guest is frozen or paused, if
        it was to be): the caller's hook, then a cancel check.  Raising here thaws / resumes
        the guest in the caller's ``finally``; nothing has been begun."""
        if self.before_begin is not None:
            self.before_begin()
        self._cancelled()

    def _save_state(self, **changes: Any) -> None:
        self._state.update(changes)
        with contextlib.suppress(OSError):
            _write_state(self.vm_dir / STATE_NAME, self._state)

    def _enter(self) -> None:
        pit = self.point_in_time
        self._conn = open_connection(self.uri)
        dom = self._dom = lookup_domain(self._conn, self.uri, self.vm_uuid)
        self._vm = _name(dom)

        # 1. work directories and the per-VM lock
        check_work_dir(self.work_root)
        try:
            _mkdir(self.work_root, 0o755)
            _mkdir(self.vm_dir, 0o755)
            _mkdir(self.scratch_dir, 0o755)
            _mkdir(self.sock_dir, 0o750)
        except OSError as exc:
            raise WorkDirUnusable(
                str(exc), path=str(self.vm_dir), culprit=str(self.vm_dir)
            ) from None
        self._lock = _try_lock(self.vm_dir / LOCK_NAME)
        if self._lock is None:
            raise BackupJobRunning(
                f"another vmvault process holds {self.vm_dir / LOCK_NAME}",
                vm=self._vm,
                job="vmvault backup",
            )

        # 2. state of the VM, foreign jobs
        state = dom.state()[0]
        if state not in (
            libvirt.VIR_DOMAIN_RUNNING,
            libvirt.VIR_DOMAIN_BLOCKED,
            libvirt.VIR_DOMAIN_PAUSED,
        ):
            raise BackupVmNotRunning(
                vm=self._vm, state=_STATE_NAMES.get(state, f"in state {state}")
            )
        jtype, op = job_info(dom)
        if jtype:
            sock = backup_socket(dom) if op == "backup" else None
            where = f" (NBD socket {sock})" if sock else ""
            raise BackupJobRunning(f"{op} job{where}", vm=self._vm, job=op or "unknown")
        running = state != libvirt.VIR_DOMAIN_PAUSED
        pit.was_paused = not running

        # the live XML: disks, QEMU's user, agent channel
        root = ET.fromstring(dom.XMLDesc(0))
        domain_disks = self._domain_disks(root)
        for d in self.disks:
            if d.target not in domain_disks:
                raise InvalidInput(
                    f"VM {self._vm} has no disk {d.target} (it has {', '.join(domain_disks)})",
                    what=f"disk {d.target}",
                )
        uid, gid = _qemu_owner(root)
        has_agent = agent.has_agent_channel(ET.tostring(root, encoding="unicode"))

        # 3. incremental: the checkpoint and its bitmaps, per disk mode
        coverage: dict[str, str] = {}
        if self.incremental_from:
            coverage = checkpoint_coverage(dom, self.incremental_from)
        for d in self.disks:
            fmt = domain_disks[d.target]
            if not self.incremental_from:
                self.modes[d.target] = "full"
            elif fmt != "qcow2":
                self.modes[d.target] = "full"
                pit.full_disks[d.target] = f"{fmt} disk: no checkpoints"
            elif coverage.get(d.target, "none") == "none":
                self.modes[d.target] = "full"
                pit.full_disks[d.target] = (
                    f"checkpoint {self.incremental_from} has no bitmap for it (disk added later?)"
                )
            elif coverage[d.target] == "broken":
                raise CheckpointMissing(
                    f"the bitmap of disk {d.target} is missing or inconsistent",
                    checkpoint=self.incremental_from,
                    vm=self._vm,
                )
            else:
                self.modes[d.target] = "incremental"
        if self.incremental_from and "incremental" not in self.modes.values():
            # nothing to be incremental about: a plain full backup (no <incremental>)
            self.incremental_from = pit.incremental_from = None
        if self.checkpoint and _has_checkpoint(dom, self.checkpoint):
            raise BackupBeginFailed(
                f"checkpoint {self.checkpoint} already exists (left by an earlier attempt?)",
                vm=self._vm,
            )
        backup_xml = self._backup_xml(domain_disks)
        checkpoint_xml = self._checkpoint_xml(domain_disks) if self.checkpoint else None

        # socket directory owned by QEMU's user; no leftover socket
        try:
            os.chown(self.sock_dir, uid, gid)
            os.chmod(self.sock_dir, 0o750)
            for p in (self.socket, *self.scratch_dir.glob("*.scratch")):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        except OSError as exc:
            raise WorkDirUnusable(
                str(exc), path=str(self.sock_dir), culprit=str(self.sock_dir)
            ) from None
        self._save_state(
            pid=os.getpid(),
            started=time.time(),
            vm=self._vm,
            uri=self.uri,
            socket=str(self.socket),
            checkpoint=self.checkpoint,
            phase="preparing",
            frozen_by_us=False,
            paused_by_us=False,
        )

        # 4. what the guest mounts (the agent refuses this while frozen)
        self._agent_silent = False
        if has_agent and running:
            try:
                pit.fsinfo = agent.fsinfo(dom, timeout=min(5, self.freeze_timeout))
            except AgentCommandFailed as exc:
                # "not responding": no need to ask again with a ping before the freeze
                self._agent_silent = "not responding" in exc.text or "not available" in exc.text
        self._cancelled()

        # 5. the point in time
        if self.quiesce == "freeze":
            self._take_frozen(dom, running, has_agent, backup_xml, checkpoint_xml)
        elif self.quiesce == "pause":
            self._take_paused(dom, running, backup_xml, checkpoint_xml)
        else:
            self._at_point()
            self._begin(dom, backup_xml, checkpoint_xml)
        if pit.thaw_error:
            self._save_state(phase="thaw-failed")
        self._read_exports(dom)
        self._cancelled()

    @staticmethod
    def _domain_disks(root: ET.Element) -> dict[str, str]:
        """target -> driver type of every disk of the live domain (in XML order)."""
        out: dict[str, str] = {}
        for el in root.findall("./devices/disk"):
            target = el.find("target")
            if target is None or not target.get("dev"):
                continue
            driver = el.find("driver")
            out[target.get("dev", "")] = (
                driver.get("type") if driver is not None else None
            ) or "raw"
        return out

    def _backup_xml(self, domain_disks: dict[str, str]) -> str:
        root = ET.Element("domainbackup", mode="pull")
        if self.incremental_from:
            ET.SubElement(root, "incremental").text = self.incremental_from
        ET.SubElement(root, "server", transport="unix", socket=str(self.socket))
        disks = ET.SubElement(root, "disks")
        wanted = {d.target for d in self.disks}
        for target in domain_disks:
            if target not in wanted:
                ET.SubElement(disks, "disk", name=target, backup="no")
                continue
            attrs = {"name": target, "backup": "yes", "type": "file"}
            if self.incremental_from:
                attrs["backupmode"] = self.modes[target]
                if self.modes[target] == "incremental":
                    attrs["incremental"] = self.incremental_from
            el = ET.SubElement(disks, "disk", attrs)
            ET.SubElement(el, "scratch", file=str(self.scratch_dir / f"{target}.scratch"))
        return ET.tostring(root, encoding="unicode")

    def _checkpoint_xml(self, domain_disks: dict[str, str]) -> str:
        root = ET.Element("domaincheckpoint")
        ET.SubElement(root, "name").text = self.checkpoint
        ET.SubElement(root, "description").text = "vmvault"
        disks = ET.SubElement(root, "disks")
        wanted = {d.target for d in self.disks}
        for target, fmt in domain_disks.items():
            mode = "bitmap" if target in wanted and fmt == "qcow2" else "no"
            ET.SubElement(disks, "disk", name=target, checkpoint=mode)
        return ET.tostring(root, encoding="unicode")

    def _begin(self, dom: Any, backup_xml: str, checkpoint_xml: str | None) -> None:
        try:
            dom.backupBegin(backup_xml, checkpoint_xml, 0)
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            if self.incremental_from and code in (
                libvirt.VIR_ERR_CHECKPOINT_INCONSISTENT,
                libvirt.VIR_ERR_NO_DOMAIN_CHECKPOINT,
            ):
                raise CheckpointMissing(
                    _msg(exc), checkpoint=self.incremental_from, vm=self._vm
                ) from None
            raise BackupBeginFailed(_msg(exc), vm=self._vm) from None
        self._job_started = True
        self._checkpoint_created = self.checkpoint is not None
        self.point_in_time.began_at = time.time()
        self._save_state(phase="begun")

    def _take_frozen(
        self, dom: Any, running: bool, has_agent: bool, backup_xml: str, checkpoint_xml: str | None
    ) -> None:
        pit = self.point_in_time
        if not has_agent:
            self._no_freeze(FreezeFailed("the VM has no guest agent channel", vm=self._vm))
        elif not running:
            self._no_freeze(FreezeFailed("the VM is paused: its agent cannot answer", vm=self._vm))
        elif self._agent_silent or not agent.ping(dom, timeout=min(5, self.freeze_timeout)):
            # not even sent: a hung agent would run a queued freeze later, with nobody to thaw
            self._no_freeze(
                AgentFreezeTimeout(
                    "the agent did not answer guest-ping",
                    vm=self._vm,
                    seconds=min(5, self.freeze_timeout),
                )
            )
        if pit.freeze_error_code is not None:
            self._at_point()
            self._begin(dom, backup_xml, checkpoint_xml)
            return
        t_frozen = 0.0
        with agent.response_timeout(dom, self.freeze_timeout):
            try:
                self._save_state(phase="freezing", frozen_by_us=True)
                self._needs_thaw = True  # even a failed freeze may land late in the guest
                t0 = time.monotonic()
                try:
                    pit.fs_frozen = int(dom.fsFreeze(None, 0))
                    t_frozen = time.monotonic()
                    pit.freeze_call_ms = round((t_frozen - t0) * 1000)
                    pit.frozen = pit.fs_frozen > 0
                    if not pit.frozen:
                        self._no_freeze(FreezeFailed("the agent froze no file system", vm=self._vm))
                    self._save_state(phase="frozen")
                except libvirt.libvirtError as exc:
                    pit.freeze_call_ms = round((time.monotonic() - t0) * 1000)
                    if exc.get_error_code() in (
                        libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                        libvirt.VIR_ERR_OPERATION_TIMEOUT,
                    ) and not _agent_gone(exc):
                        self._no_freeze(
                            AgentFreezeTimeout(_msg(exc), vm=self._vm, seconds=self.freeze_timeout)
                        )
                    else:
                        self._no_freeze(FreezeFailed(_msg(exc), vm=self._vm))
                        if _agent_gone(exc):
                            self._needs_thaw = False
                self._at_point()
                self._begin(dom, backup_xml, checkpoint_xml)
            finally:
                if self._needs_thaw:
                    self._thaw(dom)
                    if pit.frozen and t_frozen:
                        pit.frozen_ms = round((time.monotonic() - t_frozen) * 1000)

    def _no_freeze(self, err: VmvaultError) -> None:
        self.point_in_time.freeze_error = err.text
        self.point_in_time.freeze_error_code = err.code

    def _thaw(self, dom: Any) -> None:
        """Thaw with retries (``budget``: a slow agent gets several chances); never raises."""
        budget = max(10.0, 3.0 * self.freeze_timeout)
        try:
            _retry(lambda: dom.fsThaw(None, 0), budget, _agent_gone)
            self._needs_thaw = False
            self.point_in_time.thaw_error = None
            self._save_state(phase="thawed")
        except libvirt.libvirtError as exc:
            if _agent_gone(exc) and not self.point_in_time.frozen:
                self._needs_thaw = False  # nothing reached the guest
                return
            self.point_in_time.thaw_error = ThawFailed(_msg(exc), vm=self._vm).text

    def _take_paused(
        self, dom: Any, running: bool, backup_xml: str, checkpoint_xml: str | None
    ) -> None:
        pit = self.point_in_time
        if not running:  # a paused VM stays paused: it is already still
            self._at_point()
            self._begin(dom, backup_xml, checkpoint_xml)
            return
        self._save_state(phase="pausing", paused_by_us=True)
        try:
            dom.suspend()
        except libvirt.libvirtError as exc:
            self._save_state(phase="preparing", paused_by_us=False)
            raise BackupBeginFailed(f"cannot pause the VM: {_msg(exc)}", vm=self._vm) from None
        t0 = time.monotonic()
        self._paused_by_us = pit.paused = True
        try:
            self._at_point()
            self._begin(dom, backup_xml, checkpoint_xml)
        finally:
            self._resume(dom)
            pit.frozen_ms = round((time.monotonic() - t0) * 1000)

    def _resume(self, dom: Any) -> None:
        try:
            _retry(
                dom.resume,
                10.0,
                lambda exc: (
                    getattr(exc, "get_error_code", lambda: None)()
                    == libvirt.VIR_ERR_OPERATION_INVALID
                ),
            )
            self._paused_by_us = False
            self._save_state(phase="resumed", paused_by_us=False)
        except libvirt.libvirtError as exc:
            self.cleanup_errors.append(f"resume failed: {_msg(exc)}")

    def _read_exports(self, dom: Any) -> None:
        """Export name and bitmap of each disk, as libvirt reports them."""
        root = ET.fromstring(dom.backupGetXMLDesc(0))
        for el in root.findall("./disks/disk"):
            if el.get("backup") != "yes":
                continue
            target = el.get("name", "")
            self._exports[target] = (el.get("exportname") or target, el.get("exportbitmap"))
        missing = [d.target for d in self.disks if d.target not in self._exports]
        if missing:
            raise BackupBeginFailed(f"no export for {', '.join(missing)}", vm=self._vm)

    # --- cleanup ---------------------------------------------------------------------------

    def _cleanup(self, entering: bool) -> None:
        """Close, abort, thaw/resume, remove files; record problems, never raise."""
        dom = self._dom
        for src in self._sources.values():
            try:
                src.close()
            except Exception as exc:  # pragma: no cover - close swallows libnbd errors
                self.cleanup_errors.append(f"close {src.disk}: {exc}")
        self._sources.clear()
        if dom is not None:
            if self._needs_thaw:
                self._thaw(dom)
                if self.point_in_time.thaw_error:
                    self.cleanup_errors.append(self.point_in_time.thaw_error)
            if self._paused_by_us:
                self._resume(dom)
            if self._job_started:
                self._abort(dom)
            if entering and self._checkpoint_created and self.checkpoint and not self._job_started:
                try:
                    dom.checkpointLookupByName(self.checkpoint).delete(0)
                    self._checkpoint_created = False
                except libvirt.libvirtError as exc:
                    self.cleanup_errors.append(f"delete checkpoint {self.checkpoint}: {_msg(exc)}")
        if self._lock is not None:  # only the lock holder's files are ours to remove
            for p in (self.socket, *self.scratch_dir.glob("*.scratch")):
                with contextlib.suppress(OSError):
                    p.unlink()
            if not (self._job_started or self._needs_thaw or self._paused_by_us):
                # else kept: cleanup_stale finishes the job / thaw / resume later
                with contextlib.suppress(OSError):
                    (self.vm_dir / STATE_NAME).unlink()
            with contextlib.suppress(OSError):
                self._lock.close()
            self._lock = None
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None
            self._dom = None

    def _abort(self, dom: Any) -> None:
        """End our job (abortJob finishes a pull job) and wait until libvirt says it is gone."""
        deadline = time.monotonic() + 30
        while True:
            jtype, op = job_info(dom)
            if not jtype:
                self._job_started = False
                break
            if op != "backup" or backup_socket(dom) not in (str(self.socket), None):
                self._job_started = False  # not ours (any more): leave it
                break
            try:
                dom.abortJob()
            except libvirt.libvirtError as exc:
                if time.monotonic() > deadline:
                    self.cleanup_errors.append(f"abortJob: {_msg(exc)}")
                    return
            if time.monotonic() > deadline:
                self.cleanup_errors.append("the backup job did not end within 30 s")
                return
            time.sleep(0.05)


# --- stale jobs ------------------------------------------------------------------------------


def cleanup_stale(uri: str, vm_uuid: str, work_root: Path) -> list[str]:
    """End what a dead vmvault process left on VM ``vm_uuid``; returns what was done.

    * a backup job whose NBD socket lives under ``work_root`` is aborted (a job of anyone else
      is left alone and reported);
    * a guest frozen by that process is thawed, a VM it paused is resumed;
    * leftover socket, scratch and state files are removed, and stale offline exports
      (qemu-nbd) under ``work_root`` are stopped.

    Nothing is done while a live vmvault process holds the VM's lock.  The checkpoint the dead
    backup created is reported, not deleted: only the caller knows whether a recovery point
    uses it.
    """
    work_root = Path(work_root).absolute()
    vm_dir = work_root / vm_uuid
    done: list[str] = []
    lock: IO[str] | None = None
    if vm_dir.is_dir():
        lock = _try_lock(vm_dir / LOCK_NAME)
        if lock is None:
            return [f"a live vmvault process holds {vm_dir / LOCK_NAME}: nothing done"]
    try:
        state = _read_state(vm_dir / STATE_NAME)
        with contextlib.closing(open_connection(uri)) as conn:
            try:
                dom = conn.lookupByUUIDString(vm_uuid)
            except libvirt.libvirtError:
                dom = None
            if dom is not None:
                done += _cleanup_domain(dom, state, work_root)
        if vm_dir.is_dir():
            for p in (
                vm_dir / "sock" / SOCKET_NAME,
                *(vm_dir / "scratch").glob("*.scratch"),
                vm_dir / STATE_NAME,
            ):
                if p.exists():
                    with contextlib.suppress(OSError):
                        p.unlink()
                        if p.name != STATE_NAME:
                            done.append(f"removed {p}")
        done += cleanup_stale_exports(work_root)
    finally:
        if lock is not None:
            lock.close()
    return done


def _has_checkpoint(dom: Any, name: str) -> bool:
    try:
        dom.checkpointLookupByName(name)
        return True
    except libvirt.libvirtError:
        return False


def _cleanup_domain(dom: Any, state: dict[str, Any], work_root: Path) -> list[str]:
    done: list[str] = []
    name = _name(dom)
    ours = False
    jtype, op = job_info(dom)
    if jtype and op == "backup":
        sock = backup_socket(dom)
        if sock and Path(sock).absolute().is_relative_to(work_root):
            deadline = time.monotonic() + 30
            while job_info(dom)[0] and time.monotonic() < deadline:
                with contextlib.suppress(libvirt.libvirtError):
                    dom.abortJob()
                time.sleep(0.05)
            if job_info(dom)[0]:
                done.append(f"could not abort the stale backup job of {name} (socket {sock})")
            else:
                ours = True
                done.append(f"aborted the stale backup job of {name} (socket {sock})")
        else:
            done.append(f"left the backup job of {name} alone: not vmvault's (socket {sock})")
    elif jtype:
        done.append(f"left the {op} job of {name} alone")
    cp = state.get("checkpoint")
    if cp and _has_checkpoint(dom, cp) and (ours or state.get("phase") != "preparing"):
        done.append(
            f"the interrupted backup had created checkpoint {state['checkpoint']} "
            "(not deleted here: only the catalog knows whether a recovery point uses it)"
        )
    if state.get("paused_by_us"):
        try:
            st, reason = dom.state()
            if st == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_USER:
                dom.resume()
                done.append(f"resumed {name} (paused by the interrupted backup)")
        except libvirt.libvirtError as exc:
            done.append(f"could not resume {name}: {_msg(exc)}")
    try:
        running = dom.isActive() and dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED
    except libvirt.libvirtError:
        running = False
    if running and (state.get("frozen_by_us") or ours):
        try:
            status = agent.agent_command(dom, "guest-fsfreeze-status", timeout=5)
        except AgentCommandFailed:
            status = None
        if status == "frozen":
            try:
                with agent.response_timeout(dom, 10):
                    n = _retry(lambda: dom.fsThaw(None, 0), 20.0, _agent_gone)
                done.append(f"thawed {n} file system(s) of {name}")
            except libvirt.libvirtError as exc:
                done.append(f"could not thaw {name}: {_msg(exc)}")
    return done


__all__ = [
    "QUIESCE_MODES",
    "DiskSpec",
    "PointInTime",
    "PullBackup",
    "backup_socket",
    "check_work_dir",
    "cleanup_stale",
    "job_info",
]
