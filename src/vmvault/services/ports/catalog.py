"""The catalog's contracts: one repository per table group and the unit of work that
holds them (``vmvault.persistence`` implements them over SQLAlchemy).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from vmvault.domain.approval import ApprovalRequest, ApprovalSetting, RequestState
from vmvault.domain.audit import AuditEntry
from vmvault.domain.immutability import ImmutableMode
from vmvault.domain.job import Job, JobState, JobType, JournalStep
from vmvault.domain.metrics import LastBackup, WindowTally
from vmvault.domain.notification import Channel, Delivery, Event, Message, Outgoing, Target
from vmvault.domain.policy import Policy
from vmvault.domain.recovery_point import (
    BinnedTotals,
    CheckpointRecord,
    DamagedDisk,
    HeldTotals,
    PointCopy,
    RecoveryPoint,
)
from vmvault.domain.soft_delete import Deletion, SoftDelete
from vmvault.domain.tokens import ApiToken
from vmvault.domain.vault import Host, S3Location, Vault
from vmvault.domain.vm import VmItem, VmState, WatchedVm
from vmvault.services.ports.nodes import LeaseRepository, NodeRepository


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
    ) -> Vault:
        """Insert; ``VaultExists`` when the name is taken, also by a vault another writer
        committed while this one waited for it."""

    def set_soft_delete(self, name: str, setting: SoftDelete) -> None:
        """Store the vault's soft-delete setting (docs/soft-delete.md)."""

    def set_approvals(self, name: str, setting: ApprovalSetting) -> None:
        """Store the vault's approval setting (docs/approvals.md)."""

    def remove(self, name: str) -> None:
        """Delete the vault's row (``vault delete``: its points and copies are gone first)."""

    def set_immutable(self, name: str, mode: ImmutableMode) -> None:
        """Store the vault's immutability (docs/immutability.md)."""


class HostRepository(Protocol):
    def get(self, uri: str) -> Host | None: ...
    def all(self, location: str | None = None) -> list[Host]: ...
    def add(
        self,
        uri: str,
        location: str,
        hostname: str | None,
        now: datetime,
        pull_tls: str | None = None,
    ) -> Host:
        """``pull_tls``: the host is backed up by pulling (domain/pull.py).  ``HostExists``
        when the URI is known, also by a row another writer committed meanwhile."""

    def remove(self, uri: str) -> None: ...
    def set_hostname(self, uri: str, hostname: str) -> None: ...
    def set_cluster_managed(self, uri: str, vms: Sequence[str]) -> None:
        """Replace the host's list of cluster-managed VMs (names or uuids)."""

    def set_pull_tls(self, uri: str, pull_tls: str | None) -> None:
        """Mark the host pulled from with this client PKI directory, or (None) backed up by
        its own node (domain/pull.py)."""


