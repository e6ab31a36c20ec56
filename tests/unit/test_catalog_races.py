"""Two writers of one key at once, on SQLite and PostgreSQL: where a check (or an update that
found no row) decided to insert, read committed let both writers find no row on PostgreSQL,
and the second insert failed on the key (an ``IntegrityError``: ``INTERNAL_ERROR``). Each
test holds the first writer's row uncommitted while a thread makes the same write, then
commits: the thread waits for it (SQLite: for the write lock) and ends as the first writer's
row says — the operator's "already exists", or its own write done (persistence/upsert.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.unit.catalog_world import write_point
from tests.unit.fleet_world import fleet_services
from vmvault.bootstrap import Services
from vmvault.domain.access import Role
from vmvault.domain.errors import HostExists, PolicyExists, TokenExists, VaultExists
from vmvault.domain.host_uri import DEFAULT_HOST_URI
from vmvault.domain.policy import Policy
from vmvault.domain.retention import Retention
from vmvault.domain.tokens import ApiToken
from vmvault.domain.vault import DEFAULT_LOCATION
from vmvault.domain.vm import PowerState, VmItem, VmState
from vmvault.persistence.catalog import SqlUnitOfWork

AT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
URI = "qemu+tcp://b.example/system"


@pytest.fixture
def services(tmp_path: Path, catalog_url: str) -> Iterator[Services]:
    services = fleet_services(tmp_path / "home", catalog_url)
    try:
        yield services
    finally:
        services.close()


def meanwhile(
    services: Services, first: Callable[[SqlUnitOfWork], None], second: Callable[[], Any]
) -> Any:
    """``first``'s writes held uncommitted while ``second`` runs in a thread, then committed:
    what ``second`` returned or raised."""
    ended: list[Any] = []

    def run() -> None:
        try:
            ended.append(second())
        except BaseException as e:
            ended.append(e)

    with services._uow() as uow:
        first(uow)
        racing = threading.Thread(target=run)
        racing.start()
        racing.join(1.0)  # it waits for the first's commit (SQLite: for the write lock)
        uow.commit()
    racing.join(30)
    assert not racing.is_alive()
    [outcome] = ended
    return outcome


def test_two_vaults_of_the_default_location_created_at_once_add_its_host_once(
    services: Services, tmp_path: Path
) -> None:
    """Each found no host in the location and added ``qemu:///system``: the second failed."""

    def create_a(uow: SqlUnitOfWork) -> None:
        uow.vaults.add("a", DEFAULT_LOCATION, str(tmp_path / "a"), AT)
        uow.hosts.add(DEFAULT_HOST_URI, DEFAULT_LOCATION, None, AT)  # its location's first

    b = meanwhile(services, create_a, lambda: services.vaults.create("b", DEFAULT_LOCATION, None))
    assert not isinstance(b, BaseException), b
    assert [v.name for v in services.vaults.list_vaults()] == ["a", "b"]
    assert [h.uri for h in services.vaults.list_hosts()] == [DEFAULT_HOST_URI]


def test_a_vault_created_twice_at_once_is_refused_as_existing(
    services: Services, tmp_path: Path
) -> None:
    def create(uow: SqlUnitOfWork) -> None:
        uow.vaults.add("main", DEFAULT_LOCATION, str(tmp_path / "elsewhere"), AT)

    again = meanwhile(services, create, lambda: services.vaults.create("main", "dc1", None))
    assert isinstance(again, VaultExists), again
    [vault] = services.vaults.list_vaults()
    assert (vault.location, vault.path) == (DEFAULT_LOCATION, str(tmp_path / "elsewhere"))
    assert not (tmp_path / "home" / "vaults" / "main").exists()  # the refused one's undone


def test_a_host_added_twice_at_once_is_refused_as_existing(services: Services) -> None:
    """Config management running ``host add`` on every node at once."""

    def add(uow: SqlUnitOfWork) -> None:
        uow.hosts.add(URI, "dc1", None, AT)

    again = meanwhile(services, add, lambda: services.vaults.add_host(URI, "dc1", check=False))
    assert isinstance(again, HostExists) and again.fields["location"] == "dc1", again
    assert [(h.uri, h.location) for h in services.vaults.list_hosts()] == [(URI, "dc1")]


def test_a_policy_created_twice_at_once_is_refused_as_existing(services: Services) -> None:
    services.vaults.create("main", DEFAULT_LOCATION, None)
    daily = Retention(daily=7)
    first = Policy.create("p", "daily@02:00", "UTC", daily)

    def add(uow: SqlUnitOfWork) -> None:
        uow.policies.add("main", first, AT)

    again = meanwhile(
        services, add, lambda: services.policies.create("main", "p", "daily@03:00", "UTC", daily)
    )
    assert isinstance(again, PolicyExists), again
    [policy], _ = services.policies.list_policies("main")
    assert policy.record.policy.schedule == first.schedule


def test_a_token_created_twice_at_once_is_refused_as_existing(services: Services) -> None:
    def add(uow: SqlUnitOfWork) -> None:
        uow.tokens.add(ApiToken("ci", Role.READER, "p" * 16, AT, "one"), "0" * 64)

    again = meanwhile(services, add, lambda: services.tokens.create("ci", Role.ADMIN, "two"))
    assert isinstance(again, TokenExists), again
    [token] = services.tokens.list_tokens()
    assert (token.role, token.created_by) == (Role.READER, "one")


