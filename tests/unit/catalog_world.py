"""What the copy, heal and soft-delete service tests share (tests/unit/test_copy_service.py,
tests/unit/test_heal_service.py, tests/unit/test_soft_delete_service.py): a real catalog
(SQLite or PostgreSQL), the vault service over it, cheap scrypt for encrypted vaults, the VMs
the points belong to, and real points written into real vaults (:func:`write_point`)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vmvault.dataplane import DiskEntry, FileSource, Manifest, backup_disk, keys
from vmvault.domain.recovery_point import Consistency, Method, PointDisk, RecoveryPoint
from vmvault.domain.vm import PowerState, VmItem
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import open_catalog
from vmvault.services.vaults import VaultService

URI = "qemu:///system"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Catalog:
    uow: Callable[[], SqlUnitOfWork]
    vaults: VaultService


@contextmanager
def catalog(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    vms: dict[str, str],
    uri: str = URI,
    url: str | None = None,
) -> Iterator[Catalog]:
    """The catalog with ``vms`` (uuid → name) saved, and no vault yet; ``url``: the catalog's
    (the ``catalog_url`` fixture: SQLite or PostgreSQL), else SQLite in ``tmp_path``."""
    monkeypatch.setattr(keys, "SCRYPT_N", 2**12)
    engine = open_catalog(url or f"sqlite:///{tmp_path / 'catalog.db'}")

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine)

    t = now()
    with uow() as u:
        for uuid, name in vms.items():
            u.vms.save(
                VmItem(uuid, name, uri, "h", "h", PowerState.RUNNING, [], [], True, "f", t, t)
            )
        u.commit()
    try:
        yield Catalog(uow, VaultService(uow, None, now, tmp_path, None))  # type: ignore[arg-type]
    finally:
        engine.dispose()


def write_point(
    tmp: Path,
    uow: Callable[[], SqlUnitOfWork],
    vaults: VaultService,
    vault: str,
    point_id: str,
    seed: int,
    when: datetime,
    vm: tuple[str, str],
    disk: bytes | None = None,
) -> bytes:
    """A real point of VM ``vm`` (uuid, name) with one disk in ``vault`` — written through
    the dataplane as a backup writes it — and its catalog row; returns the disk: ``disk``
    when given, else three chunks the same in every point (they dedupe), three from
    ``seed`` and a zero one."""
    store = vaults.open_store(vaults.resolve(vault))
    cs = store.chunk_size
    rnd = random.Random(seed)
    shared = random.Random(0).randbytes(3 * cs)
    data = disk if disk is not None else shared + rnd.randbytes(3 * cs) + bytes(cs) + b"tail" * 50
    image = tmp / f"{point_id}.img"
    image.write_bytes(data)
    with store.writer(point_id):
        with FileSource(image) as src:
            r = backup_disk(store, src)
        digest = store.write_index(point_id, "vda", r.index)
        store.write_manifest(
            Manifest(
                point_id=point_id,
                vm_uuid=vm[0],
                vm_name=vm[1],
                created_at=when.isoformat(),
                domain_xml=f"<domain><name>{vm[1]}</name></domain>",
                method="offline",
                consistency="crash-consistent",
                disks=[DiskEntry("vda", len(data), "vda.fidx", digest, len(data), r.bytes_new)],
            )
        )
    with uow() as u:
        u.points.add(
            RecoveryPoint(
                point_id,
                vault,
                vm[0],
                vm[1],
                when,
                Consistency.CRASH,
                Method.OFFLINE,
                0,
                None,
                [PointDisk("vda", len(data), "raw")],
            )
        )
        u.commit()
    return data