class VmRepository(Protocol):
    def get(self, uuid: str) -> VmItem | None: ...
    def all(
        self,
        host_uris: Sequence[str] | None = None,
        *,
        vault: str | None = None,
        state: VmState | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[VmItem]:
        """The VMs of ``host_uris``, registered with ``vault``, in ``state`` (None: any), by
        name; ``limit`` of them after ``offset`` (None: all).  One query, whatever the number
        of VMs."""

    def count(
        self,
        host_uris: Sequence[str] | None = None,
        *,
        vault: str | None = None,
        state: VmState | None = None,
    ) -> int:
        """How many VMs :meth:`all` selects without a page."""

    def tally(self, host_uris: Sequence[str]) -> list[tuple[VmState, str | None, bool, int]]:
        """How many VMs of ``host_uris`` there are by (state, vault name, vanished)."""

    def labels_by_policy(self, policies: Sequence[str]) -> dict[str, list[str]]:
        """The labels of the VMs naming each of ``policies`` (sorted; one query, two columns)."""

    def watched(self, host_uris: Sequence[str], vault: str) -> list[WatchedVm]:
        """The VMs of ``host_uris`` that ``vault`` protects, only what the attention rule
        reads of each (one query, no disks or NICs), by name."""

    def save(self, vm: VmItem) -> None:
        """Insert or update the VM item (keyed by uuid), in one statement: two writers of a
        VM new to the catalog never both insert it."""

    def add_if_new(self, vm: VmItem) -> bool:
        """Insert ``vm`` unless a VM of its uuid exists — also one another writer committed
        while this one waited for it, left as written: whether it was added."""

    def save_many(self, vms: Sequence[VmItem]) -> None:
        """:meth:`save` of every VM of ``vms`` in a few statements, whatever their number; a
        VM read as new that another writer inserted meanwhile (two discoveries of vaults of
        one location) is left as that writer wrote it."""

    def seen(self, uuids: Sequence[str], at: datetime) -> None:
        """Set ``last_seen`` of these VMs to ``at``, nothing else (a discovery's VMs that
        are as they were), in a few statements whatever their number."""

    def save_facts(self, vm: VmItem) -> None:
        """Update only the discovery facts of an existing VM item (a backup's commit: the
        operator's changes made while it ran — excluded disks, cluster ownership,
        protection — stay)."""


class PointRepository(Protocol):
    def add(self, point: RecoveryPoint) -> None: ...
    def add_many(self, points: Sequence[RecoveryPoint]) -> None:
        """:meth:`add` of many points in one statement (``executemany``)."""

    def add_if_new(self, point: RecoveryPoint) -> bool:
        """:meth:`add` unless a point of its id exists — also one another writer committed
        while this one waited for it: whether it was added."""

    def get(self, point_id: str) -> RecoveryPoint | None: ...
    def for_vm(
        self, vm_uuid: str, vault: str | None = None, *, deleted: bool | None = False
    ) -> list[RecoveryPoint]:
        """Newest first.  ``deleted``: False (default) the points held normally in their own
        vault, True those soft-deleted there, None both."""

    def in_vault(self, vault: str, *, deleted: bool | None = False) -> list[RecoveryPoint]:
        """The points whose own vault is ``vault`` (``deleted`` as :meth:`for_vm`)."""

    def held(
        self, vault: str, vm_uuid: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[RecoveryPoint]:
        """The points ``vault`` holds normally — its own and its copies of other vaults'
        points, not soft-deleted there — of one VM or all, newest first; ``limit`` of them
        after ``offset`` (None: all).  One query."""

    def count_held(self, vault: str, vm_uuid: str | None = None) -> int:
        """How many points :meth:`held` selects without a page."""

    def in_set(self, set_id: str) -> list[RecoveryPoint]:
        """The points of one backup set (``set_id``), by VM name."""

    def delete(self, point_id: str) -> None: ...
    def set_pinned(self, point_id: str, protected: bool, keep_until: datetime | None) -> None:
        """Set the point's pin (never pruned) and its keep-until date."""

    def set_retain_until(self, point_id: str, until: datetime | None) -> None:
        """Set the point's retain-until (docs/immutability.md)."""

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
        node: str | None = None,
        lease_until: datetime | None = None,
    ) -> Job:
        """Insert a job (``parent_id``: the set job it belongs to).  MUST raise :class:`~vmvault.domain.job.JobConflict` when ``conflict_key`` is held by
        another active job (atomically: two concurrent creates never both succeed).  A job
        created in a final state holds no key."""

    def create_queued(self, rows: list[dict[str, Any]], now: datetime) -> list[Job] | None:
        """Insert many queued jobs with their first log line in a few statements (``rows``:
        ``type, vault, vm_uuid, vm_name, conflict_key, request, origin, log``); the jobs in
        the order of ``rows``, or None with nothing inserted when a conflict key is held
        (the caller then creates them one by one, as :meth:`create` reports each conflict)."""

    def holders(self, conflict_keys: list[str]) -> dict[str, Job]:
        """The active job holding each of ``conflict_keys`` that one holds, by key."""

    def latest(self, job_type: JobType) -> dict[str, Job]:
        """Each VM's newest job of ``job_type``, by VM uuid (one query)."""

    def last_ended(self, vault: str) -> datetime | None:
        """When the newest ended job of ``vault`` ended (None: none has)."""

    def count_by_state(self, since: datetime, vault: str) -> dict[JobState, int]:
        """How many of ``vault``'s jobs created at ``since`` or later are in each state."""

    def ended_by_day(
        self, job_type: JobType, start: datetime, days: int, vault: str
    ) -> list[tuple[int, int]]:
        """Per day from ``start``: how many of ``vault``'s jobs of ``job_type`` created that
        day completed (with or without warnings), and how many failed (one row of sums)."""

    def get(self, job_id: int) -> Job | None: ...
    def queued(self, limit: int = 100) -> list[Job]:
        """Queued jobs, oldest first."""

    def active(self) -> list[Job]:
        """Queued, in-progress and cancelling jobs, oldest first."""

    def hold_starts(self) -> None:
        """Until this unit of work ends, no job is created, claimed or changes state in
        another (they wait): what the caller reads of the active jobs then stays true until
        it commits (``host update``'s switch, services/host_pull.py)."""

    def claim_next(
        self,
        pid: int,
        now: datetime,
        node: str | None = None,
        lease_until: datetime | None = None,
        host: str | None = None,
    ) -> Job | None:
        """Atomically move the oldest queued job to in-progress for ``node`` (process ``pid``)
        with its lease; None when none is queued.  Two concurrent claimers never get the same
        job, and one never waits for the job another is claiming (``SKIP LOCKED``).
        ``host`` (the node's libvirt URI): only jobs of no VM, of that host's VMs, or of VMs
        of hosts where no node runs."""

    def renew(self, node: str, job_ids: list[int], lease_until: datetime) -> int:
        """Extend the lease of the active jobs ``job_ids`` of ``node`` (its heartbeat); how
        many there were."""

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

    def update(self, job: Job, expect: JobState | None = None) -> bool:
        """Persist state, times, progress, warnings and error; clears the conflict key when
        the state is final.  Whether the row was written: with ``expect``, only while the
        job's state in the catalog is still ``expect`` (compare-and-set: a cancel that read
        ``in-progress`` never overwrites the end written meanwhile by the job's process);
        without, a non-final state is never written over a final one, and a final state
        only while no end was written (``ended_at`` empty: a job's end is written once — the
        process of a job that recovery closed as interrupted cannot end it again)."""

    def append_log(self, job_id: int, line: str, now: datetime) -> None: ...
    def append_logs(self, job_id: int, lines: list[str], now: datetime) -> None:
        """:meth:`append_log` of every line of ``lines``, in one statement."""

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

    def of_points(self, point_ids: Sequence[str]) -> list[PointCopy]:
        """The copies of these points, held or soft-deleted, by point and vault (one query)."""

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
        """Insert; ``TokenExists`` when the name is taken, also by a token another writer
        committed while this one waited for it."""

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


class ApprovalRepository(Protocol):
    """Requests held for approval (domain/approval.py).  A request changes state only through
    :meth:`transition`, a compare-and-set: of two admins deciding at once, one wins."""

    def add(self, request: ApprovalRequest) -> ApprovalRequest:
        """Insert; the stored request with its id."""

    def get(self, request_id: int) -> ApprovalRequest | None: ...
    def find(
        self, state: RequestState | None = None, vault: str | None = None
    ) -> list[ApprovalRequest]:
        """Every request in the stored ``state`` (of ``vault``), newest first."""

    def page(
        self,
        shown: RequestState | None,
        vault: str | None,
        now: datetime,
        limit: int,
        offset: int,
    ) -> tuple[list[ApprovalRequest], int]:
        """The requests (of ``vault``) whose state *as shown at* ``now`` is ``shown`` — a
        pending request past its expiry shows as expired
        (:meth:`~vmvault.domain.approval.ApprovalRequest.shown_state`), so it matches
        ``expired`` and not ``pending`` — newest first: a page (``limit`` from ``offset``)
        and how many match in all.  The requests keep their stored state."""

    def transition(self, request: ApprovalRequest, expected: RequestState) -> bool:
        """Write ``request``'s state and decision/outcome fields if its row is still in state
        ``expected``; whether it was."""


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
        """Insert; ``PolicyExists`` when the name is taken (the caller's check before cannot
        see a policy another writer has not committed yet)."""

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


class HeldAggregates(Protocol):
    """What a vault holds (its own points and its copies, not soft-deleted there), in
    aggregate, computed by the database: the dashboard and the protection list read a few
    rows, whatever the number of points (persistence/held.py)."""

    def by_vm(
        self, vault: str, vm_uuids: Sequence[str] | None = None
    ) -> dict[str, tuple[int, datetime]]:
        """Per VM with points held (of ``vm_uuids`` only, when given): how many, the newest's
        time."""

    def totals(self, vault: str) -> HeldTotals:
        """How many points, their logical bytes, how many per consistency level."""

    def new_bytes_by_day(self, vault: str, start: datetime, days: int) -> list[int]:
        """The bytes the vault's own points added on each of ``days`` days from ``start``."""

    def binned(self, vault: str) -> BinnedTotals:
        """The points soft-deleted in the vault: how many, logical bytes, the next purge."""

    def windows(self, vaults: Sequence[str]) -> tuple[WindowTally, WindowTally]:
        """The frozen and the paused windows of the points any of ``vaults`` holds, each
        point once, tallied over the histogram's bounds (``/metrics``)."""


class CatalogStats(Protocol):
    """Aggregates of the catalog for ``/metrics``, computed by the database: the cost of a
    scrape grows with the number of VMs, never with the number of jobs ever run."""

    def job_counts(self) -> dict[tuple[str, str], int]:
        """Jobs by ``(type, state)``."""

    def last_backups(self) -> list[LastBackup]:
        """Per VM with an ended backup job: the newest one and its newest good one's end."""


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
    def approvals(self) -> ApprovalRepository: ...
    @property
    def notifications(self) -> NotificationRepository: ...
    @property
    def held(self) -> HeldAggregates: ...
    @property
    def stats(self) -> CatalogStats: ...
    @property
    def nodes(self) -> NodeRepository: ...
    @property
    def leases(self) -> LeaseRepository: ...

    def __enter__(self) -> UnitOfWork: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def commit(self) -> None: ...
    def savepoint(self) -> AbstractContextManager[None]:
        """A block whose writes are undone if it raises, the transaction going on (a failed
        statement leaves a PostgreSQL transaction unusable until rolled back to one)."""


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...