def _vm(name: str) -> VmItem:
    return VmItem(
        "6f1c0e0a-0000-4000-8000-000000000001", name, URI, "b", "b", PowerState.RUNNING,
        [], [], True, "f", AT, AT,
    )  # fmt: skip


def test_two_vaults_holding_one_point_attached_at_once_record_it_once(
    services: Services, tmp_path: Path
) -> None:
    """Disaster recovery attaching a vault and the vault of its copies at once: each found no
    row of the point, and the second's insert failed on its id (the whole attach with it)."""
    stored = tmp_path / "stored"  # the copies' vault, written by another catalog
    other = fleet_services(tmp_path / "other", f"sqlite:///{tmp_path / 'other.db'}")
    try:
        other.vaults.create("copies", DEFAULT_LOCATION, str(stored))
        with other._uow() as uow:
            uow.vms.save(_vm("web"))
            uow.commit()
        write_point(tmp_path, other._uow, other.vaults, "copies", "p1", 1, AT, (_vm("").uuid, "web"),
                    disk=b"x" * 4096)  # fmt: skip
        with other._uow() as uow:
            point = uow.points.get("p1")
    finally:
        other.close()
    assert point is not None
    with services._uow() as uow:  # the VM known here (discovered): only the point is raced
        uow.vms.save(_vm("web"))
        uow.commit()

    def attach_main(uow: SqlUnitOfWork) -> None:  # the point's own vault: its row first
        uow.vaults.add("main", DEFAULT_LOCATION, str(tmp_path / "main"), AT)
        uow.points.add(replace(point, vault="main"))

    report = meanwhile(
        services,
        attach_main,
        lambda: services.vault_attach.attach("copies", DEFAULT_LOCATION, str(stored)),
    )
    assert not isinstance(report, BaseException), report
    assert (report.points, report.copies) == (0, 1)
    with services._uow() as uow:
        held = uow.points.get("p1")
        assert held is not None and held.vault == "main"
        assert [c.vault for c in uow.copies.of_point("p1")] == ["copies"]


def test_a_new_vm_discovered_by_two_at_once_is_written_once(
    services: Services, catalog_url: str
) -> None:
    """Discoveries of two vaults of one location (each its own conflict key) both read the
    VM as new on PostgreSQL: the second's insert failed on the uuid; now the first's row
    stands. (SQLite's second writer reads after the first's commit: it updates the row.)"""

    def discover(uow: SqlUnitOfWork) -> None:
        uow.vms.save_many([_vm("first")])

    def discover_again() -> None:
        with services._uow() as uow:
            uow.vms.save_many([_vm("second")])
            uow.commit()

    assert meanwhile(services, discover, discover_again) is None
    with services._uow() as uow:  # on PostgreSQL the second may also read after the commit
        kept = {"second"} if catalog_url.startswith("sqlite") else {"first", "second"}
        [(name, state)] = [(vm.name, vm.state) for vm in uow.vms.all()]
        assert name in kept and state is VmState.DISCOVERED


def test_a_vm_written_meanwhile_is_not_overwritten_by_an_attachs_placeholder(
    services: Services,
) -> None:
    """An attach adds a placeholder for a VM of its points the catalog does not know; a
    discovery (or registration) committing the VM meanwhile keeps its row (an upsert there
    would have overwritten it: no vault, no policy, vanished)."""
    services.vaults.create("main", DEFAULT_LOCATION, None)
    services.policies.create("main", "p", "daily@01:00", "UTC", Retention(daily=7))
    protected = replace(_vm("web"), state=VmState.PROTECTED, vault="main", policy="p")

    def register(uow: SqlUnitOfWork) -> None:
        uow.vms.save(protected)

    def attach_placeholder() -> bool:
        placeholder = replace(_vm("web"), power_state=PowerState.UNKNOWN, vanished_at=AT)
        with services._uow() as uow:
            added = uow.vms.add_if_new(placeholder)
            uow.commit()
        return added

    assert meanwhile(services, register, attach_placeholder) is False
    with services._uow() as uow:
        [vm] = uow.vms.all()
    assert (vm.state, vm.vault, vm.policy, vm.vanished_at) == (VmState.PROTECTED, "main", "p", None)


def test_a_new_vm_saved_by_two_at_once_is_written_by_the_last(services: Services) -> None:
    """:meth:`save`'s update found no row in either writer and both inserted."""

    def save(uow: SqlUnitOfWork) -> None:
        uow.vms.save(_vm("first"))

    def save_again() -> None:
        with services._uow() as uow:
            uow.vms.save(_vm("second"))
            uow.commit()

    assert meanwhile(services, save, save_again) is None
    with services._uow() as uow:
        assert [vm.name for vm in uow.vms.all()] == ["second"]
        uow.vms.save(_vm("third"))  # an existing row: updated, as before
        uow.commit()
    with services._uow() as uow:
        assert [vm.name for vm in uow.vms.all()] == ["third"]
