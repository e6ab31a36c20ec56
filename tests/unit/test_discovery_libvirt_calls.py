"""How many libvirt calls a discovery makes (docs/deployment.md, "Fleet scale"): a fixed number
per host, whatever its number of domains, plus one per domain, its XML.

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
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.unit.fleet_world import LOCATION, VAULT, fleet_services
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
