"""The one resolver of VM references (services/vm_refs.py), over an in-memory catalog."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from vmvault.domain.errors import (
    AlreadyRegistered,
    InvalidInput,
    VmAmbiguous,
    VmNotFound,
    VmNotInLocation,
    VmNotRegistered,
)
from vmvault.domain.vault import Host, Vault
from vmvault.domain.vm import PowerState, VmItem, VmState
from vmvault.services.vm_refs import MustBe, resolve_vm, resolve_vms

T0 = datetime(2026, 12, 1, tzinfo=UTC)
MAIN = Vault(1, "main", "local", "/v/main", T0)
OTHER = Vault(2, "other", "local", "/v/other", T0)
FAR = Vault(3, "far", "dc2", "/v/far", T0)


def item(n: int, name: str, *, host: str = "h1", state: VmState = VmState.DISCOVERED,
         vault: str | None = None) -> VmItem:  # fmt: skip
    return VmItem(
        uuid=f"{n:08d}-aaaa-bbbb-cccc-000000000000", name=name, host_uri=f"qemu+ssh://{host}/system",
        hostname=host, group="g", power_state=PowerState.RUNNING, disks=[], nics=[],
        agent_channel=True, fingerprint="", first_seen=T0, last_seen=T0, state=state, vault=vault,
    )  # fmt: skip


WEB1 = item(1, "web", host="h1", state=VmState.REGISTERED, vault="main")
WEB2 = item(2, "web", host="h2")
DB = item(3, "db", host="h1", state=VmState.PROTECTED, vault="main")
ELSEWHERE = item(4, "app", host="h1", state=VmState.REGISTERED, vault="other")
REMOTE = item(5, "edge", host="h9")


def uow(*vms: VmItem) -> Any:
    hosts = [
        Host(1, "qemu+ssh://h1/system", "local", "h1", T0),
        Host(2, "qemu+ssh://h2/system", "local", "h2", T0),
        Host(3, "qemu+ssh://h9/system", "dc2", "h9", T0),
    ]
    return SimpleNamespace(
        vms=SimpleNamespace(all=lambda: list(vms)),
        hosts=SimpleNamespace(all=lambda: hosts),
    )


CATALOG = uow(WEB1, WEB2, DB, ELSEWHERE, REMOTE)


def test_every_reference_form() -> None:
    assert resolve_vm(CATALOG, WEB1.uuid) is WEB1
    assert resolve_vm(CATALOG, "00000003") is DB  # 8+ character uuid prefix
    assert resolve_vm(CATALOG, "db") is DB
    assert resolve_vm(CATALOG, "h2/web") is WEB2
    assert resolve_vm(CATALOG, "g/db") is DB
    with pytest.raises(VmAmbiguous):
        resolve_vm(CATALOG, "web")
    with pytest.raises(VmNotFound):
        resolve_vm(CATALOG, "nope")


def test_registered_with_the_vault() -> None:
    assert resolve_vms(CATALOG, ["h1/web", "db"], vault=MAIN, must_be=MustBe.REGISTERED) == [
        WEB1, DB,
    ]  # fmt: skip
    with pytest.raises(VmNotRegistered):  # discovered only
        resolve_vm(CATALOG, "h2/web", vault=MAIN, must_be=MustBe.REGISTERED)
    with pytest.raises(VmNotRegistered):  # registered with another vault
        resolve_vm(CATALOG, "app", vault=MAIN, must_be=MustBe.REGISTERED)
    assert resolve_vm(CATALOG, "app", vault=OTHER, must_be=MustBe.REGISTERED) is ELSEWHERE


def test_unregistered_for_registration() -> None:
    assert resolve_vm(CATALOG, "h2/web", vault=MAIN, must_be=MustBe.UNREGISTERED) is WEB2
    with pytest.raises(AlreadyRegistered):
        resolve_vm(CATALOG, "db", vault=MAIN, must_be=MustBe.UNREGISTERED)


def test_location_is_checked_first() -> None:
    with pytest.raises(VmNotInLocation):
        resolve_vm(CATALOG, "edge", vault=MAIN, must_be=MustBe.UNREGISTERED)
    with pytest.raises(VmNotInLocation):  # not "not registered": the location says why
        resolve_vm(CATALOG, "edge", vault=MAIN, must_be=MustBe.REGISTERED)
    assert resolve_vm(CATALOG, "edge", vault=FAR, must_be=MustBe.UNREGISTERED) is REMOTE


def test_a_request_is_checked_whole_and_counts_a_vm_once() -> None:
    with pytest.raises(InvalidInput):
        resolve_vms(CATALOG, [], vault=MAIN, must_be=MustBe.REGISTERED)
    with pytest.raises(VmNotRegistered):  # one bad reference refuses all
        resolve_vms(CATALOG, ["db", "h2/web"], vault=MAIN, must_be=MustBe.REGISTERED)
    twice = resolve_vms(CATALOG, ["db", DB.uuid, "h1/db"], vault=MAIN, must_be=MustBe.REGISTERED)
    assert twice == [DB]


def test_a_registration_rule_needs_its_vault() -> None:
    with pytest.raises(ValueError):
        resolve_vm(CATALOG, "db", must_be=MustBe.REGISTERED)
