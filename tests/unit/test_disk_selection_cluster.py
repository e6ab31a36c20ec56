"""Selective disks and cluster-managed VMs: the pure rules, the CIB parser (golden file) and
the libvirt metadata marker."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vmvault.domain.cluster import HOST_SETTING, mark_from_host, pause_needed, refuse_replace
from vmvault.domain.disk_selection import select_disks
from vmvault.domain.errors import (
    AgentNotConfigured,
    AllDisksExcluded,
    ClusterManagedNoPause,
    ClusterManagedReplace,
    DiskNotBackupable,
    DiskNotOfVm,
    InvalidInput,
)
from vmvault.domain.inventory import AgentReport, RegistrationLimits, assess_registration
from vmvault.domain.recovery_point import (
    Consistency,
    Method,
    PointDisk,
    RecoveryPoint,
    plan_reads,
)
from vmvault.domain.restore import RestoreMode, plan_new, plan_replace
from vmvault.domain.vm import EXCLUDED_BY_USER, Disk, DomainFacts, PowerState, VmItem, classify_disk
from vmvault.hypervisor.libvirt.domxml import CLUSTER_NS, facts_from_xml
from vmvault.hypervisor.libvirt.restore_xml import inspect_xml, render_xml
from vmvault.hypervisor.pacemaker import ClusterDomain, owner_of, virtual_domains

T0 = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
GOLDEN = Path(__file__).parent / "golden" / "pacemaker" / "cib.xml"
VDA = classify_disk(Disk("vda", "file", "disk", "qcow2", "/v/a.qcow2"))
VDB = classify_disk(Disk("vdb", "file", "disk", "qcow2", "/v/b.qcow2"))
CDROM = classify_disk(Disk("sdb", "file", "cdrom", "raw", "/iso"))


def item(*disks: Disk, **kw: object) -> VmItem:
    facts = DomainFacts(
        uuid="8c2f0d6e-1111-4222-8333-944455556666",
        name="db1",
        host_uri="qemu:///system",
        hostname="h1",
        group="h1",
        power_state=PowerState.RUNNING,
        disks=disks or (VDA, VDB, CDROM),
        nics=(),
        agent_channel=True,
    )
    vm = VmItem.from_facts(facts, T0)
    for k, v in kw.items():
        setattr(vm, k, v)
    return vm


# --- selective disks ---------------------------------------------------------------------------


def test_an_excluded_disk_is_left_out_with_its_reason() -> None:
    vm = item()
    vm.excluded_targets = select_disks(vm, ["vdb"])
    assert [d.target for d in vm.backup_disks] == ["vda"]
    reasons = {d.target: d.reason for d in vm.excluded_disks}
    assert reasons == {"vdb": EXCLUDED_BY_USER, "sdb": "cdrom media"}
    assert [d.target for d in vm.disks if d.excluded] == ["sdb"]  # discovery's view unchanged


def test_include_takes_a_disk_back_and_names_are_deduplicated() -> None:
    vm = item(excluded_targets=["vdb"])
    assert select_disks(vm, include=["vdb"]) == []
    with pytest.raises(AllDisksExcluded):  # vdb already out: vda would leave nothing
        select_disks(vm, ["vda"])
    vdc = classify_disk(Disk("vdc", "file", "disk", "raw", "/v/c.raw"))
    three = item(VDA, VDB, vdc, excluded_targets=["vdb"])
    assert select_disks(three, [" vdc ", "vdc"]) == ["vdb", "vdc"]
    assert select_disks(three, ["vda"], ["vdb"]) == ["vda"]


def test_excluding_every_disk_is_refused() -> None:
    with pytest.raises(AllDisksExcluded) as exc:
        select_disks(item(), ["vda", "vdb"])
    assert exc.value.code == "ALL_DISKS_EXCLUDED" and "vda, vdb" in exc.value.text


def test_a_name_that_is_not_a_disk_of_the_vm_is_refused() -> None:
    with pytest.raises(DiskNotOfVm) as exc:
        select_disks(item(), ["vdz"])
    assert exc.value.code == "DISK_NOT_OF_VM" and "vda, vdb, sdb" in exc.value.text


def test_a_disk_left_out_automatically_cannot_be_included() -> None:
    with pytest.raises(DiskNotBackupable) as exc:
        select_disks(item(), include=["sdb"])
    assert "cdrom media" in exc.value.text


@pytest.mark.parametrize(
    ("exclude", "include"),
    [(["vdb"], ["vdb"]), (["../etc"], []), ([""], []), (["VDB"], [])],
)
def test_bad_names_are_invalid_input(exclude: list[str], include: list[str]) -> None:
    with pytest.raises(InvalidInput):
        select_disks(item(), exclude, include)


def test_an_included_disk_gets_a_full_read_and_the_others_stay_incremental() -> None:
    previous = RecoveryPoint(
        id="p1",
        vault="v",
        vm_uuid="u",
        vm_name="db1",
        created_at=T0,
        consistency=Consistency.CRASH,
        method=Method.SAVED_STATE,
        frozen_ms=0,
        checkpoint="vmvault-p1",
        disks=[
            PointDisk("vda", 1024),
            PointDisk("vdb", 0, excluded=True, reason=EXCLUDED_BY_USER),
        ],
    )
    reads = {
        r.target: r
        for r in plan_reads([("vda", "qcow2", 1024), ("vdb", "qcow2", 1024)], previous, True)
    }
    assert reads["vda"].incremental
    assert not reads["vdb"].incremental and "disk added" in reads["vdb"].reason


# --- cluster-managed ---------------------------------------------------------------------------


def test_host_settings_mark_and_unmark_but_never_override_the_domain() -> None:
    vm = item()
    mark_from_host(vm, ["db1"], "h1")
    assert vm.cluster_managed == f"{HOST_SETTING} h1"
    mark_from_host(vm, [], "h1")
    assert vm.cluster_managed is None
    mark_from_host(vm, [vm.uuid], "h1")  # by uuid too
    assert vm.cluster_managed is not None
    vm.cluster_managed = "marked cluster-managed in its libvirt metadata"
    mark_from_host(vm, [], "h1")
    assert vm.cluster_managed == "marked cluster-managed in its libvirt metadata"


def test_replace_of_a_cluster_managed_vm_is_refused() -> None:
    refuse_replace(item())  # not cluster-managed: nothing
    with pytest.raises(ClusterManagedReplace) as exc:
        refuse_replace(item(cluster_managed="pacemaker resource vm-db1"))
    assert exc.value.code == "CLUSTER_MANAGED_REPLACE" and "--as-new" in exc.value.remedy_text


def test_registration_that_would_pause_a_cluster_managed_vm_is_refused() -> None:
    limits = RegistrationLimits()
    owned = "marked cluster-managed in its libvirt metadata"
    no_channel = item(agent_channel=False, cluster_managed=owned)
    with pytest.raises(AgentNotConfigured):
        assess_registration(no_channel, None, limits)
    with pytest.raises(ClusterManagedNoPause) as exc:
        assess_registration(no_channel, None, limits, allow_crash_consistent=True)
    assert exc.value.code == "CLUSTER_MANAGED_NO_PAUSE"
    silent = item(cluster_managed=owned)
    with pytest.raises(ClusterManagedNoPause):
        assess_registration(silent, AgentReport(False), limits, allow_crash_consistent=True)
    # the same VM not cluster-managed registers crash-consistent (its backups pause it)
    plain = assess_registration(item(), AgentReport(False), limits, allow_crash_consistent=True)
    assert plain.crash_consistent_only
    # shut off: registered, never crash-consistent-only (that would mean pausing it later)
    off = item(cluster_managed=owned, power_state=PowerState.SHUT_OFF)
    outcome = assess_registration(off, None, limits)
    assert not outcome.crash_consistent_only and "cluster-managed" in outcome.warnings[-1]
    assert pause_needed(off) is None
    assert pause_needed(item(crash_consistent_only=True)) == "registered crash-consistent only"


DOMAIN = """<domain type='qemu'><name>db1</name>
<uuid>8c2f0d6e-1111-4222-8333-944455556666</uuid>
<metadata>{meta}</metadata>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='/v/a.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>"""


