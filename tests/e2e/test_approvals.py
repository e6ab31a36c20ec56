"""Multi-user authorization through the real API (docs/approvals.md): two admin tokens
(``alice``, ``bob``, created in the real token store), the real SQLite catalog and a local
vault with real points; the clock is injected so expiry and delay mode are exercised without
waiting.  Each protected operation is held (202) and changes nothing; the requester cannot
approve its own request (403); the other admin's approval executes it; reject, expiry, delay
mode, a failed execution, the audit rows and the ``approval`` notification delivered to a real
HTTP receiver."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import save_vm
from tests.e2e.api_world import World, make_world, open_storage
from tests.e2e.conftest import WebhookReceiver
from tests.unit.catalog_world import write_point
from vmvault.api.app import create_app
from vmvault.bootstrap import Services, bootstrap
from vmvault.domain.access import Principal, Role
from vmvault.domain.approval import HeldForApproval
from vmvault.domain.notification import Channel, Event
from vmvault.domain.retention import Retention
from vmvault.domain.vm import VmState
from vmvault.hypervisor.memory import MemoryBackupDriver
from vmvault.notify import Senders, WebhookSender
from vmvault.notify.email import EmailSender, SmtpConfig


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Admins:
    world: World
    services: Services
    clock: Clock
    alice: TestClient
    bob: TestClient
    contributor: TestClient
    tmp: Path

    def point(self, point_id: str, seed: int, vm: tuple[str, str]) -> None:
        when = self.clock.now - timedelta(hours=seed)
        svc = self.services
        write_point(self.tmp, svc._uow, svc.vaults, "main", point_id, seed, when, vm)


@pytest.fixture()
def admins(tmp_path: Path) -> Iterator[Admins]:
    world = make_world(tmp_path / "home")
    clock = Clock(datetime(2026, 12, 2, 9, 0, tzinfo=UTC))
    sender = Senders(WebhookSender(), EmailSender(SmtpConfig(None, 25, "v@localhost")))
    svc = bootstrap(
        world.settings,
        clock,
        hypervisor=world.hv,
        backup_driver=MemoryBackupDriver(world.hv),
        restore_driver=world.restore_driver,
        host_files=world.files,
        storage=open_storage,
        notifier=sender,
    )
    world.services = svc
    svc.vaults.create("main", "local", str(tmp_path / "vault"))
    app = create_app(svc, authenticate=svc.tokens.authenticate)

    def client(name: str, role: Role) -> TestClient:
        _token, text = svc.tokens.create(name, role, "test")
        return TestClient(app, headers={"Authorization": f"Bearer {text}"})

    yield Admins(
        world, svc, clock,
        client("alice", Role.ADMIN), client("bob", Role.ADMIN),
        client("carol", Role.CONTRIBUTOR), tmp_path,
    )  # fmt: skip
    svc.close()


def _second_admin(a: Admins, mode: str = "second-admin", **hours: int) -> None:
    r = a.alice.patch("/api/v1/vaults/main", json={"approvals": mode, **hours})
    assert r.status_code == 200, r.text  # from off: a strengthening, not held
    assert r.json()["approvals"] == mode


def _protected_vm_with_points(a: Admins) -> tuple[str, str]:
    a.services.policies.create("main", "gold", "daily@02:00", "UTC", Retention(daily=7))
    vm = save_vm(a.services, "web", VmState.PROTECTED, policy="gold")
    a.point("p1", 1, (vm.uuid, vm.name))
    a.point("p2", 2, (vm.uuid, vm.name))
    return vm.uuid, vm.name


def _points(a: Admins) -> list[str]:
    return [p["id"] for p in a.alice.get("/api/v1/points").json()]


def test_each_protected_operation_is_held_and_changes_nothing(admins: Admins) -> None:
    a = admins
    uuid, _name = _protected_vm_with_points(a)
    assert a.alice.delete("/api/v1/points/p2").status_code == 200  # soft-deleted: not held
    _second_admin(a)
    held = [
        a.alice.patch("/api/v1/vaults/main", json={"soft_delete": "off"}),
        a.alice.patch("/api/v1/vaults/main", json={"soft_delete_days": 3}),
        a.alice.patch("/api/v1/policies/gold", json={"retention": {"daily": 2}}),
        a.contributor.post("/api/v1/protection/stop", json={"vms": ["web"], "delete_data": True}),
        a.alice.post("/api/v1/points/p2/purge", json={}),
        a.alice.patch("/api/v1/vaults/main", json={"approvals": "delay"}),
    ]
    for r in held:
        assert r.status_code == 202, r.text
    docs = [r.json() for r in held]
    assert [d["operation"] for d in docs] == [
        "soft-delete-setting", "soft-delete-setting", "policy-retention",
        "protection-stop-delete-data", "point-purge", "approval-setting",
    ]  # fmt: skip
    assert {d["state"] for d in docs} == {"pending"}
    assert [d["requested_by"] for d in docs] == ["alice"] * 3 + ["carol"] + ["alice"] * 2
    assert docs[3]["arguments"]["vms"] == [uuid]  # held as resolved: the same VM runs later
    assert all(d["expires_at"] == "2026-12-05T09:00:00+00:00" for d in docs)  # 72 h
    # nothing changed
    vault = a.alice.get("/api/v1/vaults/main").json()
    assert (vault["soft_delete"], vault["soft_delete_days"], vault["approvals"]) == (
        "on", 14, "second-admin",
    )  # fmt: skip
    assert a.alice.get("/api/v1/policies/gold").json()["retention"]["daily"] == 7
    assert a.alice.get("/api/v1/vms/web").json()["state"] == "protected"
    assert _points(a) == ["p1"]
    assert [p["id"] for p in a.alice.get("/api/v1/points/deleted").json()] == ["p2"]
    # what does not reduce protection runs at once
    r = a.alice.patch("/api/v1/vaults/main", json={"soft_delete_days": 30})
    assert r.status_code == 200 and r.json()["soft_delete_days"] == 30
    r = a.alice.patch("/api/v1/policies/gold", json={"retention": {"daily": 9}})
    assert r.status_code == 200 and r.json()["retention"]["daily"] == 9
    # a vault in use is refused, not held; bad input too
    r = a.alice.delete("/api/v1/vaults/main")
    assert r.status_code == 409 and r.json()["error"]["code"] == "VAULT_IN_USE"
    r = a.alice.patch("/api/v1/vaults/main", json={"soft_delete_days": 0})
    assert r.status_code == 400
    listed = a.bob.get("/api/v1/approvals", params={"state": "pending"}).json()
    assert [d["id"] for d in listed] == [d["id"] for d in reversed(docs)]
    # a contributor may ask but not list or decide
    assert a.contributor.get("/api/v1/approvals").status_code == 403
    r = a.contributor.post(f"/api/v1/approvals/{docs[0]['id']}/approve")
    assert r.status_code == 403 and r.json()["error"]["code"] == "ROLE_REQUIRED"


def test_the_requester_cannot_approve_a_second_admin_can(admins: Admins) -> None:
    a = admins
    _protected_vm_with_points(a)
    _second_admin(a)
    request = a.alice.patch("/api/v1/vaults/main", json={"soft_delete": "off"}).json()
    rid = request["id"]
    r = a.alice.post(f"/api/v1/approvals/{rid}/approve")
    assert r.status_code == 403 and r.json()["error"]["code"] == "APPROVAL_SELF"
    assert a.alice.get(f"/api/v1/approvals/{rid}").json()["state"] == "pending"
    a.clock.now += timedelta(minutes=5)
    r = a.bob.post(f"/api/v1/approvals/{rid}/approve")
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["state"], done["decided_by"], done["error_code"]) == ("executed", "bob", None)
    assert done["decided_at"] == "2026-12-02T09:05:00+00:00" and "is off" in done["outcome"]
    assert a.alice.get("/api/v1/vaults/main").json()["soft_delete"] == "off"
    r = a.bob.post(f"/api/v1/approvals/{rid}/approve")
    assert r.status_code == 409 and r.json()["error"]["code"] == "APPROVAL_NOT_PENDING"

    # each protected operation, approved by bob, does what it would have done
    stop = a.alice.post("/api/v1/protection/stop", json={"vms": ["web"], "delete_data": True})
    r = a.bob.post(f"/api/v1/approvals/{stop.json()['id']}/approve")
    assert r.json()["state"] == "executed", r.text
    assert a.alice.get("/api/v1/vms/web").json()["state"] == "registered"
    assert _points(a) == []  # soft delete off now: deleted at once
    policy = a.alice.patch("/api/v1/policies/gold", json={"retention": {"daily": 2}}).json()
    assert a.bob.post(f"/api/v1/approvals/{policy['id']}/approve").json()["state"] == "executed"
    assert a.alice.get("/api/v1/policies/gold").json()["retention"]["daily"] == 2

    # the audit log: the edge's rows and the request's life
    rows = a.alice.get("/api/v1/audit", params={"limit": 100}).json()
    life = [(e["actor"], e["action"], e["status"]) for e in rows if e["remote"] == "approvals"]
    first = list(reversed(life))[:3]  # the log is newest first
    assert first == [
        ("alice", "approval request", 4), ("bob", "approval approve", 0),
        ("bob", "approval execute", 0),
    ]  # fmt: skip
    edge = [(e["actor"], e["action"], e["status"]) for e in rows if e["remote"] != "approvals"]
    assert ("alice", "PATCH /api/v1/vaults/main", 202) in edge
    assert ("alice", f"POST /api/v1/approvals/{rid}/approve", 403) in edge
    assert ("bob", f"POST /api/v1/approvals/{rid}/approve", 200) in edge
    target = next(e["target"] for e in rows if e["action"] == "approval request")
    assert target.startswith(f"request {policy['id']}: lower the retention of policy 'gold'")


def test_vault_delete_and_purge_run_once_approved(admins: Admins) -> None:
    a = admins
    vm = save_vm(a.services, "web", VmState.REGISTERED)
    a.point("p1", 1, (vm.uuid, vm.name))
    a.point("p2", 2, (vm.uuid, vm.name))
    assert a.alice.delete("/api/v1/points/p2").status_code == 200
    _second_admin(a)
    purge = a.alice.post("/api/v1/points/p2/purge").json()
    r = a.bob.post(f"/api/v1/approvals/{purge['id']}/approve")
    assert r.json()["state"] == "executed" and "p2" in r.json()["outcome"]
    assert a.alice.get("/api/v1/points/deleted").json() == []
    vault_dir = Path(a.alice.get("/api/v1/vaults/main").json()["path"])
    assert not (vault_dir / "manifests" / "p2").exists() and vault_dir.is_dir()

    r = a.alice.delete("/api/v1/vaults/main")
    assert r.status_code == 409 and "VM(s) registered" in r.json()["error"]["message"]
    a.services.protection.unregister("main", ["web"])
    r = a.alice.delete("/api/v1/vaults/main")
    assert r.status_code == 409 and "holds 1 recovery point" in r.json()["error"]["message"]
    held = a.alice.delete("/api/v1/vaults/main", params={"with_points": True})
    assert held.status_code == 202
    assert a.alice.get("/api/v1/vaults/main").status_code == 200
    r = a.bob.post(f"/api/v1/approvals/{held.json()['id']}/approve")
    assert r.json()["state"] == "executed", r.text
    assert a.alice.get("/api/v1/vaults/main").status_code == 404
    assert not vault_dir.exists()
    # its requests stay listed (the audit of a deleted vault)
    assert len(a.bob.get("/api/v1/approvals").json()) == 2
    assert len(a.bob.get("/api/v1/approvals", params={"vault": "main"}).json()) == 2
    assert a.bob.get("/api/v1/approvals", params={"vault": "../x"}).status_code == 400


def test_reject_withdraw_and_a_failed_execution(admins: Admins) -> None:
    a = admins
    vm = save_vm(a.services, "web", VmState.REGISTERED)
    a.point("p1", 1, (vm.uuid, vm.name))
    assert a.alice.delete("/api/v1/points/p1").status_code == 200
    _second_admin(a)
    first = a.alice.patch("/api/v1/vaults/main", json={"soft_delete": "off"}).json()
    r = a.bob.post(f"/api/v1/approvals/{first['id']}/reject")
    assert r.status_code == 200 and r.json()["state"] == "rejected"
    assert r.json()["decided_by"] == "bob"
    assert a.alice.get("/api/v1/vaults/main").json()["soft_delete"] == "on"
    r = a.bob.post(f"/api/v1/approvals/{first['id']}/approve")
    assert r.status_code == 409 and r.json()["error"]["code"] == "APPROVAL_NOT_PENDING"

    second = a.alice.patch("/api/v1/vaults/main", json={"soft_delete": "off"}).json()
    r = a.alice.post(f"/api/v1/approvals/{second['id']}/reject")  # a withdrawal
    assert r.status_code == 200 and r.json()["state"] == "rejected"

    purge = a.alice.post("/api/v1/points/p1/purge").json()
    assert a.alice.post("/api/v1/points/p1/undelete").status_code == 200  # meanwhile
    r = a.bob.post(f"/api/v1/approvals/{purge['id']}/approve")
    assert r.status_code == 200
    assert r.json()["state"] == "failed" and r.json()["error_code"] == "POINT_NOT_SOFT_DELETED"
    assert _points(a) == ["p1"]
    r = a.bob.get("/api/v1/approvals", params={"state": "bogus"})
    assert r.status_code == 400


def test_expiry_and_delay_mode_with_an_injected_clock(admins: Admins) -> None:
    a = admins
    _second_admin(a, approval_expiry_hours=2)
    r = a.alice.patch("/api/v1/vaults/main", json={"soft_delete_days": 3})
    rid = r.json()["id"]
    assert r.json()["expires_at"] == "2026-12-02T11:00:00+00:00"
    a.clock.now += timedelta(hours=2)
    assert a.bob.get(f"/api/v1/approvals/{rid}").json()["state"] == "expired"
    r = a.bob.post(f"/api/v1/approvals/{rid}/approve")
    assert r.status_code == 409 and r.json()["error"]["code"] == "APPROVAL_EXPIRED"
    [expired] = a.services.approvals.run_due()
    assert expired.id == rid and expired.state.value == "expired"
    assert a.services.approvals.run_due() == []
    assert a.alice.get("/api/v1/vaults/main").json()["soft_delete_days"] == 14

    # delay mode: weakening second-admin → delay is itself held; bob approves it
    r = a.alice.patch("/api/v1/vaults/main", json={"approvals": "delay", "approval_delay_hours": 6})
    assert r.status_code == 202
    assert a.bob.post(f"/api/v1/approvals/{r.json()['id']}/approve").json()["state"] == "executed"
    start = a.clock.now
    held = a.alice.patch("/api/v1/vaults/main", json={"soft_delete_days": 3}).json()
    assert held["mode"] == "delay" and held["expires_at"] is None
    assert held["due_at"] == (start + timedelta(hours=6)).isoformat()
    a.clock.now = start + timedelta(hours=5, minutes=59)
    assert a.services.approvals.run_due() == []
    assert a.alice.get("/api/v1/vaults/main").json()["soft_delete_days"] == 14
    a.clock.now = start + timedelta(hours=6)
    [ran] = a.services.approvals.run_due()
    assert (ran.id, ran.state.value, ran.decided_by) == (held["id"], "executed", "vmvault:delay")
    assert a.alice.get("/api/v1/vaults/main").json()["soft_delete_days"] == 3
    assert a.services.approvals.run_due() == []  # once
    # in delay mode the requester still cannot approve its own request early
    other = a.alice.patch("/api/v1/vaults/main", json={"soft_delete": "off"}).json()
    r = a.alice.post(f"/api/v1/approvals/{other['id']}/approve")
    assert r.status_code == 403
    rows = a.alice.get("/api/v1/audit").json()
    assert ("vmvault:delay", "approval execute") in [(e["actor"], e["action"]) for e in rows]
    assert ("alice", "approval expire") in [(e["actor"], e["action"]) for e in rows]


def test_the_approval_notification_reaches_the_other_admins(
    admins: Admins, webhook: WebhookReceiver
) -> None:
    a = admins
    path = webhook.new_path()
    a.services.notifications.add_target(
        "main", Channel.WEBHOOK, webhook.url(path), (Event.APPROVAL,)
    )
    _second_admin(a)
    request = a.alice.patch("/api/v1/vaults/main", json={"soft_delete": "off"}).json()
    [sent] = a.services.notifications.deliver_due()
    assert sent.state.value == "sent"
    [post] = webhook.at(path)
    assert post.body["event"] == "approval" and post.body["vault"] == "main"
    assert post.body["request"] == str(request["id"])
    assert post.body["requested_by"] == "alice"
    assert "set soft delete of vault 'main' to off" in post.body["operation"]


def test_an_in_process_call_is_held_and_a_grant_is_not_held_again(admins: Admins) -> None:
    a = admins
    _second_admin(a)
    with pytest.raises(HeldForApproval) as held:
        a.services.soft_delete.update_vault("main", "off")
    assert held.value.request.requested_by == "unnamed"
    bob = Principal("bob", Role.ADMIN)
    done = a.services.approvals.approve(held.value.request.id, bob)
    assert done.state.value == "executed"
    assert a.services.vaults.resolve("main").soft_delete.mode.value == "off"


def test_lowering_the_copies_retention_is_held_too(admins: Admins) -> None:
    a = admins
    a.services.vaults.create("offsite", "local", str(a.tmp / "offsite"))
    a.services.policies.create(
        "main", "gold", "daily@02:00", "UTC", Retention(daily=7),
        copy_to="offsite", copy_counts={"daily": 5},
    )  # fmt: skip
    _second_admin(a)
    r = a.alice.patch("/api/v1/policies/gold", json={"copy_retention": {"daily": 3}})
    assert r.status_code == 202 and r.json()["summary"].endswith("(daily 3)"), r.text
    r = a.alice.patch("/api/v1/policies/gold", json={"copy_retention": {"daily": 8}})
    assert r.status_code == 200 and r.json()["copy_to"]["retention"]["daily"] == 8, r.text
    # the copy vault's own setting does not matter: the policy's vault decides
    r = a.alice.patch("/api/v1/vaults/offsite", json={"soft_delete": "off"})
    assert r.status_code == 200 and r.json()["soft_delete"] == "off"
