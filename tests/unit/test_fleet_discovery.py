"""Discovery of a fleet (docs/deployment.md, "Fleet scale"): how many libvirt calls it makes
(a fixed number per host, whatever its number of domains, plus one per domain, its XML), and
what it writes of the VMs seen again as they were (their ``last_seen`` alone).

The hosts are libvirt's test driver (tests/unit/fleet_world.py), discovered by the real
discovery through the real libvirt driver; every method call on libvirt's connection and
domain objects (and every ``libvirt.open``) is counted meanwhile.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import libvirt
import pytest
from sqlalchemy import Engine, event

from tests.unit.fleet_world import LOCATION, MADE_AT, VAULT, Clock, fleet_services
from vmvault.domain.vm import PowerState
from vmvault.hypervisor.lab.fleet import RUNNING_EVERY, domain_uuid, write_fleet
from vmvault.hypervisor.libvirt.driver import LibvirtHypervisor

#: Methods that read the handle libvirt already gave us (no call reaches the driver).
LOCAL = {"UUIDString", "UUID", "name", "ID", "connect"}


@contextmanager
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Every call of a libvirt connection's or domain's method, by name, meanwhile (the
    discovery's listers are threads: counted under a lock)."""
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def counted(name: str, method: Any) -> Any:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            with lock:
                calls[name] += 1
            return method(*args, **kwargs)

        return call

    for cls in (libvirt.virConnect, libvirt.virDomain):
        for name, method in list(vars(cls).items()):
            if callable(method) and not name.startswith("_"):
                monkeypatch.setattr(cls, name, counted(name, method))
    monkeypatch.setattr(libvirt, "open", counted("open", libvirt.open))
    yield calls
    monkeypatch.undo()


def discovery_calls(
    monkeypatch: pytest.MonkeyPatch, tmp: Path, vms: int, hosts: int
) -> Counter[str]:
    """The libvirt calls of the first discovery of ``vms`` domains over ``hosts`` hosts
    (local accessors left out), after checking what it found."""
    services = fleet_services(tmp / "home", f"sqlite:///{tmp}/catalog.db")
    try:
        services.vaults.create(VAULT, LOCATION, None)
        for host in write_fleet(tmp / "fleet", vms, hosts):
            services.vaults.add_host(host.uri, LOCATION)
        with counting(monkeypatch) as calls:
            outcome = services.inventory.discover(VAULT)
        assert outcome.error is None, outcome.error
        assert outcome.result is not None and len(outcome.result.new) == vms
        found = {vm.uuid: vm for vm in services.inventory.list_vms(VAULT, limit=1000)[0]}
        for i in range(vms // hosts):  # the state came from getAllDomainStats
            running = i % RUNNING_EVERY == 0
            want = PowerState.RUNNING if running else PowerState.SHUT_OFF
            assert found[domain_uuid(0, i)].power_state is want
    finally:
        services.close()
    return Counter({name: n for name, n in calls.items() if name not in LOCAL})


def test_libvirt_calls_are_per_host_apart_from_the_xml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    small = discovery_calls(monkeypatch, tmp_path / "small", vms=6, hosts=3)
    big = discovery_calls(monkeypatch, tmp_path / "big", vms=90, hosts=3)
    assert small.pop("XMLDesc") == 6 and big.pop("XMLDesc") == 90
    assert big == small  # the rest: a fixed number per host
    assert all(n % 3 == 0 for n in small.values()), small
    per_host = {name: n // 3 for name, n in small.items()}
    assert per_host == {
        "open": 1,
        "getHostname": 1,
        "getAllDomainStats": 1,
        "listAllDomains": 1,
        "close": 1,
    }


def test_state_and_persistence_come_from_the_host_listing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libvirt's shared default test host: its persistent running ``test`` domain and a
    transient one started here, paused — state and persistence of each as libvirt says."""
    conn = libvirt.open("test:///default")  # kept open: the default host lives while it is
    try:
        xml = (
            "<domain type='test'><name>vmvault-transient</name><memory>65536</memory>"
            "<os><type>hvm</type></os></domain>"
        )
        transient = conn.createXML(xml, 0)
        transient.suspend()
        with counting(monkeypatch) as calls:
            facts = {f.name: f for f in LibvirtHypervisor().list_domains("test:///default")}
        assert calls["XMLDesc"] == len(facts) and calls["state"] == 0
        assert calls["isPersistent"] == 0
        assert facts["test"].persistent and facts["test"].power_state is PowerState.RUNNING
        made = facts["vmvault-transient"]
        assert not made.persistent and made.power_state is PowerState.PAUSED
        transient.destroy()
    finally:
        conn.close()


@contextmanager
def vm_updates() -> Iterator[list[tuple[str, int]]]:
    """Each ``UPDATE vms`` sent meanwhile (SQLite): its first column set, and how many rows
    it was sent for (an ``executemany``'s parameter sets; an ``IN`` list's uuids)."""
    sent: list[tuple[str, int]] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        if statement.startswith("UPDATE vms SET "):
            column = statement.removeprefix("UPDATE vms SET ").split("=")[0].strip()
            if many:
                rows = len(params)
            elif " IN (" in statement:  # SQLite's "?"s: one set, the others the uuids
                rows = statement.count("?") - 1
            else:
                rows = 1
            sent.append((column, rows))

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", seen)


def test_vms_seen_again_as_they_were_get_their_last_seen_only(tmp_path: Path) -> None:
    """A second discovery writes ``last_seen`` of the VMs it finds as they were, and the
    whole row of one whose row differs otherwise (here its host's name, changed behind it):
    that row is set right, the others keep every other column."""
    clock = Clock(MADE_AT)
    services = fleet_services(tmp_path / "home", f"sqlite:///{tmp_path}/catalog.db", clock)
    try:
        services.vaults.create(VAULT, LOCATION, None)
        for host in write_fleet(tmp_path / "fleet", 12, 2):
            services.vaults.add_host(host.uri, LOCATION)
        assert services.inventory.discover(VAULT).error is None
        first = {vm.uuid: vm for vm in services.inventory.list_vms(VAULT)[0]}
        odd = domain_uuid(1, 3)
        with services._uow() as uow:
            vm = uow.vms.get(odd)
            assert vm is not None
            vm.hostname = "renamed-behind-its-back"
            uow.vms.save(vm)
            uow.commit()
        clock.now = MADE_AT + timedelta(hours=1)
        with vm_updates() as updates:
            outcome = services.inventory.discover(VAULT)
        assert sorted(updates) == [("last_seen", 11), ("name", 1)]  # columns set, by rows
        assert outcome.result is not None and len(outcome.result.unchanged) == 12
        again = {vm.uuid: vm for vm in services.inventory.list_vms(VAULT)[0]}
        assert {vm.last_seen for vm in again.values()} == {clock.now}
        assert again[odd].hostname == first[odd].hostname
        for uuid, vm in again.items():
            assert replace(vm, last_seen=first[uuid].last_seen) == first[uuid]
    finally:
        services.close()
