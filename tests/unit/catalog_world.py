"""What the copy and heal service tests share (tests/unit/test_copy_service.py,
tests/unit/test_heal_service.py): a real SQLite catalog in ``tmp_path``, the vault service
over it, cheap scrypt for encrypted vaults, and the VMs the points belong to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vmvault.dataplane import keys
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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vms: dict[str, str], uri: str = URI
) -> Iterator[Catalog]:
    """The catalog with ``vms`` (uuid → name) saved, and no vault yet."""
    monkeypatch.setattr(keys, "SCRYPT_N", 2**12)
    engine = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")

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
