"""Ports: the contracts services need from adapters, all in this one module on purpose.

It is longer than our modules usually are because it is the one page an adapter's author
reads: every contract, with its docstring, in one place (the vault's storage contract is
``vmvault.storage.backend``).  Each is a :class:`typing.Protocol`; the real implementations
live in ``vmvault.persistence`` (SQLAlchemy catalog) and ``vmvault.hypervisor`` (libvirt, the
host's files); the in-memory ones, which unit tests of services pass to the composition root,
in ``vmvault.hypervisor.memory``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from vmvault.dataplane.index import DiskIndex
from vmvault.dataplane.source import ExtentSource
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.audit import AuditEntry
from vmvault.domain.inventory import AgentReport
from vmvault.domain.job import Job, JobState, JobType, JournalStep
from vmvault.domain.metrics import LastBackup
from vmvault.domain.notification import Channel, Delivery, Event, Message, Outgoing, Target
from vmvault.domain.policy import Policy
from vmvault.domain.recovery_point import (
    CheckpointRecord,
    DamagedDisk,
    PointCopy,
    RecoveryPoint,
    TakenPoint,
    UnfinishedBackup,
)
from vmvault.domain.restore import DomainShape, FreeSpace, LiveDomain, RestorePlan, XmlNic
from vmvault.domain.soft_delete import Deletion, SoftDelete
from vmvault.domain.tokens import ApiToken
from vmvault.domain.vault import Host, S3Location, Vault
from vmvault.domain.vm import Disk, DomainFacts, VmItem


class VaultRepository(Protocol):
    def get(self, name: str) -> Vault | None: ...
    def all(self) -> list[Vault]: ...
    def add(
        self,
        name: str,
        location: str,
        path: str,
        now: datetime,
        key_file: str | None = None,
        s3: S3Location | None = None,
    ) -> Vault: ...
    def set_soft_delete(self, name: str, setting: SoftDelete) -> None:
        """Store the vault's soft-delete setting (docs/soft-delete.md)."""


class HostRepository(Protocol):
    def get(self, uri: str) -> Host | None: ...
    def all(self, location: str | None = None) -> list[Host]: ...
    def add(self, uri: str, location: str, hostname: str | None, now: datetime) -> Host: ...
    def remove(self, uri: str) -> None: ...
    def set_hostname(self, uri: str, hostname: str) -> None: ...
    def set_cluster_managed(self, uri: str, vms: Sequence[str]) -> None:
        """Replace the host's list of cluster-managed VMs (names or uuids)."""


class VmRepository(Protocol):
    def get(self, uuid: str) -> VmItem | None: ...
    def all(self, host_uris: Sequence[str] | None = None) -> list[VmItem]: ...
    def save(self, vm: VmItem) -> None:
        """Insert or update the VM item (keyed by uuid)."""

    def save_facts(self, vm: VmItem) -> None:
        """Update only the discovery facts of an existing VM item (a backup's commit: the
        operator's changes made while it ran — excluded disks, cluster ownership,
        protection — stay)."""


class PointRepository(Protocol):
    def add(self, point: RecoveryPoint) -> None: ...
    def get(self, point_id: str) -> RecoveryPoint | None: ...
    def for_vm(
        self, vm_uuid: str, vault: str | None = None, *, deleted: bool | None = False
    ) -> list[RecoveryPoint]:
        """Newest first.  ``deleted``: False (default) the points held normally in their own
        vault, True those soft-deleted there, None both."""

    def in_vault(self, vault: str, *, deleted: bool | None = False) -> list[RecoveryPoint]:
        """The points whose own vault is ``vault`` (``deleted`` as :meth:`for_vm`)."""

    def in_set(self, set_id: str) -> list[RecoveryPoint]:
        """The points of one backup set (``set_id``), by VM name."""

    def delete(self, point_id: str) -> None: ...
    def set_pinned(self, point_id: str, protected: bool, keep_until: datetime | None) -> None:
        """Set the point's pin (never pruned) and its keep-until date."""

    def record_restore_test(self, point_id: str, result: dict[str, Any]) -> None:
        """Keep the latest restore test's result (JSON) on the point."""

    def restore_test(self, point_id: str) -> dict[str, Any] | None:
        """The latest restore test's result of the point, if it was ever tested."""

    # --- copies (docs/copies.md) ---
    def move(
        self,
        point_id: str,
        vault: str,
        damaged: Sequence[DamagedDisk] | None,
        deleted: Deletion | None = None,
    ) -> None:
        """Make ``vault`` (a vault holding a copy) the point's own vault, with that copy's
        damage record and soft deletion: what deleting the point from its own vault does when
        copies exist."""

    def set_deleted(self, point_id: str, deleted: Deletion | None) -> None:
        """Mark the point's holding in its own vault soft-deleted (None: held normally)."""


