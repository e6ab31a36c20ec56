"""The dashboard's numbers for one vault (``vmvault dashboard``; the web page comes later).

* VMs of the vault's location: ``discovered`` (every VM discovery knows there, vanished ones
  included), ``registered`` (with this vault, whatever their protection), ``protected``
  (of which ``pending_initial_backup``), ``protection_stopped``, ``vanished``;
* the vault's jobs created in the last 24 h by state (:data:`JOB_COUNTS`: every state, one
  count each, so a count is what the Jobs page filtered by that state lists);
* the protected VMs that need attention: last backup failed, overdue
  (:func:`~vmvault.domain.policy.overdue_at` after the last point, or after protection was
  configured when there is none yet), or deleted from libvirt — how many, how many for each
  reason, and one page of them (``limit`` after ``offset``; :data:`ATTENTION_PAGE` by default),
  the most urgent reason first (:data:`ATTENTION_REASONS`), then by name: a fleet's thousand
  overdue VMs are counted, not all printed (every VM's health is in the protection list);
* storage: bytes of the vault's chunk files and when they were measured (the walk of a large
  vault's chunks is reused for 15 s, and up to 60 s while no job of the vault ended since:
  services/stored_bytes.py), logical bytes of the points it holds (its own
  and the copies of other vaults' points), their ratio;
* ``daily``: for each of the last 14 UTC days, the vault's backup jobs created that day that
  completed or failed, and the bytes its new points of that day added (the console's chart).
* soft-deleted points the vault still holds (docs/soft-delete.md): their count and logical
  bytes (the disks' sizes, as for the points above; the chunks they alone keep are not
  counted apart), and the next purge due.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property, partial

from vmvault.domain.consistency import Consistency
from vmvault.domain.inputs import ATTENTION_PAGE, check_page
from vmvault.domain.job import Job, JobState, JobType
from vmvault.domain.policy import Policy, overdue_at
from vmvault.domain.vm import VmItem, VmState, WatchedVm
from vmvault.services.context import Service
from vmvault.services.ports import UnitOfWork
from vmvault.services.stored_bytes import DASHBOARD_FRESH, DASHBOARD_REUSE

WINDOW = timedelta(hours=24)
#: The states the dashboard counts the vault's jobs of the last :data:`WINDOW` by, one count
#: each (key: the state with ``_``): each count is exactly what ``GET /jobs?vault=&state=&since=24h``
#: lists, the console's link.
JOB_COUNTS = (
    JobState.COMPLETED,
    JobState.COMPLETED_WITH_WARNINGS,
    JobState.FAILED,
    JobState.CANCELLED,
    JobState.IN_PROGRESS,
    JobState.QUEUED,
    JobState.CANCELLING,
)
#: How many days the dashboard's chart of backups and bytes per day covers.
DAYS = 14
#: Why a protected VM needs attention (:func:`needing_attention`), in the order checked.
ATTENTION_REASONS = ("vm-deleted", "last-backup-failed", "overdue", "never-backed-up")


@dataclass
class Attention:
    vm: str
    name: str
    policy: str | None
    reason: str  # one of ATTENTION_REASONS
    detail: str
    last_backup_at: datetime | None = None
    #: what an overdue VM's lateness is counted from (its last point, or when protection was
    #: configured); None for the other reasons
    since: datetime | None = None


@dataclass
class DayCount:
    """One UTC day of the dashboard's chart."""

    day: date
    backups: int = 0  # backup jobs that completed (with or without warnings)
    failed: int = 0
    bytes_new: int = 0  # what that day's new points added to the vault


@dataclass
class Dashboard:
    vault: str
    at: datetime
    vms: dict[str, int]
    jobs: dict[str, int]
    #: one page of the VMs needing attention (most urgent reason first, then by name)
    attention: list[Attention] = field(default_factory=list)
    #: how many VMs need attention in all, and how many for each of :data:`ATTENTION_REASONS`
    attention_total: int = 0
    attention_by_reason: dict[str, int] = field(default_factory=dict)
    storage_bytes: int = 0
    #: when ``storage_bytes`` were measured (services/stored_bytes.py: reused up to a minute)
    storage_measured_at: datetime | None = None
    logical_bytes: int = 0
    points: int = 0
    #: the points it holds, by consistency level (docs/backup.md, "Consistency")
    by_consistency: dict[str, int] = field(default_factory=dict)
    #: the last :data:`DAYS` days, oldest first
    daily: list[DayCount] = field(default_factory=list)
    #: soft-deleted points held until purged: count, logical bytes, the earliest purge_after
    soft_deleted: int = 0
    soft_deleted_bytes: int = 0
    next_purge_at: datetime | None = None

    @property
    def dedup_ratio(self) -> float | None:
        return round(self.logical_bytes / self.storage_bytes, 2) if self.storage_bytes else None


