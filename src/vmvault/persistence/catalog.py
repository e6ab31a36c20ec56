"""Repositories and the unit of work over SQLAlchemy Core.

Times are stored as UTC; SQLite drops the zone, so every read re-attaches UTC.
On SQLite every transaction starts with ``BEGIN IMMEDIATE`` (one writer at a time, WAL
readers unaffected, a 30 s busy timeout): a read-then-write never deadlocks between two
vmvault processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, case, delete, event, insert, select, update
from sqlalchemy.exc import IntegrityError

from vmvault.domain.job import ACTIVE_STATES, Job, JobConflict, JobState, JobType, JournalStep
from vmvault.domain.policy import Policy
from vmvault.domain.recovery_point import (
    CheckpointRecord,
    Consistency,
    Method,
    PointDisk,
    RecoveryPoint,
)
from vmvault.domain.vault import Host, Vault
from vmvault.domain.vm import Disk, Nic, PowerState, VmItem, VmState
from vmvault.persistence import tables as t


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _req(value: datetime | None) -> datetime:
    out = _utc(value)
    assert out is not None
    return out


def configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, a busy timeout and IMMEDIATE transactions for SQLite engines."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class SqlVaults:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _row(self, r: Any) -> Vault:
        return Vault(r.id, r.name, r.location, r.path, _req(r.created_at), r.key_file)

    def get(self, name: str) -> Vault | None:
        r = self.conn.execute(select(t.vaults).where(t.vaults.c.name == name)).first()
        return self._row(r) if r else None

    def get_by_id(self, vault_id: int) -> Vault | None:
        r = self.conn.execute(select(t.vaults).where(t.vaults.c.id == vault_id)).first()
        return self._row(r) if r else None

    def all(self) -> list[Vault]:
        return [self._row(r) for r in self.conn.execute(select(t.vaults).order_by(t.vaults.c.name))]

    def add(
        self, name: str, location: str, path: str, now: datetime, key_file: str | None = None
    ) -> Vault:
        res = self.conn.execute(
            insert(t.vaults).values(
                name=name, location=location, path=path, created_at=now, key_file=key_file
            )
        )
        assert res.inserted_primary_key is not None
        return Vault(res.inserted_primary_key[0], name, location, path, now, key_file)


class SqlHosts:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _row(self, r: Any) -> Host:
        return Host(r.id, r.uri, r.location, r.hostname, _req(r.created_at))

    def get(self, uri: str) -> Host | None:
        r = self.conn.execute(select(t.hosts).where(t.hosts.c.uri == uri)).first()
        return self._row(r) if r else None

    def all(self, location: str | None = None) -> list[Host]:
        q = select(t.hosts).order_by(t.hosts.c.location, t.hosts.c.uri)
        if location is not None:
            q = q.where(t.hosts.c.location == location)
        return [self._row(r) for r in self.conn.execute(q)]

    def add(self, uri: str, location: str, hostname: str | None, now: datetime) -> Host:
        res = self.conn.execute(
            insert(t.hosts).values(uri=uri, location=location, hostname=hostname, created_at=now)
        )
        assert res.inserted_primary_key is not None
        return Host(res.inserted_primary_key[0], uri, location, hostname, now)

    def remove(self, uri: str) -> None:
        self.conn.execute(delete(t.hosts).where(t.hosts.c.uri == uri))

    def set_hostname(self, uri: str, hostname: str) -> None:
        self.conn.execute(update(t.hosts).where(t.hosts.c.uri == uri).values(hostname=hostname))


class SqlVms:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _row(self, r: Any) -> VmItem:
        vault = None
        if r.vault_id is not None:
            vault = self.conn.execute(
                select(t.vaults.c.name).where(t.vaults.c.id == r.vault_id)
            ).scalar_one_or_none()
        return VmItem(
            uuid=r.uuid,
            name=r.name,
            host_uri=r.host_uri,
            hostname=r.hostname,
            group=r.grp,
            power_state=PowerState(r.power_state),
            disks=[Disk(**d) for d in r.disks],
            nics=[Nic(**n) for n in r.nics],
            agent_channel=r.agent_channel,
            fingerprint=r.fingerprint,
            first_seen=_req(r.first_seen),
            last_seen=_req(r.last_seen),
            state=VmState(r.state),
            vanished_at=_utc(r.vanished_at),
            vault=vault,
            registered_at=_utc(r.registered_at),
            agent_version=r.agent_version,
            crash_consistent_only=r.crash_consistent_only,
            registration_warnings=list(r.registration_warnings),
            policy=r.policy,
            protected_since=_utc(r.protected_since),
        )

    def get(self, uuid: str) -> VmItem | None:
        r = self.conn.execute(select(t.vms).where(t.vms.c.uuid == uuid)).first()
        return self._row(r) if r else None

    def all(self, host_uris: Sequence[str] | None = None) -> list[VmItem]:
        q = select(t.vms).order_by(t.vms.c.name, t.vms.c.hostname, t.vms.c.uuid)
        if host_uris is not None:
            q = q.where(t.vms.c.host_uri.in_(list(host_uris)))
        return [self._row(r) for r in self.conn.execute(q)]

    def save(self, vm: VmItem) -> None:
        vault_id = None
        if vm.vault is not None:
            vault_id = self.conn.execute(
                select(t.vaults.c.id).where(t.vaults.c.name == vm.vault)
            ).scalar_one()
        values: dict[str, Any] = dict(
            name=vm.name,
            host_uri=vm.host_uri,
            hostname=vm.hostname,
            grp=vm.group,
            power_state=vm.power_state.value,
            disks=[asdict(d) for d in vm.disks],
            nics=[asdict(n) for n in vm.nics],
            agent_channel=vm.agent_channel,
            fingerprint=vm.fingerprint,
            first_seen=vm.first_seen,
            last_seen=vm.last_seen,
            vanished_at=vm.vanished_at,
            state=vm.state.value,
            vault_id=vault_id,
            registered_at=vm.registered_at,
            agent_version=vm.agent_version,
            crash_consistent_only=vm.crash_consistent_only,
            registration_warnings=list(vm.registration_warnings),
            policy=vm.policy,
            protected_since=vm.protected_since,
        )
        done = self.conn.execute(update(t.vms).where(t.vms.c.uuid == vm.uuid).values(**values))
        if done.rowcount == 0:
            self.conn.execute(insert(t.vms).values(uuid=vm.uuid, **values))


class SqlJobs:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _row(self, r: Any) -> Job:
        return Job(
            id=r.id,
            type=JobType(r.type),
            vault=r.vault,
            vm_uuid=r.vm_uuid,
            vm_name=r.vm_name,
            state=JobState(r.state),
            created_at=_req(r.created_at),
            started_at=_utc(r.started_at),
            ended_at=_utc(r.ended_at),
            bytes_done=r.bytes_done,
            bytes_total=r.bytes_total,
            warnings=list(r.warnings),
            error_code=r.error_code,
            message=r.message,
            remedy=r.remedy,
            pid=r.pid,
            request=r.request,
            origin=r.origin,
        )

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
    ) -> Job:
        values: dict[str, Any] = dict(
            type=job_type.value,
            vault=vault,
            vm_uuid=vm_uuid,
            vm_name=vm_name,
            state=state.value,
            created_at=now,
            started_at=now if state is JobState.IN_PROGRESS else None,
            bytes_done=0,
            bytes_total=0,
            warnings=[],
            pid=pid,
            conflict_key=conflict_key if state.active else None,
            request=request,
            origin=origin,
        )
        if conflict_key is not None and state.active:
            holder = self.holder(conflict_key)
            if holder is not None:
                raise JobConflict(holder)
        try:
            with self.conn.begin_nested():
                res = self.conn.execute(insert(t.jobs).values(**values))
        except IntegrityError:
            holder = self.holder(conflict_key) if conflict_key else None
            if holder is None:
                raise
            raise JobConflict(holder) from None
        assert res.inserted_primary_key is not None
        job = self.get(res.inserted_primary_key[0])
        assert job is not None
        return job

    def get(self, job_id: int) -> Job | None:
        r = self.conn.execute(select(t.jobs).where(t.jobs.c.id == job_id)).first()
        return self._row(r) if r else None

    def queued(self, limit: int = 100) -> list[Job]:
        q = select(t.jobs).where(t.jobs.c.state == JobState.QUEUED.value)
        return [self._row(r) for r in self.conn.execute(q.order_by(t.jobs.c.id).limit(limit))]

    def active(self) -> list[Job]:
        q = select(t.jobs).where(t.jobs.c.state.in_([s.value for s in ACTIVE_STATES]))
        return [self._row(r) for r in self.conn.execute(q.order_by(t.jobs.c.id))]

    def claim(self, job_id: int, pid: int, now: datetime) -> bool:
        """queued → in-progress for process ``pid``; False when it is no longer queued."""
        res = self.conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job_id, t.jobs.c.state == JobState.QUEUED.value)
            .values(state=JobState.IN_PROGRESS.value, pid=pid, started_at=now)
        )
        return res.rowcount == 1

    def holder(self, conflict_key: str) -> Job | None:
        r = self.conn.execute(select(t.jobs).where(t.jobs.c.conflict_key == conflict_key)).first()
        return self._row(r) if r else None

    def find(
        self,
        job_type: JobType | None = None,
        state: JobState | None = None,
        since: datetime | None = None,
        vm_uuid: str | None = None,
        limit: int = 500,
    ) -> list[Job]:
        q = select(t.jobs).order_by(t.jobs.c.id.desc()).limit(limit)
        if job_type is not None:
            q = q.where(t.jobs.c.type == job_type.value)
        if state is not None:
            q = q.where(t.jobs.c.state == state.value)
        if since is not None:
            q = q.where(t.jobs.c.created_at >= since)
        if vm_uuid is not None:
            q = q.where(t.jobs.c.vm_uuid == vm_uuid)
        return [self._row(r) for r in self.conn.execute(q)]

    def update(self, job: Job) -> None:
        values: dict[str, Any] = dict(
            state=job.state.value,
            started_at=job.started_at,
            ended_at=job.ended_at,
            bytes_done=job.bytes_done,
            bytes_total=job.bytes_total,
            warnings=list(job.warnings),
            error_code=job.error_code,
            message=job.message,
            remedy=job.remedy,
        )
        if job.state.final:
            values["conflict_key"] = None
        q = update(t.jobs).where(t.jobs.c.id == job.id)
        if job.state is JobState.IN_PROGRESS:
            # a cancel asked by another process meanwhile is never overwritten
            values["state"] = case(
                (t.jobs.c.state == JobState.CANCELLING.value, JobState.CANCELLING.value),
                else_=JobState.IN_PROGRESS.value,
            )
        self.conn.execute(q.values(**values))

    def append_log(self, job_id: int, line: str, now: datetime) -> None:
        self.conn.execute(insert(t.job_log).values(job_id=job_id, at=now, line=line))

    def log(self, job_id: int) -> list[str]:
        q = select(t.job_log.c.at, t.job_log.c.line).where(t.job_log.c.job_id == job_id)
        rows = self.conn.execute(q.order_by(t.job_log.c.id))
        return [f"{_req(r.at).strftime('%Y-%m-%d %H:%M:%S')} {r.line}" for r in rows]

    def record_step(self, job_id: int, step: str, data: dict[str, Any], now: datetime) -> None:
        self.conn.execute(insert(t.job_steps).values(job_id=job_id, step=step, data=data, at=now))

    def steps(self, job_id: int) -> list[JournalStep]:
        q = select(t.job_steps).where(t.job_steps.c.job_id == job_id).order_by(t.job_steps.c.id)
        return [
            JournalStep(job_id, r.id, r.step, dict(r.data or {}), _req(r.at))
            for r in self.conn.execute(q)
        ]


class SqlPoints:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _row(self, r: Any) -> RecoveryPoint:
        return RecoveryPoint(
            id=r.id,
            vault=r.vault,
            vm_uuid=r.vm_uuid,
            vm_name=r.vm_name,
            created_at=_req(r.created_at),
            consistency=Consistency(r.consistency),
            method=Method(r.method),
            frozen_ms=r.frozen_ms,
            checkpoint=r.checkpoint,
            disks=[PointDisk(**d) for d in r.disks],
            set_id=r.set_id,
            job_id=r.job_id,
            warnings=list(r.warnings),
            keep_until=_utc(r.keep_until),
            protected=bool(r.protected),
        )

    def add(self, point: RecoveryPoint) -> None:
        self.conn.execute(
            insert(t.recovery_points).values(
                id=point.id,
                vault=point.vault,
                vm_uuid=point.vm_uuid,
                vm_name=point.vm_name,
                created_at=point.created_at,
                consistency=point.consistency.value,
                method=point.method.value,
                frozen_ms=point.frozen_ms,
                checkpoint=point.checkpoint,
                set_id=point.set_id,
                job_id=point.job_id,
                disks=[asdict(d) for d in point.disks],
                warnings=list(point.warnings),
                keep_until=point.keep_until,
                protected=point.protected,
            )
        )

    def get(self, point_id: str) -> RecoveryPoint | None:
        q = select(t.recovery_points).where(t.recovery_points.c.id == point_id)
        r = self.conn.execute(q).first()
        return self._row(r) if r else None

    def for_vm(self, vm_uuid: str, vault: str | None = None) -> list[RecoveryPoint]:
        q = select(t.recovery_points).where(t.recovery_points.c.vm_uuid == vm_uuid)
        if vault is not None:
            q = q.where(t.recovery_points.c.vault == vault)
        q = q.order_by(t.recovery_points.c.created_at.desc(), t.recovery_points.c.id.desc())
        return [self._row(r) for r in self.conn.execute(q)]

    def in_vault(self, vault: str) -> list[RecoveryPoint]:
        q = select(t.recovery_points).where(t.recovery_points.c.vault == vault)
        return [self._row(r) for r in self.conn.execute(q.order_by(t.recovery_points.c.id))]

    def delete(self, point_id: str) -> None:
        self.conn.execute(delete(t.recovery_points).where(t.recovery_points.c.id == point_id))

    def set_pinned(self, point_id: str, protected: bool, keep_until: datetime | None) -> None:
        self.conn.execute(
            update(t.recovery_points)
            .where(t.recovery_points.c.id == point_id)
            .values(protected=protected, keep_until=keep_until)
        )

    def record_restore_test(self, point_id: str, result: dict[str, Any]) -> None:
        self.conn.execute(
            update(t.recovery_points)
            .where(t.recovery_points.c.id == point_id)
            .values(restore_test=result)
        )

    def restore_test(self, point_id: str) -> dict[str, Any] | None:
        q = select(t.recovery_points.c.restore_test).where(t.recovery_points.c.id == point_id)
        value = self.conn.execute(q).scalar_one_or_none()
        return dict(value) if value else None


class SqlCheckpoints:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, record: CheckpointRecord) -> None:
        self.conn.execute(insert(t.checkpoints).values(**asdict(record)))

    def for_vm(self, vm_uuid: str) -> list[CheckpointRecord]:
        q = select(t.checkpoints).where(t.checkpoints.c.vm_uuid == vm_uuid)
        rows = self.conn.execute(q.order_by(t.checkpoints.c.created_at, t.checkpoints.c.name))
        return [
            CheckpointRecord(r.name, r.vm_uuid, r.point_id, _req(r.created_at), r.xml) for r in rows
        ]

    def delete(self, name: str) -> None:
        self.conn.execute(delete(t.checkpoints).where(t.checkpoints.c.name == name))


@dataclass
class PolicyRow:
    """A stored policy (satisfies ``services.ports.PolicyRecord``)."""

    name: str
    vault: str
    policy: Policy
    created_at: datetime
    updated_at: datetime


class SqlPolicies:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _row(self, r: Any) -> PolicyRow:
        policy = Policy.from_json(r.definition)
        return PolicyRow(r.name, r.vault, policy, _req(r.created_at), _req(r.updated_at))

    def get(self, name: str) -> PolicyRow | None:
        r = self.conn.execute(select(t.policies).where(t.policies.c.name == name)).first()
        return self._row(r) if r else None

    def all(self, vault: str | None = None) -> list[PolicyRow]:
        q = select(t.policies).order_by(t.policies.c.name)
        if vault is not None:
            q = q.where(t.policies.c.vault == vault)
        return [self._row(r) for r in self.conn.execute(q)]

    def add(self, vault: str, policy: Policy, now: datetime) -> PolicyRow:
        self.conn.execute(
            insert(t.policies).values(
                name=policy.name,
                vault=vault,
                definition=policy.to_json(),
                created_at=now,
                updated_at=now,
            )
        )
        return PolicyRow(policy.name, vault, policy, now, now)

    def update(self, policy: Policy, now: datetime) -> None:
        self.conn.execute(
            update(t.policies)
            .where(t.policies.c.name == policy.name)
            .values(definition=policy.to_json(), updated_at=now)
        )

    def delete(self, name: str) -> None:
        self.conn.execute(delete(t.policies).where(t.policies.c.name == name))


class SqlSchedules:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def last(self, name: str) -> datetime | None:
        q = select(t.schedule_state.c.last_slot).where(t.schedule_state.c.name == name)
        return _utc(self.conn.execute(q).scalar())

    def advance(
        self, name: str, old: datetime | None, new: datetime, key: str | None, now: datetime
    ) -> bool:
        tbl = t.schedule_state
        if old is None:
            try:
                with self.conn.begin_nested():
                    self.conn.execute(
                        insert(tbl).values(name=name, last_slot=new, last_key=key, updated_at=now)
                    )
            except IntegrityError:
                return False
            return True
        res = self.conn.execute(
            update(tbl)
            .where(tbl.c.name == name, tbl.c.last_slot == old)
            .values(last_slot=new, last_key=key, updated_at=now)
        )
        return res.rowcount == 1


class SqlUnitOfWork:
    """One catalog transaction; rolls back unless :meth:`commit` was called."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> SqlUnitOfWork:
        self.conn = self.engine.connect()
        self.tx = self.conn.begin()
        self.vaults = SqlVaults(self.conn)
        self.hosts = SqlHosts(self.conn)
        self.vms = SqlVms(self.conn)
        self.jobs = SqlJobs(self.conn)
        self.points = SqlPoints(self.conn)
        self.checkpoints = SqlCheckpoints(self.conn)
        self.policies = SqlPolicies(self.conn)
        self.schedules = SqlSchedules(self.conn)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.tx.is_active:
                self.tx.rollback()
        finally:
            self.conn.close()

    def commit(self) -> None:
        self.tx.commit()
        self.tx = self.conn.begin()