class CheckpointRepository(Protocol):
    def add(self, record: CheckpointRecord) -> None: ...
    def for_vm(self, vm_uuid: str) -> list[CheckpointRecord]:
        """Oldest first."""

    def delete(self, name: str) -> None: ...


class JobRepository(Protocol):
    def create(
        self,
        job_type: JobType,
        vault: str,
        vm_uuid: str | None,
        vm_name: str | None,
        state: JobState,
        now: datetime,
        pid: int | None,
        conflict_key: str | None,
        request: dict[str, Any] | None = None,
        origin: str | None = None,
        parent_id: int | None = None,
    ) -> Job:
        """Insert a job (``parent_id``: the set job it belongs to).  MUST raise :class:`~vmvault.domain.job.JobConflict` when ``conflict_key`` is held by
        another active job (atomically: two concurrent creates never both succeed).  A job
        created in a final state holds no key."""

    def get(self, job_id: int) -> Job | None: ...
    def queued(self, limit: int = 100) -> list[Job]:
        """Queued jobs, oldest first."""

    def active(self) -> list[Job]:
        """Queued, in-progress and cancelling jobs, oldest first."""

    def claim(self, job_id: int, pid: int, now: datetime) -> bool:
        """Atomically move a queued job to in-progress for process ``pid``; False when it is
        no longer queued (cancelled, or claimed by another worker)."""

    def holder(self, conflict_key: str) -> Job | None:
        """The active job that holds ``conflict_key``, if any."""

    def find(
        self,
        job_type: JobType | None = None,
        state: JobState | None = None,
        since: datetime | None = None,
        vm_uuid: str | None = None,
        limit: int = 500,
        parent_id: int | None = None,
        offset: int = 0,
        vault: str | None = None,
    ) -> list[Job]:
        """Newest first, ``limit`` of them after skipping ``offset``; ``parent_id``: only the
        children of that set job; ``vault``: only that vault's jobs."""

    def count(
        self,
        job_type: JobType | None = None,
        state: JobState | None = None,
        since: datetime | None = None,
        vm_uuid: str | None = None,
        parent_id: int | None = None,
        vault: str | None = None,
    ) -> int:
        """How many jobs :meth:`find` selects with the same filters, without limit."""

    def update(self, job: Job) -> None:
        """Persist state, times, progress, warnings and error; clears the conflict key when
        the state is final."""

    def append_log(self, job_id: int, line: str, now: datetime) -> None: ...
    def log(self, job_id: int) -> list[str]: ...
    def record_step(self, job_id: int, step: str, data: dict[str, Any], now: datetime) -> None:
        """Append a step to the job's journal (in the caller's transaction)."""

    def steps(self, job_id: int) -> list[JournalStep]:
        """The job's journal, in the order the steps were recorded."""


class PointCopyRepository(Protocol):
    """Copies of points in vaults other than their own, and damage found by verify."""

    def add(self, copy: PointCopy) -> None: ...
    def get(self, point_id: str, vault: str) -> PointCopy | None: ...
    def of_point(self, point_id: str, *, deleted: bool | None = False) -> list[PointCopy]:
        """By vault name; ``deleted``: False (default) held normally, True soft-deleted,
        None both."""

    def in_vault(self, vault: str, *, deleted: bool | None = False) -> list[PointCopy]: ...
    def remove(self, point_id: str, vault: str) -> None: ...
    def set_deleted(self, point_id: str, vault: str, deleted: Deletion | None) -> None:
        """Mark the copy in ``vault`` soft-deleted (None: held normally)."""

    def set_damaged(
        self, point_id: str, vault: str, damage: Sequence[DamagedDisk] | None
    ) -> None: ...


class TokenRepository(Protocol):
    """API tokens (domain/tokens.py): the catalog keeps a secret's SHA-256, never the secret."""

    def get(self, name: str) -> ApiToken | None: ...
    def by_public_id(self, public_id: str) -> tuple[ApiToken, str] | None:
        """The token with this public id and its secret's SHA-256 (hex), revoked or not."""

    def all(self) -> list[ApiToken]:
        """Every token, revoked ones included, by name."""

    def add(self, token: ApiToken, secret_sha256: str) -> None:
        """Insert; MUST raise (the catalog's unique constraint) when the name is taken."""

    def set_last_used(self, name: str, when: datetime) -> None: ...
    def set_revoked(self, name: str, when: datetime) -> None: ...


