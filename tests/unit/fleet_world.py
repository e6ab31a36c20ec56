"""A fleet in a catalog (SQLite or PostgreSQL), for tests/unit/test_fleet_queries.py and
bench/fleet.py: libvirt's test driver hosts (vmvault.hypervisor.lab.fleet), added with
``host add`` and discovered by the real discovery through the real libvirt driver; then
some of the VMs marked registered and protected by one daily policy, written to the catalog
as registration and ``protect`` leave them (registering a thousand VMs one job each is not
what is measured here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain.recovery_point import Consistency, Method, PointDisk, RecoveryPoint
from vmvault.domain.retention import Retention
from vmvault.domain.vm import VmState
from vmvault.hypervisor.lab.fleet import FleetHost, write_fleet

LOCATION = "fleet"
VAULT = "main"
POLICY = "fleet-daily"
#: The policy's slot: daily at 02:00 UTC.
SCHEDULE = "daily@02:00"
#: When the fleet is made (the policy's creation): the next slot is at 02:00 the next day.
MADE_AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
#: An instant just after that slot: a tick then fires it.
SLOT_DUE = datetime(2026, 6, 2, 2, 0, 30, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def fleet_services(home: Path, url: str, clock: Callable[[], datetime] | None = None) -> Services:
    """The real services over the catalog at ``url`` (the real libvirt driver)."""
    env = {"VMVAULT_HOME": str(home), "VMVAULT_CATALOG_URL": url, "VMVAULT_GC_SCHEDULE": "off"}
    return bootstrap(Settings.from_env(env), clock)


def make_fleet(
    services: Services, directory: Path, vms: int, hosts: int, protect: int
) -> list[FleetHost]:
    """A vault and its policy, then :func:`grow_fleet`."""
    services.vaults.create(VAULT, LOCATION, None)
    services.policies.create(VAULT, POLICY, SCHEDULE, "UTC", Retention(daily=7))
    return grow_fleet(services, directory, vms, hosts, protect)


def grow_fleet(
    services: Services, directory: Path, vms: int, hosts: int, protect: int, first: int = 0
) -> list[FleetHost]:
    """``vms`` test-driver domains over ``hosts`` more hosts (numbered from ``first``), added
    to the vault's location and discovered; then the first ``protect`` VMs of the catalog (by
    name) protected by :data:`POLICY`."""
    made = write_fleet(directory, vms, hosts, first)
    for host in made:
        services.vaults.add_host(host.uri, LOCATION)
    outcome = services.inventory.discover(VAULT)
    assert outcome.error is None, outcome.error
    protect_first(services, protect)
    return made


def protect_first(services: Services, count: int) -> None:
    """The first ``count`` VMs (by name) registered with :data:`VAULT` and protected by
    :data:`POLICY`, as registration and ``protect`` leave them."""
    now = services.clock()
    with services._uow() as uow:
        chosen = uow.vms.all(limit=count)
        uow.vms.save_many(
            [
                replace(
                    vm,
                    state=VmState.PROTECTED,
                    vault=VAULT,
                    registered_at=now,
                    policy=POLICY,
                    protected_since=now,
                )
                for vm in chosen
            ]
        )
        uow.commit()


#: The consistency levels of the points :func:`add_points` makes, in turn.
LEVELS = (Consistency.APPLICATION, Consistency.FILE_SYSTEM, Consistency.CRASH)


def add_points(services: Services, per_vm: int, vault: str = VAULT) -> list[RecoveryPoint]:
    """``per_vm`` points in ``vault`` for every VM it protects that has none yet, one a day
    back from :data:`MADE_AT` (the newest an hour before it), two disks each (the second
    excluded on every other point), inserted in one statement (``add_many``), as backups
    would have committed them; returns them."""
    made: list[RecoveryPoint] = []
    with services._uow() as uow:
        having = uow.held.by_vm(vault)
        for vm in uow.vms.all(vault=vault, state=VmState.PROTECTED):
            if vm.uuid in having:
                continue
            for i in range(per_vm):
                disks = [
                    PointDisk(
                        "vda", (10 + i) << 30, "qcow2", bytes_read=1 << 30, bytes_new=i << 20
                    ),
                    PointDisk("vdb", 4 << 30, "qcow2", excluded=i % 2 == 1, bytes_new=1 << 20),
                ]
                made.append(
                    RecoveryPoint(
                        id=f"p-{vm.uuid}-{i}",
                        vault=vault,
                        vm_uuid=vm.uuid,
                        vm_name=vm.name,
                        created_at=MADE_AT - timedelta(days=i, hours=1),
                        consistency=LEVELS[i % len(LEVELS)],
                        method=Method.GUEST_QUIESCE,
                        frozen_ms=40 + i,
                        checkpoint=None,
                        disks=disks,
                    )
                )
        uow.points.add_many(made)
        uow.commit()
    return made