def test_the_metadata_marker_makes_a_domain_cluster_managed() -> None:
    plain = facts_from_xml(DOMAIN.format(meta=""), uri="qemu:///system", hostname="h", state=1)
    assert plain.cluster_managed is None
    marker = f"<c:managed xmlns:c='{CLUSTER_NS}' by='pacemaker'/>"
    marked = facts_from_xml(DOMAIN.format(meta=marker), uri="qemu:///system", hostname="h", state=1)
    assert marked.cluster_managed == "marked cluster-managed in its libvirt metadata (by pacemaker)"
    assert marked.fingerprint != plain.fingerprint  # a discovery reports it as changed
    other_ns = "<c:managed xmlns:c='https://example.org/other'/>"
    assert (
        facts_from_xml(
            DOMAIN.format(meta=other_ns), uri="qemu:///system", hostname="h", state=1
        ).cluster_managed
        is None
    )


# --- pacemaker: the golden CIB -----------------------------------------------------------------


def test_virtual_domain_primitives_of_the_golden_cib() -> None:
    assert virtual_domains(GOLDEN.read_text()) == [
        ClusterDomain("vm-db1", "/etc/pacemaker/db1.xml"),
        ClusterDomain("web-vm", "/shared/libvirt/web-frontend.xml"),
        ClusterDomain("mail", "/missing/other-name.xml"),
    ]