class AuditRepository(Protocol):
    """The audit log: append-only (nothing updates or deletes an entry)."""

    def add(self, entry: AuditEntry) -> None: ...
    def find(
        self, actor: str | None, since: datetime | None, limit: int, offset: int
    ) -> tuple[list[AuditEntry], int]:
        """Entries of ``actor`` at or after ``since``, newest first, a page of them (``limit``
        from ``offset``), and how many match in all."""


class UnitOfWork(Protocol):
    """A catalog transaction: ``with uow_factory() as uow: ...; uow.commit()``.

    Leaving the block without :meth:`commit` rolls back.
    """

    @property
    def vaults(self) -> VaultRepository: ...
    @property
    def hosts(self) -> HostRepository: ...
    @property
    def vms(self) -> VmRepository: ...
    @property
    def jobs(self) -> JobRepository: ...
    @property
    def points(self) -> PointRepository: ...
    @property
    def checkpoints(self) -> CheckpointRepository: ...
    @property
    def copies(self) -> PointCopyRepository: ...
    @property
    def policies(self) -> PolicyRepository: ...
    @property
    def schedules(self) -> ScheduleRepository: ...
    @property
    def tokens(self) -> TokenRepository: ...
    @property
    def audit(self) -> AuditRepository: ...
    @property
    def notifications(self) -> NotificationRepository: ...
    @property
    def stats(self) -> CatalogStats: ...

    def __enter__(self) -> UnitOfWork: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class Hypervisor(Protocol):
    """Read-only view of libvirt hosts that discovery and registration need."""

    def hostname(self, uri: str) -> str:
        """Connect and return the host's name; raise HostUnreachable on failure."""

    def list_domains(self, uri: str) -> list[DomainFacts]:
        """Every domain (running or not) of the host, as facts."""

    def domain_facts(self, uri: str, uuid: str) -> DomainFacts | None:
        """Current facts of one domain, ``None`` when the host has no such domain."""

    def agent_report(self, uri: str, uuid: str, timeout: int) -> AgentReport:
        """Ask the guest agent guest-ping then guest-info; never raises for a silent agent."""


class LabDriver(Protocol):
    """Builds and runs the lab's test guests (only the ``vmvault lab`` commands use it)."""

    def ensure_daemons(self, state_dir: Path) -> bool: ...
    def build(self, force: bool) -> str: ...
    def up(self, counts: dict[str, int]) -> list[dict[str, object]]: ...
    def status(self) -> list[dict[str, object]]: ...
    def down(self) -> list[str]: ...


class ObjectStoreLab(Protocol):
    """The lab's real S3 service (only ``vmvault lab storage`` uses it): one single-node Ceph
    cluster with the RADOS Gateway, everything under one directory.

    ``up`` is idempotent: a running cluster gives the same endpoint and keys, a partly running
    one has its missing daemons started. Its document holds at least ``endpoint``,
    ``access_key``, ``secret_key``, ``region`` and ``dir``. ``status`` has ``state`` (up, down
    or partial), ``dir``, ``endpoint`` (None before the first complete ``up``) and ``daemons``.
    ``down`` stops every daemon and removes the directory (False when there was none).
    Failures raise :class:`~vmvault.domain.errors.StorageLabFailed` with the daemon's log tail.
    """

    def up(self) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any]: ...
    def down(self) -> bool: ...


# --- protection (added by protection engineer) ---------------------------------------------


class PolicyRecord(Protocol):
    """A stored policy: the policy itself, the vault it belongs to, and when it changed."""

    @property
    def name(self) -> str: ...
    @property
    def vault(self) -> str: ...
    @property
    def policy(self) -> Policy: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


class PolicyRepository(Protocol):
    """Policies by name (names are unique across vaults)."""

    def get(self, name: str) -> PolicyRecord | None: ...
    def all(self, vault: str | None = None) -> Sequence[PolicyRecord]:
        """Sorted by name."""

    def add(self, vault: str, policy: Policy, now: datetime) -> PolicyRecord:
        """Insert; the caller has checked that the name is free."""

    def update(self, policy: Policy, now: datetime) -> None:
        """Replace the definition of the policy named ``policy.name``."""

    def delete(self, name: str) -> None: ...


