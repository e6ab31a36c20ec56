"""VM items in the catalog: what discovery saw and what registration and protection decided."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, insert, select, update

from vmvault.domain.vm import Disk, Nic, PowerState, VmItem, VmState
from vmvault.persistence import tables as t
from vmvault.persistence.times import req, utc


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
        values: dict[str, Any] = _facts(vm) | dict(
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
        done = self.conn.execute(update(t.vms).where(t.vms.c.uuid == vm.uuid).values(**values))
        if done.rowcount == 0:
            self.conn.execute(insert(t.vms).values(uuid=vm.uuid, **values))

    def save_facts(self, vm: VmItem) -> None:
        """Update only what discovery sees (:meth:`VmItem.apply`'s facts, ``last_seen``) of an
        existing row: the operator's fields (excluded disks, cluster ownership, protection)
        changed meanwhile are left as they are now."""
        self.conn.execute(update(t.vms).where(t.vms.c.uuid == vm.uuid).values(**_facts(vm)))


def _facts(vm: VmItem) -> dict[str, Any]:
    """The columns of what discovery sees of a VM (the rest is the operator's or vmvault's)."""
    return dict(
        name=vm.name,
        host_uri=vm.host_uri,
        hostname=vm.hostname,
        grp=vm.group,
        power_state=vm.power_state.value,
        disks=[asdict(d) for d in vm.disks],
        nics=[asdict(n) for n in vm.nics],
        agent_channel=vm.agent_channel,
        fingerprint=vm.fingerprint,
        last_seen=vm.last_seen,
        vanished_at=vm.vanished_at,
    )
