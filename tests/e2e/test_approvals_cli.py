"""Multi-user authorization through the real ``vmvault`` command (docs/approvals.md): the
local user (``local:<user>``) and an API token (``bob``, an admin, through the real API over
the same catalog) ask and approve each other's requests; a held command exits 4 with the
request on stderr; the requester's own approval is refused; every step is in the audit log.
Points are written in-process into the real vault (no guest needed)."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import CliRunner, save_vm
from tests.unit.catalog_world import write_point
from vmvault.api.app import create_app
from vmvault.bootstrap import bootstrap
from vmvault.config import Settings
from vmvault.domain.access import Role
from vmvault.domain.vm import VmState


def test_the_cli_and_a_token_approve_each_others_requests(
    cli: CliRunner, home: Path, tmp_path: Path
) -> None:
    me = f"local:{getpass.getuser()}"
    assert cli("vault", "create", "main", "--location", "local").code == 0
    r = cli("vault", "update", "main", "--approvals", "second-admin", "--approval-expiry", "24")
    assert r.code == 0 and "approvals second-admin (requests expire after 24 h)" in r.stdout
    svc = bootstrap(Settings.from_env({"VMVAULT_HOME": str(home)}))
    try:
        vm = save_vm(svc, "web", VmState.REGISTERED)
        when = datetime.now(UTC) - timedelta(hours=1)
        write_point(tmp_path, svc._uow, svc.vaults, "main", "p1", 1, when, (vm.uuid, vm.name))
        _token, text = svc.tokens.create("bob", Role.ADMIN, me)
        bob = TestClient(
            create_app(svc, authenticate=svc.tokens.authenticate),
            headers={"Authorization": f"Bearer {text}"},
        )

        r = cli("vault", "update", "main", "--soft-delete", "off", "--json")
        assert r.code == 4, r.stderr
        assert r.stdout == ""
        assert r.stderr.startswith(
            "held for approval: request 1 (set soft delete of vault 'main' to off, 14 days"
        )
        assert "vmvault approvals approve 1" in r.stderr and "Traceback" not in r.stderr
        [pending] = cli("approvals", "list", "--json").json()
        assert (pending["state"], pending["requested_by"]) == ("pending", me)
        r = cli("approvals", "approve", "1")
        assert r.code == 2 and "error APPROVAL_SELF" in r.stderr, r.stderr
        assert cli("vault", "show", "main", "--json").json()["soft_delete"] == "on"

        r = bob.post("/api/v1/approvals/1/approve")
        assert r.status_code == 200 and r.json()["state"] == "executed", r.text
        shown = cli("approvals", "show", "1", "--json").json()
        assert (shown["state"], shown["decided_by"]) == ("executed", "bob")
        assert cli("vault", "show", "main", "--json").json()["soft_delete"] == "off"
        assert "executed" in cli("approvals", "show", "1").stdout

        # the token asks, the local admin approves: soft delete is off, so the point
        # goes at once (delete), and then the vault itself
        r = bob.post("/api/v1/protection/stop", json={"vms": ["web"], "delete_data": True})
        assert r.status_code == 409  # registered, not protected: refused, not held
        r = cli("vault", "delete", "main")
        assert r.code == 2 and "error VAULT_IN_USE" in r.stderr and "web" in r.stderr
        assert cli("unregister", "web").code == 0
        held = bob.delete("/api/v1/vaults/main", params={"with_points": True})
        assert held.status_code == 202 and held.json()["requested_by"] == "bob"
        rid = held.json()["id"]
        r = cli("approvals", "reject", str(rid))
        assert r.code == 0 and "rejected" in r.stdout
        held = bob.delete("/api/v1/vaults/main", params={"with_points": True})
        r = cli("approvals", "approve", str(held.json()["id"]), "--json")
        assert r.code == 0 and r.json()["state"] == "executed", r.stderr
        assert r.json()["outcome"] == "vault 'main' deleted (1 point(s) purged)"
        assert cli("vault", "list", "--json").json() == []
    finally:
        svc.close()

    r = cli("approvals", "reject", "99")
    assert r.code == 2 and "error APPROVAL_NOT_FOUND" in r.stderr
    r = cli("approvals", "run-due")
    assert r.code == 0 and "nothing due" in r.stdout
    rows = cli("audit", "list", "--json").json()
    seen = [(e["actor"], e["action"], e["target"], e["status"]) for e in rows]
    assert (me, "vmvault vault update", "main", 4) in seen
    assert (me, "vmvault approvals approve", "1", 2) in seen
    assert ("bob", "POST /api/v1/approvals/1/approve", "1", 200) in seen
    life = [(a, act) for a, act, _t, _s in reversed(seen) if act.startswith("approval ")]
    assert life == [
        (me, "approval request"), ("bob", "approval approve"), ("bob", "approval execute"),
        ("bob", "approval request"), (me, "approval reject"),
        ("bob", "approval request"), (me, "approval approve"), (me, "approval execute"),
    ]  # fmt: skip