class ScheduleRepository(Protocol):
    """The scheduler's progress: the last slot handled per schedule name."""

    def last(self, name: str) -> datetime | None: ...
    def advance(
        self, name: str, old: datetime | None, new: datetime, key: str | None, now: datetime
    ) -> bool:
        """Compare-and-set ``old`` → ``new`` (``old=None``: first record).  False when another
        scheduler got there first: the caller must then create nothing."""


# --- backup: the point in time and the disks' sources --------------------------------------


class Source(ExtentSource, Protocol):
    """A disk of the point in time: readable, and for an incremental, its dirty extents."""

    def dirty_extents(self) -> list[tuple[int, int]]: ...


class BackupDriver(Protocol):
    """What a backup needs from the hypervisor (``vmvault.hypervisor.libvirt.backup_driver``
    implements it over libvirt, ``vmvault.hypervisor.memory`` in memory)."""

    def checkpoints(self, uri: str, vm_uuid: str) -> list[str]:
        """The VM's checkpoints, oldest first."""

    def checkpoint_xml(self, uri: str, vm_uuid: str, name: str) -> str: ...
    def redefine_checkpoint(self, uri: str, vm_uuid: str, xml: str) -> None:
        """Bring back a checkpoint whose metadata was lost; MUST refuse
        (``CHECKPOINT_MISSING``) one whose bitmaps are gone."""

    def delete_checkpoint(self, uri: str, vm_uuid: str, name: str) -> None:
        """Delete one of vmvault's checkpoints (a missing one is a no-op)."""

    def checkpoint_problems(
        self, uri: str, vm_uuid: str, name: str, targets: list[str]
    ) -> list[str]:
        """Why checkpoint ``name`` cannot serve an incremental of ``targets`` ([] = it can)."""

    def disk_sizes(self, uri: str, vm_uuid: str) -> dict[str, int]:
        """Virtual size (capacity) of every disk of the domain, by target."""

    def domain_xml(self, uri: str, vm_uuid: str) -> str: ...
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
    ) -> PointSession:
        """The point in time of a running or paused VM, taken when the session is entered.

        With ``quiesce="freeze"`` a freeze that fails or times out is never fatal by itself
        and never yields a ``guest-quiesce`` point: the guest is thawed (verified with
        ``guest-fsfreeze-status`` when the agent answers), then — if ``allow_pause`` —
        ``before_pause(reason)`` is called (the guest is released: it may journal) and the
        point is taken ``saved-state`` (pause → backup job → resume).  ``allow_pause=False``
        (a VM a cluster manager owns): the VM MUST NOT be paused — ``quiesce='pause'`` is
        refused with ``CLUSTER_MANAGED_NO_PAUSE`` before anything is begun, and a failed
        freeze MUST raise ``FREEZE_REQUIRED`` with nothing left behind.

        ``cancel()`` is asked before the guest is frozen or paused and again once it is
        released (it may read the catalog) — never inside the window.  ``in_window()`` MUST
        be called with the guest frozen (or paused) just before the backup job begins, and
        nowhere else; it does no I/O.  ``after_begin()`` MUST be called with the guest still
        frozen (or paused) right after the backup job has begun (its checkpoint created), and
        nowhere else; it does no catalog I/O but may block for a bounded time (a backup
        set waits there until every VM of the set holds its point in time).  When either hook
        or ``cancel()`` raises, the guest MUST be thawed / resumed first, and no job or
        checkpoint left behind (a job begun is aborted, its new checkpoint deleted)."""

    def offline(self, disks: list[Disk], bitmap: str | None) -> PointSession: ...
    def cleanup_stale(
        self, uri: str, vm_uuid: str, left: UnfinishedBackup | None = None
    ) -> list[str]:
        """End what a dead vmvault process left on the VM (its backup job, a frozen or paused
        guest, work files, offline exports); what was done, one line each.  ``left`` is what
        the dead backup's journal says (None: unknown).  MUST do nothing while a live process
        is backing the VM up.  Leaves checkpoints alone."""


class PointSession(Protocol):
    """A point in time being read: a context manager yielding per-disk sources.

    After ``__enter__``, :attr:`taken` says how the point was taken (the typed hand-off: method
    and reason, frozen window, warnings, log notes, fsinfo).  :attr:`released` is False while
    the guest may still be frozen or paused because a thaw / resume failed (``__exit__``
    tries once more)."""

    @property
    def taken(self) -> TakenPoint: ...
    @property
    def released(self) -> bool: ...

    def __enter__(self) -> PointSession: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def source(self, target: str) -> Source: ...


