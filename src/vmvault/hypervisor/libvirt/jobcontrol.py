"""libvirt job control for pull-mode backups: what job a domain runs, where its NBD server is,
and ending our job.

A pull-mode backup job never ends by itself: ``abortJob()`` is how it *ends* (libvirt then
removes the scratch files and the new checkpoint stays).  :func:`end_backup_job` aborts the
domain's backup job only while it is ours — its NBD socket is the one we gave, or lives under
our work directory; or, for a pull over TCP with TLS (domain/pull.py), its server is the one we
gave and every export carries the point of our backup (the live one's, or an unfinished one's
in the journal) — and waits until ``jobStats`` says the domain has no job.  The live
backup (:class:`~vmvault.hypervisor.libvirt.backup.PullBackup`) and the clean-up after a dead
process (:mod:`~vmvault.hypervisor.libvirt.stale`) both end jobs with it.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libvirt

from vmvault.domain.errors import BackupJobRunning, BackupVmNotRunning
from vmvault.domain.pull import pulled_for
from vmvault.hypervisor.libvirt.connection import error_message

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

#: How long :func:`end_backup_job` waits for libvirt to drop an aborted job.
ABORT_WAIT = 30.0


def domain_name(dom: Any) -> str:
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


@dataclass(frozen=True)
class BackupServer:
    """The NBD server of a running pull-mode backup job (``backupGetXMLDesc``)."""

    transport: str  # unix | tcp
    socket: str | None = None
    address: str | None = None
    port: int | None = None
    tls: bool = False
    exports: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.transport == "unix":
            return f"NBD socket {self.socket}"
        return f"NBD server {self.address}:{self.port}{' with TLS' if self.tls else ''}"

    def pulled_for(self, point: str) -> bool:
        """The job of the pull of recovery point ``point`` (domain/pull.py): TCP with TLS,
        every export named for that point."""
        return self.transport == "tcp" and self.tls and pulled_for(self.exports, point)


def backup_server(dom: Any) -> BackupServer | None:
    """The NBD server of the domain's running pull-mode backup job, if any."""
    try:
        root = ET.fromstring(dom.backupGetXMLDesc(0))
    except (libvirt.libvirtError, ET.ParseError):
        return None
    server = root.find("server")
    if server is None:
        return None
    exports = tuple(
        el.get("exportname") or el.get("name") or ""
        for el in root.findall("./disks/disk")
        if el.get("backup") == "yes"
    )
    port = server.get("port")
    return BackupServer(
        transport=server.get("transport", "tcp"),
        socket=server.get("socket"),
        address=server.get("name"),
        port=int(port) if port and port.isdigit() else None,
        tls=server.get("tls") == "yes",
        exports=exports,
    )


def has_checkpoint(dom: Any, name: str) -> bool:
    try:
        dom.checkpointLookupByName(name)
        return True
    except libvirt.libvirtError:
        return False


def refuse_unless_ready(dom: Any, vm: str) -> bool:
    """A backup job can begin: the VM runs or is paused (``BACKUP_VM_NOT_RUNNING``) and has
    no job (``BACKUP_JOB_RUNNING``, naming it and, for a backup job, its socket).  Returns
    whether it is running (False: paused)."""
    state = dom.state()[0]
    if state not in (
        libvirt.VIR_DOMAIN_RUNNING,
        libvirt.VIR_DOMAIN_BLOCKED,
        libvirt.VIR_DOMAIN_PAUSED,
    ):
        raise BackupVmNotRunning(vm=vm, state=_STATE_NAMES.get(state, f"in state {state}"))
    jtype, op = job_info(dom)
    if jtype:
        server = backup_server(dom) if op == "backup" else None
        where = f" ({server})" if server else ""
        raise BackupJobRunning(f"{op} job{where}", vm=vm, job=op or "unknown")
    return bool(state != libvirt.VIR_DOMAIN_PAUSED)


@dataclass(frozen=True)
class JobEnd:
    """What :func:`end_backup_job` found and did."""

    ended: bool  # the domain has no job of ours any more (ended now, or there was none)
    aborted: bool  # we called abortJob and the job went away
    foreign: str | None = None  # a job that is not ours was left alone: which
    error: str | None = None  # why our job could not be ended
    server: BackupServer | None = None  # the NBD server of the job we aborted


def end_backup_job(
    dom: Any, ours: Callable[[BackupServer | None], bool], *, wait: float = ABORT_WAIT
) -> JobEnd:
    """Abort the domain's backup job if ``ours(server)`` says it is ours, and wait until
    libvirt says there is no job (at most ``wait`` seconds).  Any other job — another
    operation, or a backup whose NBD server is not ours — is left alone and named in
    :attr:`JobEnd.foreign`.  Never raises."""
    deadline = time.monotonic() + wait
    aborted = False
    last_error: str | None = None
    mine: BackupServer | None = None
    while True:
        jtype, op = job_info(dom)
        if not jtype:
            return JobEnd(ended=True, aborted=aborted, server=mine)
        if op != "backup":
            return JobEnd(ended=True, aborted=aborted, foreign=f"{op} job", server=mine)
        server = backup_server(dom)
        if not ours(server):
            return JobEnd(
                ended=True, aborted=aborted, foreign=f"backup job ({server})", server=mine
            )
        mine = server or mine
        try:
            dom.abortJob()
            aborted = True
        except libvirt.libvirtError as exc:
            last_error = f"abortJob: {error_message(exc)}"
        if time.monotonic() > deadline:
            why = last_error or f"the backup job did not end within {wait:.0f} s"
            return JobEnd(ended=False, aborted=aborted, error=why, server=mine)
        time.sleep(0.05)


__all__ = [
    "ABORT_WAIT",
    "BackupServer",
    "JobEnd",
    "backup_server",
    "domain_name",
    "end_backup_job",
    "has_checkpoint",
    "job_info",
]
