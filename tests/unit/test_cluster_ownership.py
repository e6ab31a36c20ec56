"""Cluster ownership when the cluster cannot be asked, the CIB cache, the one pause rule, the
hand-off of ``allow_pause`` to the libvirt pull backup, and ``vm update`` in the VM's history.

The CIB query runs a real ``cibadmin`` found on ``PATH``: here small scripts that fail, hang,
print no XML or print the golden CIB."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from itertools import product
from pathlib import Path

import pytest

from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain import cluster, recovery_point
from vmvault.domain.cluster import pause_needed
from vmvault.domain.job import JobType
from vmvault.domain.recovery_point import choose_method
from vmvault.domain.vm import Disk, DomainFacts, PowerState, VmItem, VmState, classify_disk
from vmvault.hypervisor import pacemaker
from vmvault.hypervisor.libvirt.backup_driver import LibvirtBackupDriver
from vmvault.hypervisor.libvirt.driver import _with_pacemaker
from vmvault.hypervisor.pacemaker import CibCache, CibView, ClusterDomain, query_cib

NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
GOLDEN = Path(__file__).parent / "golden" / "pacemaker" / "cib.xml"
UUID = "8c2f0d6e-1111-4222-8333-944455556666"
OWNER = "pacemaker resource vm-db1 (VirtualDomain)"


def facts(**kw: object) -> DomainFacts:
    base = DomainFacts(
        uuid=UUID, name="db1", host_uri="qemu:///system", hostname="h1", group="h1",
        power_state=PowerState.RUNNING,
        disks=(classify_disk(Disk("vda", "file", "disk", "qcow2", "/v/a.qcow2")),),
        nics=(), agent_channel=False,
    )  # fmt: skip
    return DomainFacts(**{**base.__dict__, **kw})  # type: ignore[arg-type]


# --- cibadmin: no cluster, a failed query, a good one --------------------------------------------


def fake_cibadmin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    script = tmp_path / "bin" / "cibadmin"
    script.parent.mkdir(exist_ok=True)
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")


def test_no_cibadmin_means_no_cluster_not_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    assert query_cib() == CibView()


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("echo 'Could not connect to the CIB' >&2; exit 102", "failed (exit 102)"),
        ("exit 0", "failed (exit 0): no output"),
        ("echo '<cib><configuration>'", "not XML"),
        ("sleep 5", "took more than 0.3 s"),
    ],
)
def test_a_cibadmin_that_fails_makes_ownership_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, why: str
) -> None:
    fake_cibadmin(tmp_path, monkeypatch, body)
    monkeypatch.setattr(pacemaker, "CIB_TIMEOUT", 0.3)
    view = query_cib()
    assert view.domains == () and view.unknown is not None and why in view.unknown


def test_a_working_cibadmin_gives_the_primitives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cibadmin(tmp_path, monkeypatch, f"cat '{GOLDEN}'")
    view = query_cib()
    assert view.unknown is None and len(view.domains) == 3


def test_unknown_ownership_reaches_the_facts_and_a_marker_still_wins() -> None:
    unknown = CibView(unknown="cibadmin --query failed (exit 102)")
    out = _with_pacemaker(facts(), unknown)
    assert out.cluster_managed is None
    assert (
        out.cluster_unknown == "pacemaker ownership not known: cibadmin --query failed (exit 102)"
    )
    marked = _with_pacemaker(facts(cluster_managed="marked"), unknown)
    assert marked.cluster_managed == "marked" and marked.cluster_unknown is None
    owned = CibView(domains=(ClusterDomain("db1", None),))
    assert (
        _with_pacemaker(facts(), owned).cluster_managed == "pacemaker resource db1 (VirtualDomain)"
    )


def test_apply_keeps_the_recorded_owner_when_ownership_is_unknown() -> None:
    vm = VmItem.from_facts(facts(cluster_managed=OWNER), NOW)
    vm.apply(facts(cluster_unknown="pacemaker ownership not known: timeout"), NOW)
    assert vm.cluster_managed == OWNER
    vm.apply(facts(), NOW)  # the cluster answered and no longer owns it
    assert vm.cluster_managed is None


def test_the_cib_is_asked_once_per_host_within_its_ttl() -> None:
    calls: list[int] = []
    clock = [100.0]

    def query() -> CibView:
        calls.append(1)
        return CibView(unknown="timeout") if len(calls) == 1 else CibView()

    cache = CibCache(query, clock=lambda: clock[0], ttl=30)
    assert cache.view("h1").unknown == "timeout"
    clock[0] += 29
    assert cache.view("h1").unknown == "timeout"  # a failure is cached too
    assert len(calls) == 1
    clock[0] += 2
    assert cache.view("h1") == CibView() and len(calls) == 2
    cache.view("h2")
    assert len(calls) == 3


# --- one pause rule ------------------------------------------------------------------------------


def test_pause_needed_is_the_rule_choose_method_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    for agent, crash_only in product((True, False), repeat=2):
        vm = VmItem.from_facts(facts(agent_channel=agent), NOW)
        vm.crash_consistent_only = crash_only
        choice = choose_method(PowerState.RUNNING, agent, crash_only)
        need = pause_needed(vm)
        assert (need is not None) == (choice.quiesce == "pause")
        assert need is None or choice.reason.startswith(need)
    # derived, not copied: a change of the rule changes both
    monkeypatch.setattr(recovery_point, "pause_reason", lambda a, c: "new rule")
    monkeypatch.setattr(cluster, "pause_reason", recovery_point.pause_reason)
    vm = VmItem.from_facts(facts(agent_channel=True), NOW)
    assert pause_needed(vm) == "new rule"
    assert choose_method(PowerState.RUNNING, True, False).quiesce == "pause"


# --- allow_pause reaches the libvirt pull backup -------------------------------------------------


@pytest.mark.parametrize("allow", [True, False])
def test_allow_pause_is_handed_to_pull_backup(tmp_path: Path, allow: bool) -> None:
    driver = LibvirtBackupDriver(tmp_path)
    disk = Disk("vda", "file", "disk", "qcow2", "/v/a.qcow2")
    session = driver.take_point(
        "qemu:///system", UUID, [disk], checkpoint=None, incremental_from=None,
        quiesce="freeze", cancel=lambda: False, allow_pause=allow,
    )  # fmt: skip
    assert session.backup.allow_pause is allow  # nothing ran: the session is not entered


# --- vm update is recorded in the VM's history ---------------------------------------------------


@pytest.fixture()
def services(tmp_path: Path) -> Services:
    svc = bootstrap(Settings.from_env({"VMVAULT_HOME": str(tmp_path / "home")}), lambda: NOW)
    svc.vaults.create("main", "local", None)
    return svc


def _vm(services: Services, name: str, uuid: str, state: VmState) -> VmItem:
    vm = VmItem.from_facts(facts(name=name, uuid=uuid, agent_channel=True), NOW)
    vm.disks.append(classify_disk(Disk("vdb", "file", "disk", "raw", "/v/b.raw")))
    vm.state, vm.vault = state, None if state is VmState.DISCOVERED else "main"
    with services._uow() as uow:
        uow.vms.save(vm)
        uow.commit()
    return vm


def test_vm_update_is_recorded_in_the_vms_history(services: Services) -> None:
    vm = _vm(services, "db1", UUID, VmState.REGISTERED)
    services.inventory.update_vm("db1", exclude_disks=["vdb"])
    history = services.inventory.history(vm)
    assert [j.type for j in history] == [JobType.CONFIGURE_PROTECTION]
    job, log = services.jobs.show(history[0].id)
    assert job.vault == "main" and job.state.final and job.ended_at == NOW
    assert any("disks excluded by user: vdb (before: none)" in line for line in log)
    services.inventory.update_vm("db1", exclude_disks=["vdb"])  # no change: nothing recorded
    services.inventory.update_vm("db1", include_disks=["vdb"])
    history = services.inventory.history(vm)
    assert len(history) == 2
    _, log = services.jobs.show(history[0].id)
    assert any("disks excluded by user: none (before: vdb)" in line for line in log)


def test_vm_update_of_a_discovered_vm_is_recorded_under_its_locations_vault(
    services: Services,
) -> None:
    with services._uow() as uow:  # the vault's location has the VM's host
        host = uow.hosts.get("qemu:///system")
    assert host is not None and host.location == "local"
    vm = _vm(services, "web", "9c2f0d6e-1111-4222-8333-944455556666", VmState.DISCOVERED)
    services.inventory.update_vm("web", exclude_disks=["vdb"])
    (job,) = services.inventory.history(vm)
    assert job.vault == "main" and job.vm_name == "h1/web"