# --- restore: defining, switching and testing VMs -------------------------------------------


class RestoreDriver(Protocol):
    """What a restore needs from the hypervisor (``vmvault.hypervisor.libvirt.restore``;
    in memory: ``vmvault.hypervisor.memory.restore``).

    Failures are :class:`~vmvault.domain.errors.VmvaultError` s naming the VM:
    ``RESTORE_SHUTDOWN_FAILED``, ``RESTORE_DEFINE_FAILED`` (define and undefine),
    ``RESTORE_START_FAILED``, ``RESTORE_VERIFY_FAILED`` (``image_size``), ``HOST_UNREACHABLE``.
    """

    def is_local(self, uri: str) -> bool: ...
    def default_dir(self, uri: str) -> Path:
        """The host's default image directory (pool ``default``, else /var/lib/libvirt/images)."""

    def refresh_default_pool(self, uri: str) -> None: ...
    def dir_problem(self, path: Path) -> str | None:
        """Why ``path`` cannot take restored disks (not writable, QEMU cannot enter it)."""

    def nic_problem(self, uri: str, nic: XmlNic) -> str | None:
        """Why ``nic`` cannot be attached as it was on ``uri`` (its network/bridge is gone)."""

    def used_macs(self, uri: str) -> set[str]: ...
    def inspect(self, xml: str) -> DomainShape: ...
    def render(self, xml: str, plan: RestorePlan) -> str: ...
    def domain_named(self, uri: str, name: str) -> str | None: ...
    def domain(self, uri: str, uuid: str) -> LiveDomain | None:
        """The domain as defined now (``None``: the host has no such domain)."""

    def shutdown(self, uri: str, uuid: str, timeout: float) -> str:
        """Shut the domain off (agent, else ACPI; forced after ``timeout`` s; a paused
        domain at once); returns how, for the job log."""

    def undefine(self, uri: str, uuid: str) -> None:
        """Undefine a shut-off domain with its checkpoint metadata and managed-save image,
        keeping NVRAM and TPM state (``--replace`` defines the same VM again)."""

    def define(self, uri: str, xml: str) -> str:
        """Define (or redefine) the domain; returns its uuid."""

    def start(self, uri: str, uuid: str) -> None: ...
    def wait_for_agent(self, uri: str, uuid: str, timeout: float) -> bool:
        """True once the guest agent answers; False when the domain stops or time runs out."""

    def guest_filesystems(self, uri: str, uuid: str) -> list[dict[str, Any]] | None:
        """``guest-get-fsinfo`` now, or ``None`` when the agent does not answer."""

    def console_tail(self, uri: str, uuid: str, lines: int = 20) -> str: ...
    def remove(self, uri: str, uuid: str) -> None:
        """Destroy and undefine a domain with its metadata, NVRAM and TPM state; a domain
        that is gone already is not an error."""

    def image_size(self, path: Path, fmt: str, target: str) -> int:
        """Virtual size of the image at ``path`` as QEMU reads it (a qcow2 must also pass
        its check), else ``RESTORE_VERIFY_FAILED``."""


class HostFiles(Protocol):
    """The file system of the host whose VM is restored: every file a restore makes,
    moves or removes outside the vault goes through this port (``vmvault.hypervisor.files``;
    in memory: ``vmvault.hypervisor.memory.files``).

    Paths are absolute.  A failure is an :class:`OSError` with its ``errno``
    (``FileNotFoundError``, ``FileExistsError``, ``EXDEV``, ``ENOSPC`` …); nothing is retried.
    "Durable" means the change survives a power loss once the call has returned (the
    directory holding it is synced), which is what start-up recovery relies on.
    """

    def exists(self, path: Path) -> bool:
        """Anything at ``path``: a file, a directory or a symlink (also a dangling one)."""

    def free_space(self, path: Path) -> FreeSpace:
        """The file system ``path`` is on, or would be on once created."""

    def make_dirs(self, path: Path) -> list[Path]:
        """Create ``path`` and its missing parents, mode 0755 whatever the umask (QEMU must
        traverse them), durable; returns the directories made, outermost first."""

    def remove_dir(self, path: Path) -> bool:
        """Remove ``path`` if it is an empty directory; False when it is missing or not
        empty (nothing done)."""

    def rename(self, src: Path, dst: Path) -> None:
        """Move ``src`` onto ``dst`` (replacing it): atomic — callers only rename within one
        directory, so within one file system (``EXDEV`` otherwise) — and durable."""

    def symlink(self, link: Path, target: Path) -> None:
        """Make ``link`` point at ``target``, durable; ``FileExistsError`` if ``link`` exists."""

    def copy(self, src: Path, dst: Path) -> None:
        """Copy the contents of file ``src`` to ``dst`` (created or replaced); an unreadable
        ``src`` raises and leaves no ``dst``."""

    def remove(self, path: Path) -> bool:
        """Remove the file or symlink at ``path``; False when nothing was there."""

    def names(self, directory: Path, prefix: str) -> list[Path]:
        """The entries of ``directory`` whose names start with ``prefix``, sorted; [] when the
        directory does not exist."""


