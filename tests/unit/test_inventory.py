"""Discovery reconciliation, VM references and registration rules (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from vmvault.domain.errors import (
    AgentNotConfigured,
    AgentNotResponding,
    AgentTooOld,
    AlreadyRegistered,
    TooManyDisks,
    UnsupportedConfiguration,
    VmAmbiguous,
    VmDeleted,
    VmNotFound,
)
from vmvault.domain.inventory import (
    AgentReport,
    RegistrationLimits,
    assess_registration,
    match_vm,
    parse_version,
    reconcile,
    version_at_least,
)
from vmvault.domain.vm import Disk, DomainFacts, PowerState, VmItem, VmState, classify_disk

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
QCOW = classify_disk(Disk("vda", "file", "disk", "qcow2", "/v/a.qcow2"))
RAW = classify_disk(Disk("vdb", "file", "disk", "raw", "/v/b.raw"))
LUN = classify_disk(Disk("sda", "block", "lun", "raw", "/dev/loop0"))
NET = classify_disk(Disk("vdc", "network", "disk", "raw", "nbd://x"))
CDROM = classify_disk(Disk("sdb", "file", "cdrom", "raw", "/iso"))


def facts(uuid: str, name: str, uri: str = "qemu:///system", **kw: object) -> DomainFacts:
    base = DomainFacts(
        uuid=uuid,
        name=name,
        host_uri=uri,
        hostname=uri.split("/")[2] or "h1",
        group="g",
        power_state=PowerState.RUNNING,
        disks=(QCOW,),
        nics=(),
        agent_channel=True,
        fingerprint=f"fp-{name}",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def vm(uuid: str = "u1", name: str = "web", **kw: object) -> VmItem:
    item = VmItem.from_facts(facts(uuid, name), T0)
    for k, v in kw.items():
        setattr(item, k, v)
    return item


# --- classification ----------------------------------------------------------------------------


def test_disk_classification() -> None:
    assert not QCOW.excluded and QCOW.supports_checkpoints
    assert not RAW.excluded and not RAW.supports_checkpoints
    assert LUN.excluded and "pass-through" in (LUN.reason or "")
    assert NET.excluded and "network" in (NET.reason or "")
    assert CDROM.excluded and "cdrom" in (CDROM.reason or "")
    vmdk = classify_disk(Disk("vde", "file", "disk", "vmdk", "/x.vmdk"))
    assert vmdk.excluded and "vmdk" in (vmdk.reason or "")


# --- reconcile -------------------------------------------------------------------------------


def test_reconcile_new_changed_unchanged_vanished() -> None:
    a, b, c = vm("a", "a"), vm("b", "b"), vm("c", "c")
    later = T0 + timedelta(hours=1)
    seen = [
        facts("a", "a"),  # unchanged
        facts("b", "b", fingerprint="other"),  # changed config
        facts("d", "d"),  # new
    ]
    r = reconcile([a, b, c], seen, {"qemu:///system"}, later)
    assert [v.uuid for v in r.new] == ["d"]
    assert [v.uuid for v in r.changed] == ["b"]
    assert [v.uuid for v in r.unchanged] == ["a"]
    assert [v.uuid for v in r.vanished] == ["c"]
    assert c.vanished_at == later and a.last_seen == later
    assert r.summary() == "1 new, 1 changed, 1 unchanged, 1 vanished"


def test_reconcile_unscanned_host_is_not_vanished() -> None:
    other = vm("x", "x", host_uri="qemu+ssh://h2/system")
    r = reconcile([other], [], {"qemu:///system"}, T0)
    assert r.vanished == [] and other.vanished_at is None


def test_reconcile_reappearing_vm_is_changed_and_keeps_state() -> None:
    gone = vm("a", "a", vanished_at=T0, state=VmState.REGISTERED)
    r = reconcile([gone], [facts("a", "a")], {"qemu:///system"}, T0 + timedelta(1))
    assert r.changed == [gone] and gone.vanished_at is None
    assert gone.state is VmState.REGISTERED


def test_reconcile_power_state_change_is_a_change() -> None:
    a = vm("a", "a")
    r = reconcile([a], [facts("a", "a", power_state=PowerState.SHUT_OFF)], {"qemu:///system"}, T0)
    assert r.changed == [a] and a.power_state is PowerState.SHUT_OFF


def test_vanished_is_reported_once() -> None:
    c = vm("c", "c")
    reconcile([c], [], {"qemu:///system"}, T0)
    again = reconcile([c], [], {"qemu:///system"}, T0 + timedelta(1))
    assert again.vanished == [] and c.vanished_at == T0


# --- references ------------------------------------------------------------------------------


def test_match_by_uuid_prefix_name_host_and_group() -> None:
    one = vm("11111111-aaaa", "web", hostname="h1", group="blue")
    two = vm("22222222-bbbb", "web", hostname="h2", group="red")
    db = vm("33333333-cccc", "db", hostname="h1", group="blue")
    everything = [one, two, db]
    assert match_vm(everything, "22222222-bbbb") is two
    assert match_vm(everything, "33333333") is db
    assert match_vm(everything, "db") is db
    assert match_vm(everything, "h2/web") is two
    assert match_vm(everything, "blue/web") is one
    with pytest.raises(VmAmbiguous) as amb:
        match_vm(everything, "web")
    assert "h1/web" in amb.value.text and "h2/web" in amb.value.text
    with pytest.raises(VmNotFound):
        match_vm(everything, "nope")


def test_match_prefers_the_live_vm_over_a_vanished_namesake() -> None:
    old = vm("1", "web", vanished_at=T0)
    new = vm("2", "web")
    assert match_vm([old, new], "web") is new


# --- registration ----------------------------------------------------------------------------

LIMITS = RegistrationLimits(max_disks=2, min_agent_version="5.0")
OK_AGENT = AgentReport(responded=True, version="7.2.22")


def test_register_running_vm_with_agent() -> None:
    out = assess_registration(vm(), OK_AGENT, LIMITS)
    assert out.warnings == [] and out.agent_version == "7.2.22" and not out.crash_consistent_only


def test_register_shut_off_vm_warns_crash_consistent() -> None:
    out = assess_registration(vm(power_state=PowerState.SHUT_OFF), None, LIMITS)
    assert out.crash_consistent_only and "crash-consistent" in out.warnings[0]


def test_register_without_channel_fails_unless_allowed() -> None:
    with pytest.raises(AgentNotConfigured):
        assess_registration(vm(agent_channel=False), None, LIMITS)
    out = assess_registration(vm(agent_channel=False), None, LIMITS, allow_crash_consistent=True)
    assert out.crash_consistent_only


def test_register_silent_agent_fails() -> None:
    with pytest.raises(AgentNotResponding):
        assess_registration(vm(), AgentReport(responded=False), LIMITS)


def test_register_old_agent_fails() -> None:
    with pytest.raises(AgentTooOld) as exc:
        assess_registration(vm(), AgentReport(responded=True, version="4.2.0"), LIMITS)
    assert exc.value.code == "AGENT_TOO_OLD" and "5.0" in exc.value.remedy_text


def test_register_too_many_disks() -> None:
    disks = [replace(QCOW, target=f"vd{c}") for c in "abc"]
    with pytest.raises(TooManyDisks) as exc:
        assess_registration(vm(disks=disks), OK_AGENT, LIMITS)
    assert "3 disks" in exc.value.text and "limit is 2" in exc.value.text


def test_excluded_disks_do_not_count_and_are_named() -> None:
    out = assess_registration(vm(disks=[QCOW, RAW, LUN, CDROM]), OK_AGENT, LIMITS)
    text = " | ".join(out.warnings)
    assert "sda is excluded" in text and "sdb is excluded" in text
    assert "vdb is raw" in text and "full backup every time" in text


def test_register_vm_with_only_excluded_disks() -> None:
    with pytest.raises(UnsupportedConfiguration):
        assess_registration(vm(disks=[LUN, NET]), OK_AGENT, LIMITS)


def test_register_twice_and_vanished() -> None:
    with pytest.raises(AlreadyRegistered):
        assess_registration(vm(state=VmState.REGISTERED, vault="v"), OK_AGENT, LIMITS)
    with pytest.raises(VmDeleted):
        assess_registration(vm(vanished_at=T0), OK_AGENT, LIMITS)


@pytest.mark.parametrize(
    ("have", "need", "ok"),
    [
        ("7.2.22", "5.0.0", True),
        ("5.0", "5.0.0", True),
        ("4.9.9", "5", False),
        ("10.0", "9.1", True),
    ],
)
def test_versions(have: str, need: str, ok: bool) -> None:
    assert version_at_least(have, need) is ok


def test_parse_version_ignores_suffixes() -> None:
    assert parse_version("7.2.22-dfsg") == (7, 2, 22)
