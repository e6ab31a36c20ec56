"""Vaults and hosts in the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from vmvault.domain.approval import ApprovalMode, ApprovalSetting
from vmvault.domain.errors import HostExists, VaultExists
from vmvault.domain.immutability import ImmutableMode
from vmvault.domain.soft_delete import SoftDelete, SoftDeleteMode
from vmvault.domain.vault import Host, S3Location, Vault
from vmvault.persistence import tables as t
from vmvault.persistence.times import req
from vmvault.persistence.upsert import insert_new


class SqlVaults:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _row(self, r: Any) -> Vault:
        s3 = S3Location.from_json(r.storage) if r.storage else None
        setting = SoftDelete(SoftDeleteMode(r.soft_delete), r.soft_delete_days)
        approvals = ApprovalSetting(
            ApprovalMode(r.approvals), r.approval_delay_hours, r.approval_expiry_hours
        )
        return Vault(
            r.id, r.name, r.location, r.path, req(r.created_at), r.key_file, s3, setting,
            approvals=approvals, immutable=ImmutableMode(r.immutable),
        )  # fmt: skip

    def get(self, name: str) -> Vault | None:
        r = self.conn.execute(select(t.vaults).where(t.vaults.c.name == name)).first()
        return self._row(r) if r else None

    def get_by_id(self, vault_id: int) -> Vault | None:
        r = self.conn.execute(select(t.vaults).where(t.vaults.c.id == vault_id)).first()
        return self._row(r) if r else None

    def all(self) -> list[Vault]:
        return [self._row(r) for r in self.conn.execute(select(t.vaults).order_by(t.vaults.c.name))]

    def add(
        self,
        name: str,
        location: str,
        path: str,
        now: datetime,
        key_file: str | None = None,
        s3: S3Location | None = None,
    ) -> Vault:
        """The new vault's row; :class:`VaultExists` when the name is taken (also by another
        writer's vault committed meanwhile: persistence/upsert.py)."""
        storage = s3.to_json() if s3 is not None else None
        vault_id = insert_new(
            self.conn, t.vaults, "name",
            name=name, location=location, path=path, created_at=now, key_file=key_file,
            storage=storage,
        )  # fmt: skip
        if vault_id is None:
            raise VaultExists(name=name)
        return Vault(vault_id, name, location, path, now, key_file, s3)

    def set_soft_delete(self, name: str, setting: SoftDelete) -> None:
        self.conn.execute(
            update(t.vaults)
            .where(t.vaults.c.name == name)
            .values(soft_delete=setting.mode.value, soft_delete_days=setting.days)
        )

    def set_approvals(self, name: str, setting: ApprovalSetting) -> None:
        self.conn.execute(
            update(t.vaults)
            .where(t.vaults.c.name == name)
            .values(
                approvals=setting.mode.value,
                approval_delay_hours=setting.delay_hours,
                approval_expiry_hours=setting.expiry_hours,
            )
        )

    def remove(self, name: str) -> None:
        self.conn.execute(delete(t.vaults).where(t.vaults.c.name == name))

    def set_immutable(self, name: str, mode: ImmutableMode) -> None:
        q = update(t.vaults).where(t.vaults.c.name == name).values(immutable=mode.value)
        self.conn.execute(q)


class SqlHosts:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _row(self, r: Any) -> Host:
        marked = tuple(r.cluster_managed or ())
        return Host(r.id, r.uri, r.location, r.hostname, req(r.created_at), marked, r.pull_tls)

    def get(self, uri: str) -> Host | None:
        r = self.conn.execute(select(t.hosts).where(t.hosts.c.uri == uri)).first()
        return self._row(r) if r else None

    def all(self, location: str | None = None) -> list[Host]:
        q = select(t.hosts).order_by(t.hosts.c.location, t.hosts.c.uri)
        if location is not None:
            q = q.where(t.hosts.c.location == location)
        return [self._row(r) for r in self.conn.execute(q)]

    def add(
        self,
        uri: str,
        location: str,
        hostname: str | None,
        now: datetime,
        pull_tls: str | None = None,
    ) -> Host:
        """The new host's row; :class:`HostExists` when the URI is known (also when another
        writer's row of it was committed meanwhile: persistence/upsert.py)."""
        values = dict(uri=uri, location=location, hostname=hostname, created_at=now)
        host_id = insert_new(self.conn, t.hosts, "uri", **values, pull_tls=pull_tls)
        if host_id is None:
            known = self.get(uri)
            raise HostExists(uri=uri, location=known.location if known else location)
        return Host(host_id, uri, location, hostname, now, pull_tls=pull_tls)

    def remove(self, uri: str) -> None:
        self.conn.execute(delete(t.hosts).where(t.hosts.c.uri == uri))

    def set_hostname(self, uri: str, hostname: str) -> None:
        self.conn.execute(update(t.hosts).where(t.hosts.c.uri == uri).values(hostname=hostname))

    def set_cluster_managed(self, uri: str, vms: Sequence[str]) -> None:
        values = {"cluster_managed": list(vms)}
        self.conn.execute(update(t.hosts).where(t.hosts.c.uri == uri).values(**values))

    def set_pull_tls(self, uri: str, pull_tls: str | None) -> None:
        self.conn.execute(update(t.hosts).where(t.hosts.c.uri == uri).values(pull_tls=pull_tls))