class WrittenImage(Protocol):
    """What writing one disk image reports (``dataplane.restore.RestoreResult``)."""

    @property
    def bytes_written(self) -> int: ...
    @property
    def chunks_written(self) -> int: ...
    @property
    def chunks_zero(self) -> int: ...
    @property
    def seconds(self) -> float: ...


class DiskWriter(Protocol):
    """Writes one disk of a point as an image on the host: ``dataplane.restore.restore_disk``.

    The image is written to a partial file ``.<name>.tmp.<pid>.<hex>`` next to ``target``,
    synced and renamed onto it; on any failure the partial file is removed (a killed process
    leaves it: recovery removes it by that name).  Every chunk is checked against its id as it
    is read (``CHUNK_CORRUPT``, ``CHUNK_MISSING``); ``cancel()`` is asked between chunks and a
    True raises ``Cancelled``.
    """

    def __call__(
        self,
        store: VaultStore,
        index: DiskIndex,
        target: Path,
        *,
        fmt: str,
        workers: int,
        overwrite: bool,
        progress: Callable[[int, int], None] | None,
        cancel: Callable[[], bool] | None,
    ) -> WrittenImage: ...


# --- notifications and metrics (docs/notifications.md, docs/metrics.md) ----------------------


class NotificationRepository(Protocol):
    """Notification targets and the outbox of messages to deliver to them."""

    def add_target(
        self, vault: str, channel: Channel, address: str, events: Sequence[Event], now: datetime
    ) -> Target: ...
    def target(self, target_id: int) -> Target | None: ...
    def targets(self, vault: str | None = None) -> list[Target]:
        """Oldest first; all vaults' when ``vault`` is None."""

    def remove_target(self, target_id: int) -> None:
        """Remove the target and its messages, delivered or not."""

    def enqueue(self, target: Target, message: Message, now: datetime) -> bool:
        """Add ``message`` for ``target``, due now, in the caller's transaction.  MUST add
        nothing (and return False) when the target already has a message with the same
        ``message.key``, whatever its state: that is what makes an overdue episode notify
        once."""

    def due(self, now: datetime, limit: int = 50) -> list[Outgoing]:
        """Pending messages whose next attempt is due, oldest first."""

    def outbox(self, limit: int = 100, target_id: int | None = None) -> list[Outgoing]:
        """The newest messages, newest first."""

    def mark(
        self,
        outgoing_id: int,
        state: Delivery,
        attempts: int,
        next_attempt_at: datetime,
        error: str | None,
        sent_at: datetime | None,
    ) -> None: ...
    def prune(self, before: datetime) -> int:
        """Delete the ``sent`` and ``failed`` messages created before ``before`` (never a
        pending one); how many."""


class CatalogStats(Protocol):
    """Aggregates of the catalog for ``/metrics``, computed by the database: the cost of a
    scrape grows with the number of VMs, never with the number of jobs ever run."""

    def job_counts(self) -> dict[tuple[str, str], int]:
        """Jobs by ``(type, state)``."""

    def last_backups(self) -> list[LastBackup]:
        """Per VM with an ended backup job: the newest one and its newest good one's end."""


class NotificationSender(Protocol):
    """Delivers one message to one target, once (``vmvault.notify``): a webhook is a JSON
    POST of ``message.doc`` answered 2xx within the timeout; an e-mail is accepted by the SMTP
    server for the address.  Anything else MUST raise
    :class:`~vmvault.domain.errors.NotifyDeliveryFailed` (its ``detail`` says why, never a
    password) or, for e-mail without an SMTP server configured,
    :class:`~vmvault.domain.errors.SmtpNotConfigured`.  Retries are the caller's: the
    outbox tries again later."""

    def send(self, target: Target, message: Message) -> None: ...
