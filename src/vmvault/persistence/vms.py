"""VM items in the catalog: what discovery saw and what registration and protection decided."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, select, update

from vmvault.domain.vm import Disk, Nic, PowerState, VmItem, VmState, WatchedVm, fields_of
from vmvault.persistence import tables as t
from vmvault.persistence.times import req, utc
from vmvault.persistence.upsert import insert_new, insert_of

#: How many uuids one ``IN`` list of :meth:`SqlVms.save_many` and :meth:`SqlVms.seen` holds
#: (SQLite's bound-parameter limit is far above it).
_BATCH = 1000


class SqlVms:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @staticmethod
    def _select() -> Select[Any]:
        """The VM rows with their vault's name (one query, whatever the number of VMs)."""
        joined = t.vms.outerjoin(t.vaults, t.vaults.c.id == t.vms.c.vault_id)
        return select(t.vms, t.vaults.c.name.label("vault_name")).select_from(joined)

    def _row(self, r: Any) -> VmItem:
        vault = r.vault_name
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
            first_seen=req(r.first_seen),
            last_seen=req(r.last_seen),
            state=VmState(r.state),
            vanished_at=utc(r.vanished_at),
            vault=vault,
            registered_at=utc(r.registered_at),
            agent_version=r.agent_version,
            crash_consistent_only=r.crash_consistent_only,
            registration_warnings=list(r.registration_warnings),
            policy=r.policy,
            protected_since=utc(r.protected_since),
            excluded_targets=list(r.excluded_disks or []),
            cluster_managed=r.cluster_managed,
        )

    def get(self, uuid: str) -> VmItem | None:
        r = self.conn.execute(self._select().where(t.vms.c.uuid == uuid)).first()
        return self._row(r) if r else None

    def all(
        self,
        host_uris: Sequence[str] | None = None,
        *,
        vault: str | None = None,
        state: VmState | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[VmItem]:
        q = _filtered(self._select(), host_uris, vault, state)
        q = q.order_by(t.vms.c.name, t.vms.c.hostname, t.vms.c.uuid)
        if limit is not None or offset:
            q = q.limit(limit).offset(offset)
        return [self._row(r) for r in self.conn.execute(q)]

    def count(
        self,
        host_uris: Sequence[str] | None = None,
        *,
        vault: str | None = None,
        state: VmState | None = None,
    ) -> int:
        q = _filtered(select(func.count()).select_from(t.vms), host_uris, vault, state)
        return int(self.conn.execute(q).scalar_one())

    def tally(self, host_uris: Sequence[str]) -> list[tuple[VmState, str | None, bool, int]]:
        """How many VMs of ``host_uris`` there are by state, vault and vanished or not (one
        ``GROUP BY``: the dashboard's counts without reading every VM)."""
        v = t.vms.c
        vanished = v.vanished_at.is_not(None)
        joined = t.vms.outerjoin(t.vaults, t.vaults.c.id == v.vault_id)
        q = (
            select(v.state, t.vaults.c.name, vanished, func.count())
            .select_from(joined)
            .where(v.host_uri.in_(list(host_uris)))
            .group_by(v.state, t.vaults.c.name, vanished)
        )
        return [(VmState(s), name, bool(gone), int(n)) for s, name, gone, n in self.conn.execute(q)]

    def labels_by_policy(self, policies: Sequence[str]) -> dict[str, list[str]]:
        """The labels (``host/name``, sorted) of the VMs naming each of ``policies``."""
        v = t.vms.c
        q = select(v.policy, v.hostname, v.name).where(v.policy.in_(list(policies)))
        out: dict[str, list[str]] = {}
        for policy, hostname, name in self.conn.execute(q):
            out.setdefault(policy, []).append(f"{hostname}/{name}")
        return {policy: sorted(labels) for policy, labels in out.items()}

    def watched(self, host_uris: Sequence[str], vault: str) -> list[WatchedVm]:
        """The VMs of ``host_uris`` that ``vault`` protects, with only the columns the
        attention rule reads (no disks, no NICs), by name."""
        v = t.vms.c
        q = select(v.uuid, v.name, v.hostname, v.policy, v.protected_since, v.vanished_at)
        q = _filtered(q, host_uris, vault, VmState.PROTECTED)
        return [
            WatchedVm(
                r.uuid, r.name, r.hostname, r.policy, utc(r.protected_since), utc(r.vanished_at)
            )
            for r in self.conn.execute(q.order_by(v.name, v.hostname, v.uuid))
        ]

    def _vault_id(self, vm: VmItem) -> int | None:
        if vm.vault is None:
            return None
        q = select(t.vaults.c.id).where(t.vaults.c.name == vm.vault)
        return int(self.conn.execute(q).scalar_one())

    def save(self, vm: VmItem) -> None:
        values = _columns(vm, self._vault_id(vm))
        # one statement (persistence/upsert.py): an update then, when it found no row, an
        # insert let two writers of a VM new to the catalog both insert it on PostgreSQL
        ins = insert_of(self.conn, t.vms).values(uuid=vm.uuid, **values)
        self.conn.execute(ins.on_conflict_do_update(index_elements=["uuid"], set_=values))

    def add_if_new(self, vm: VmItem) -> bool:
        """Insert ``vm`` unless the catalog has a VM of its uuid — also one another writer
        (a discovery, a registration) committed while this one waited for it, which stands
        as written: whether it was added."""
        values = _columns(vm, self._vault_id(vm))
        return insert_new(self.conn, t.vms, "uuid", uuid=vm.uuid, **values) is not None

    def save_many(self, vms: Sequence[VmItem]) -> None:
        """:meth:`save` of many VMs in a few statements, whatever their number: the vaults'
        ids read once, one batched ``UPDATE`` of those that exist, one ``INSERT`` of the rest
        (discovery of a fleet)."""
        if not vms:
            return
        ids = dict(self.conn.execute(select(t.vaults.c.name, t.vaults.c.id)).all())
        uuids = [vm.uuid for vm in vms]
        existing: set[str] = set()
        for start in range(0, len(uuids), _BATCH):
            batch = uuids[start : start + _BATCH]
            q = select(t.vms.c.uuid).where(t.vms.c.uuid.in_(batch))
            existing.update(self.conn.execute(q).scalars())
        rows = [
            {"uuid": vm.uuid, **_columns(vm, ids[vm.vault] if vm.vault is not None else None)}
            for vm in vms
        ]
        old = [r for r in rows if r["uuid"] in existing]
        new = [r for r in rows if r["uuid"] not in existing]
        if old:
            names = [k for k in old[0] if k != "uuid"]
            change = update(t.vms).where(t.vms.c.uuid == bindparam("b_uuid"))
            change = change.values({k: bindparam(f"b_{k}") for k in names})
            self.conn.execute(change, [{f"b_{k}": v for k, v in r.items()} for r in old])
        if new:
            # read as new, but another discovery (of a vault of the same location) may have
            # inserted one meanwhile: theirs stands, from the same hosts moments before, with
            # the operator's fields it may have been given since (on PostgreSQL a plain
            # insert failed on the uuid)
            self.conn.execute(insert_of(self.conn, t.vms).on_conflict_do_nothing(), new)

    def seen(self, uuids: Sequence[str], at: datetime) -> None:
        for start in range(0, len(uuids), _BATCH):
            batch = list(uuids[start : start + _BATCH])
            self.conn.execute(update(t.vms).where(t.vms.c.uuid.in_(batch)).values(last_seen=at))

    def save_facts(self, vm: VmItem) -> None:
        """Update only what discovery sees (:meth:`VmItem.apply`'s facts, ``last_seen``) of an
        existing row: the operator's fields (excluded disks, cluster ownership, protection)
        changed meanwhile are left as they are now."""
        self.conn.execute(update(t.vms).where(t.vms.c.uuid == vm.uuid).values(**_facts(vm)))


def _columns(vm: VmItem, vault_id: int | None) -> dict[str, Any]:
    """Every column of a VM's row but its uuid (``vault_id``: its vault's, looked up)."""
    return _facts(vm) | dict(
        first_seen=vm.first_seen,
        state=vm.state.value,
        vault_id=vault_id,
        registered_at=vm.registered_at,
        agent_version=vm.agent_version,
        crash_consistent_only=vm.crash_consistent_only,
        registration_warnings=list(vm.registration_warnings),
        policy=vm.policy,
        protected_since=vm.protected_since,
        excluded_disks=list(vm.excluded_targets) or None,
        cluster_managed=vm.cluster_managed,
    )


def _filtered(
    q: Any, host_uris: Sequence[str] | None, vault: str | None, state: VmState | None
) -> Any:
    """``q`` narrowed to the VMs of ``host_uris``, registered with ``vault``, in ``state``."""
    if host_uris is not None:
        q = q.where(t.vms.c.host_uri.in_(list(host_uris)))
    if vault is not None:
        of_vault = select(t.vaults.c.id).where(t.vaults.c.name == vault).scalar_subquery()
        q = q.where(t.vms.c.vault_id == of_vault)
    if state is not None:
        q = q.where(t.vms.c.state == state.value)
    return q


def _facts(vm: VmItem) -> dict[str, Any]:
    """The columns of what discovery sees of a VM (the rest is the operator's or vmvault's)."""
    return dict(
        name=vm.name,
        host_uri=vm.host_uri,
        hostname=vm.hostname,
        grp=vm.group,
        power_state=vm.power_state.value,
        disks=[fields_of(d) for d in vm.disks],
        nics=[fields_of(n) for n in vm.nics],
        agent_channel=vm.agent_channel,
        fingerprint=vm.fingerprint,
        last_seen=vm.last_seen,
        vanished_at=vm.vanished_at,
    )