def needing_attention(
    protected: list[WatchedVm],
    newest: dict[str, datetime],
    last_backup_job: dict[str, Job | None],
    policies: dict[str, Policy],
    now: datetime,
) -> list[Attention]:
    """The attention rule (the one rule: the dashboard, ``/metrics``' health and the overdue
    notifications use it): of the ``protected`` VMs, those deleted from libvirt, those whose
    last backup job failed, those overdue (``newest`` point per VM) or never backed up."""
    found = [
        attention_for(
            vm,
            newest.get(vm.uuid),
            last_backup_job.get(vm.uuid),
            policies.get(vm.policy or ""),
            now,
        )
        for vm in protected
    ]
    return [a for a in found if a is not None]


@dataclass
class VaultHealth:
    """The attention rule's inputs and outcome for one vault (:func:`vault_health`)."""

    #: the vault's protected VMs of its location (of those asked about, when only some were)
    protected: list[WatchedVm]
    #: per VM with points the vault holds (own and copies; of those asked about, when only
    #: some were): how many, and the newest one's time
    held: dict[str, tuple[int, datetime]]
    #: the protected VMs that need attention, by uuid
    flags: dict[str, Attention]

    @cached_property
    def _protected_uuids(self) -> set[str]:
        return {vm.uuid for vm in self.protected}

    def health(self, vm: VmItem) -> str:
        """``ok`` or why the VM needs attention; ``-`` for a VM the vault does not protect."""
        if vm.uuid in self.flags:
            return self.flags[vm.uuid].reason
        return "ok" if vm.uuid in self._protected_uuids else "-"


def vault_health(
    uow: UnitOfWork,
    vault: str,
    uris: list[str],
    now: datetime,
    only: list[VmItem] | None = None,
) -> VaultHealth:
    """The one place the attention rule's inputs are read: the vault's protected VMs of its
    location's hosts (``uris``; ``only``: of these VMs alone — a page of a listing), read
    with only the columns the rule needs; each VM's count and newest of the points the vault
    holds (own and copies), counted by the database; its policies and each protected VM's
    latest backup job.  The dashboard, the protection list's health, ``/metrics`` and the
    overdue notifications use it.  Its number of queries does not grow with the number of
    VMs, and it reads no point (tests/unit/test_fleet_queries.py)."""
    if only is None:
        protected = uow.vms.watched(uris, vault)
        held = uow.held.by_vm(vault)
    else:
        hosts = set(uris)
        protected = [
            WatchedVm.of(vm)
            for vm in only
            if vm.vault == vault and vm.state is VmState.PROTECTED and vm.host_uri in hosts
        ]
        held = uow.held.by_vm(vault, [vm.uuid for vm in only]) if only else {}
    policies = {r.name: r.policy for r in uow.policies.all(vault)}
    latest = uow.jobs.latest(JobType.BACKUP) if protected else {}
    last_job = {vm.uuid: latest.get(vm.uuid) for vm in protected}
    newest = {uuid: at for uuid, (_, at) in held.items()}
    flagged = needing_attention(protected, newest, last_job, policies, now)
    return VaultHealth(protected, held, {a.vm: a for a in flagged})