def test_domains_are_matched_by_their_config_file_else_by_its_name() -> None:
    domains = virtual_domains(GOLDEN.read_text())
    configs = {
        "/etc/pacemaker/db1.xml": "<domain><name>database-one</name>"
        "<uuid>8C2F0D6E-1111-4222-8333-944455556666</uuid></domain>",
    }
    read = configs.get
    # by the uuid in the config file (case-insensitive), whatever the domain's name
    owner = owner_of(domains, "renamed", "8c2f0d6e-1111-4222-8333-944455556666", read)
    assert owner == "pacemaker resource vm-db1 (VirtualDomain, config /etc/pacemaker/db1.xml)"
    assert owner_of(domains, "database-one", "x", read) is not None  # by name in the file
    # an unreadable config: the file's stem, or the resource id, is the domain's name
    assert owner_of(domains, "web-frontend", "y", read) is not None
    assert owner_of(domains, "mail", "z", read) is not None
    assert owner_of(domains, "db1", "w", read) is None  # db1.xml names another domain
    assert owner_of(domains, "fence-1", "v", read) is None  # not a VirtualDomain


# --- restore of a point that lacks an excluded disk ---------------------------------------------

TWO_DISKS = """<domain type='qemu'><name>db1</name><uuid>{uuid}</uuid><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='/v/db1/a.qcow2'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{vdb}'/><target dev='vdb' bus='virtio'/></disk>
</devices></domain>"""
UUID = "8c2f0d6e-1111-4222-8333-944455556666"
POINT_DISKS = [
    PointDisk("vda", 1 << 20, "qcow2"),
    PointDisk("vdb", 0, excluded=True, reason=EXCLUDED_BY_USER),
]


def test_as_new_leaves_the_excluded_disk_out_and_says_why() -> None:
    shape = inspect_xml(TWO_DISKS.format(uuid=UUID, vdb="/v/db1/b.qcow2"))
    plan = plan_new(
        RestoreMode.AS_NEW,
        shape,
        POINT_DISKS,
        name="db1-copy",
        uuid="11111111-2222-3333-4444-555555555555",
        host_uri="qemu:///system",
        directory=Path("/srv/r"),
        default_dir=Path("/srv/r"),
        nic_problems={},
    )
    assert [d.target for d in plan.disks] == ["vda"]
    assert plan.drop_disks == {"vdb": EXCLUDED_BY_USER}
    assert any("vdb (excluded by user)" in w and "left out of db1-copy" in w for w in plan.warnings)
    root = ET.fromstring(render_xml(TWO_DISKS.format(uuid=UUID, vdb="/v/db1/b.qcow2"), plan))
    assert [t.get("dev") for t in root.iter("target") if t.get("dev")] == ["vda"]


def test_replace_keeps_the_current_excluded_disk_attached_where_it_is_now() -> None:
    point_xml = TWO_DISKS.format(uuid=UUID, vdb="/v/db1/b.qcow2")
    current = inspect_xml(TWO_DISKS.format(uuid=UUID, vdb="/moved/b.qcow2"))
    plan = plan_replace(
        inspect_xml(point_xml), POINT_DISKS, current=current, host_uri="u", nic_problems={}
    )
    assert [d.target for d in plan.disks] == ["vda"] and not plan.drop_disks
    assert any("keeps its current vdb (/moved/b.qcow2)" in n for n in plan.notes)
    sources = [s.get("file") for s in ET.fromstring(render_xml(point_xml, plan)).iter("source")]
    assert sources == ["/v/db1/a.qcow2", "/moved/b.qcow2"]
    # a VM that no longer has the disk: it is left out of the definition, with a warning
    gone = inspect_xml(point_xml.replace("<target dev='vdb'", "<target dev='vdc'"))
    plan = plan_replace(inspect_xml(point_xml), POINT_DISKS, current=gone, host_uri="u",
                        nic_problems={})  # fmt: skip
    assert plan.drop_disks == {"vdb": EXCLUDED_BY_USER}
    assert any("no longer has it" in w for w in plan.warnings)


def test_the_shape_of_a_marked_domain_carries_the_marker() -> None:
    marker = f"<metadata><c:managed xmlns:c='{CLUSTER_NS}'/></metadata>"
    xml = TWO_DISKS.format(uuid=UUID, vdb="/b").replace("<devices>", marker + "<devices>")
    assert inspect_xml(xml).cluster_managed == "marked cluster-managed in its libvirt metadata"
    assert inspect_xml(TWO_DISKS.format(uuid=UUID, vdb="/b")).cluster_managed is None


def test_registration_warns_of_automatic_exclusions_only() -> None:
    vm = item(excluded_targets=["vdb"])
    outcome = assess_registration(vm, AgentReport(True, "8.0.0"), RegistrationLimits())
    assert outcome.warnings == ["disk sdb is excluded from backups: cdrom media"]
