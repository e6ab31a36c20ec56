"""Policies through the CLI (no guest needed): create / list / show / update / delete, the
domain's validation errors, warnings (exit 3), and what protection refuses without a VM."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import CliRunner
from vmvault.services.dashboard import ATTENTION_REASONS

GOLD = (
    "policy", "create", "gold", "--schedule", "daily@02:30", "--tz", "Europe/Berlin",
    "--daily", "7", "--weekly", "4", "--monthly", "12", "--yearly", "1",
)  # fmt: skip


def test_policy_crud(cli: CliRunner) -> None:
    assert cli("vault", "create", "main", "--location", "local").code == 0
    r = cli(*GOLD, "--json")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["name"] == "gold" and doc["vault"] == "main"
    assert doc["schedule"] == "daily@02:30" and doc["timezone"] == "Europe/Berlin"
    assert doc["retention"] == {"daily": 7, "weekly": 4, "monthly": 12, "yearly": 1}
    assert doc["max_age_s"] == 30 * 3600 and doc["warnings"] == [] and doc["vms"] == []

    r = cli("policy", "update", "gold", "--daily", "14", "--schedule", "every:4h", "--json")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["retention"]["daily"] == 14 and doc["retention"]["weekly"] == 4
    assert doc["schedule"].startswith("every:4h") and doc["timezone"] == "Europe/Berlin"
    shown = cli("policy", "show", "gold", "--json").json()
    assert shown["schedule"] == doc["schedule"] and shown["updated_at"] >= shown["created_at"]

    r = cli("policy", "create", "weekly", "--schedule", "weekly:sun@01:00", "--daily", "7")
    assert r.code == 3, r.stderr  # legal, with a warning
    assert "warning:" in r.stdout and "weekly=7 says the same" in r.stdout
    assert cli("policy", "show", "weekly").code == 3
    assert [p["name"] for p in cli("policy", "list", "--json").json()] == ["gold", "weekly"]

    r = cli("policy", "delete", "weekly", "--json")
    assert r.code == 0 and r.json() == {"deleted": "weekly"}
    assert [p["name"] for p in cli("policy", "list", "--json").json()] == ["gold"]


def test_policy_errors_change_nothing(cli: CliRunner) -> None:
    cli("vault", "create", "main", "--location", "local")
    assert cli(*GOLD).code == 0
    before = cli("policy", "list", "--json").json()
    for args, code in (
        (GOLD, "POLICY_EXISTS"),
        (("policy", "create", "x", "--schedule", "daily@25:00", "--daily", "7"), "INVALID_SCHEDULE"),
        (("policy", "create", "x", "--schedule", "weekly:@10:00", "--daily", "7"), "INVALID_SCHEDULE"),
        (("policy", "create", "x", "--schedule", "every:5h", "--daily", "7"), "INVALID_SCHEDULE"),
        (("policy", "create", "x", "--schedule", "daily@02:00", "--tz", "Mars/Olympus",
          "--daily", "7"), "UNKNOWN_TIME_ZONE"),
        (("policy", "create", "x", "--schedule", "daily@02:00"), "INVALID_RETENTION"),
        (("policy", "create", "x", "--schedule", "daily@02:00", "--daily", "-1"),
         "INVALID_RETENTION"),
        (("policy", "create", "x", "--schedule", "daily@02:00", "--daily", "1", "--weekly", "1"),
         "RETENTION_TOO_SHORT"),
        (("policy", "create", "bad name", "--schedule", "daily@02:00", "--daily", "7"),
         "INVALID_INPUT"),
        (("policy", "update", "gold", "--daily", "1", "--weekly", "0", "--monthly", "0",
          "--yearly", "0"), "RETENTION_TOO_SHORT"),
        (("policy", "update", "nope", "--daily", "3"), "POLICY_NOT_FOUND"),
        (("policy", "show", "nope"), "POLICY_NOT_FOUND"),
        (("policy", "delete", "nope"), "POLICY_NOT_FOUND"),
        (("protect", "no-such-vm", "--policy", "gold"), "VM_NOT_FOUND"),
        (("protect", "no-such-vm", "--policy", "nope"), "POLICY_NOT_FOUND"),
        (("unregister", "no-such-vm"), "VM_NOT_FOUND"),
        (("points", "protect", "20260101T000000Z-abcdef"), "POINT_NOT_FOUND"),
        (("backup", "x", "--keep-until", "2001-01-01"), "INVALID_INPUT"),
        (("backup", "x", "--keep-until", "tomorrow"), "INVALID_INPUT"),
    ):  # fmt: skip
        r = cli(*args)
        assert r.code == 2 and f"error {code}:" in r.stderr, (args, r.code, r.stderr)
        assert "Traceback" not in r.stderr
    assert cli("policy", "list", "--json").json() == before
    r = cli("protection", "stop", "x")
    assert r.code == 2 and "--retain-data" in r.stderr


def test_dashboard_of_an_empty_vault(cli: CliRunner) -> None:
    cli("vault", "create", "main", "--location", "local")
    doc = cli("dashboard", "--json").json()
    assert doc["vault"] == "main"
    assert doc["vms"]["discovered"] == 0 and doc["vms"]["protected"] == 0
    assert doc["jobs_24h"]["failed"] == 0 and doc["attention"] == []
    assert doc["storage"].pop("used_bytes_at") >= doc["at"]  # walked for this document
    assert doc["storage"] == {
        "used_bytes": 0,
        "logical_bytes": 0,
        "dedup_ratio": None,
        "points": 0,
        "by_consistency": {
            "application-consistent": 0,
            "file-system-consistent": 0,
            "crash-consistent": 0,
        },
        "soft_deleted_points": 0,
        "soft_deleted_logical_bytes": 0,
        "next_purge_at": None,
    }
    assert doc["attention_total"] == 0
    assert doc["attention_by_reason"] == dict.fromkeys(ATTENTION_REASONS, 0)
    r = cli("dashboard")
    assert r.code == 0 and "attention none" in r.stdout and r.stderr == ""
    for limit in ("0", "1001"):  # the page of VMs needing attention, refused as a listing's
        r = cli("dashboard", "--limit", limit)
        assert r.code == 2 and "error INVALID_INPUT:" in r.stderr and "Traceback" not in r.stderr


def test_a_policy_stores_and_shows_its_required_consistency(cli: CliRunner) -> None:
    assert cli("vault", "create", "main", "--location", "local").code == 0
    r = cli(*GOLD, "--require", "application-consistent", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["require"] == "application-consistent"
    shown = cli("policy", "show", "gold")
    assert "require:   application-consistent" in shown.stdout, shown.stdout
    r = cli("policy", "update", "gold", "--daily", "9", "--json")  # other changes keep it
    assert r.json()["require"] == "application-consistent"
    r = cli("policy", "update", "gold", "--require", "file-system-consistent", "--json")
    assert r.code == 0 and r.json()["require"] == "file-system-consistent", r.stderr
    r = cli("policy", "update", "gold", "--require", "any", "--json")
    assert r.code == 0 and r.json()["require"] is None, r.stderr
    bad = cli("policy", "update", "gold", "--require", "crash-consistent")
    assert bad.code == 2 and "INVALID_INPUT" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli(
        "policy", "create", "x", "--schedule", "daily@01:00", "--daily", "7", "--require", "x"
    )
    assert bad.code == 2 and "INVALID_INPUT" in bad.stderr


def test_the_protection_lists_health_is_the_dashboards_with_copies(tmp_path: Path) -> None:
    """A VM protected in vault b whose only point there is a copy of a's point: b holds it, so
    the dashboard says nothing is wrong, and the protection list's health (one helper,
    services/dashboard.py: vault_health) says ok too, with the copy as its point."""
    from dataclasses import replace
    from datetime import timedelta

    from tests.conftest import save_vm
    from vmvault.bootstrap import bootstrap
    from vmvault.config import Settings
    from vmvault.domain.recovery_point import (
        Consistency,
        Method,
        PointCopy,
        PointDisk,
        RecoveryPoint,
    )
    from vmvault.domain.retention import Retention
    from vmvault.domain.vm import VmState

    svc = bootstrap(Settings.from_env({"VMVAULT_HOME": str(tmp_path / "home")}))
    svc.vaults.create("main", "local", None)
    svc.vaults.create("b", "local", None)
    svc.policies.create("b", "daily", "daily@02:00", "UTC", Retention(daily=7))
    now = svc.clock()
    vm = save_vm(svc, "web", VmState.PROTECTED, "daily")
    vm = replace(vm, vault="b", protected_since=now - timedelta(days=3))
    point = RecoveryPoint(
        "p1", "main", vm.uuid, "web", now - timedelta(hours=1), Consistency.CRASH,
        Method.OFFLINE, 0, None, [PointDisk("vda", 1 << 20)],
    )  # fmt: skip
    with svc._uow() as uow:
        uow.vms.save(vm)
        uow.points.add(point)
        uow.copies.add(PointCopy("p1", "b", now))
        uow.commit()
    protected, flagged = svc.dashboard.attention("b")
    assert (protected, flagged) == (1, [])
    [item], _total = svc.protection.items("b")
    assert item.health == "ok" and item.points == 1 and item.last_point_at == point.created_at
    svc.close()