class DashboardService(Service):
    def attention(self, vault_name: str) -> tuple[int, list[Attention]]:
        """The vault's protected VMs (how many) and those that need attention, with only the
        catalog reads the rule needs (no job window, no storage walk)."""
        health = self.health(vault_name)
        return len(health.protected), list(health.flags.values())

    def health(self, vault_name: str | None) -> VaultHealth:
        """:func:`vault_health` of the vault (the default one when None)."""
        vault = self.vaults.resolve(vault_name)
        now = self.clock()
        uris = [h.uri for h in self.vaults.list_hosts(vault.location)]
        with self.uow() as uow:
            return vault_health(uow, vault.name, uris, now)

    def summary(
        self, vault_name: str | None, limit: int = ATTENTION_PAGE, offset: int = 0
    ) -> Dashboard:
        """The vault's numbers, with the page ``limit`` after ``offset`` of its VMs needing
        attention (:func:`~vmvault.domain.inputs.check_page`'s rule)."""
        check_page(limit, offset)
        vault = self.vaults.resolve(vault_name)
        now = self.clock()
        uris = [h.uri for h in self.vaults.list_hosts(vault.location)]
        with self.uow() as uow:
            health = vault_health(uow, vault.name, uris, now)
            tally = uow.vms.tally(uris)
            jobs = uow.jobs.count_by_state(now - WINDOW, vault.name)
            held = uow.held.totals(vault.name)
            binned = uow.held.binned(vault.name)
            daily = self._daily(uow, vault.name, now)
        stored = self.vaults.stored_chunk_bytes(vault, DASHBOARD_FRESH, DASHBOARD_REUSE)
        protected = health.protected
        mine = [(state, n) for state, of, _, n in tally if of == vault.name]
        board = Dashboard(
            vault=vault.name,
            at=now,
            vms={
                "discovered": sum(n for *_, n in tally),
                "registered": sum(n for state, n in mine if state is not VmState.DISCOVERED),
                "protected": len(protected),
                "pending_initial_backup": sum(1 for vm in protected if vm.uuid not in health.held),
                "protection_stopped": sum(
                    n for state, n in mine if state is VmState.PROTECTION_STOPPED
                ),
                "vanished": sum(n for _, _, vanished, n in tally if vanished),
            },
            jobs={state.value.replace("-", "_"): jobs.get(state, 0) for state in JOB_COUNTS},
            storage_bytes=stored.bytes,
            storage_measured_at=stored.at,
            logical_bytes=held.logical_bytes,
            points=held.points,
            by_consistency={c.value: held.by_consistency.get(c.value, 0) for c in Consistency},
            daily=daily,
            soft_deleted=binned.points,
            soft_deleted_bytes=binned.logical_bytes,
            next_purge_at=binned.next_purge_at,
        )
        ranked = sorted(health.flags.values(), key=_urgency)
        board.attention = ranked[offset : offset + limit]
        board.attention_total = len(ranked)
        board.attention_by_reason = {r: 0 for r in ATTENTION_REASONS}
        for a in ranked:
            board.attention_by_reason[a.reason] += 1
        return board

    def _daily(self, uow: UnitOfWork, vault: str, now: datetime) -> list[DayCount]:
        """The last :data:`DAYS` UTC days, oldest first: the vault's backup jobs created that
        day that completed (with or without warnings) or failed, and the bytes its new points
        of that day added."""
        first = (now.astimezone(UTC) - timedelta(days=DAYS - 1)).date()
        start = datetime.combine(first, time(), UTC)
        ended = uow.jobs.ended_by_day(JobType.BACKUP, start, DAYS, vault)
        added = uow.held.new_bytes_by_day(vault, start, DAYS)
        return [
            DayCount(first + timedelta(days=i), backups, failed, new)
            for i, ((backups, failed), new) in enumerate(zip(ended, added, strict=True))
        ]


def _urgency(a: Attention) -> tuple[int, str, str]:
    return ATTENTION_REASONS.index(a.reason), a.name, a.vm


def attention_for(
    vm: WatchedVm, last: datetime | None, job: Job | None, policy: Policy | None, now: datetime
) -> Attention | None:
    """Why a protected VM needs attention (``last``: its newest point; ``job``: its latest
    backup job), or None when it does not: the one attention rule — the dashboard, the
    protection list's health, ``/metrics``' health and the overdue notifications use it
    (through :func:`needing_attention` for many VMs)."""
    flag = partial(Attention, vm.uuid, vm.label, vm.policy, last_backup_at=last)
    if vm.vanished_at is not None or (job is not None and job.error_code == "VM_DELETED"):
        why = "the VM no longer exists in libvirt: stop its protection with --retain-data"
        return flag("vm-deleted", why)
    if job is not None and job.state is JobState.FAILED:
        return flag("last-backup-failed", f"job {job.id}: {job.error_code}: {job.message}")
    since = last or vm.protected_since
    if policy is None or since is None:
        return None
    due = overdue_at(policy, since)
    if due <= now:
        what = "last backup" if last else "protection configured"
        why = f"{what} at {since.isoformat(timespec='seconds')}, overdue since "
        why += due.isoformat(timespec="seconds")
        return flag("overdue" if last else "never-backed-up", why, since=since)
    return None
