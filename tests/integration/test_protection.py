"""Protection of lab guests through the real ``vmvault`` command: protect (pending → protected),
retention after each backup with pinned and kept-until points, --backup-now, stop with
retained and deleted data, resume, unregister refused while protected, and the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliRunner
from tests.integration.conftest import LAB_VARIANTS
from vmvault.hypervisor.lab.vms import lab_prefix

pytestmark = pytest.mark.lab

N = {v: f"{lab_prefix()}-{v}-1" for v in LAB_VARIANTS}


def ok(r: Any) -> Any:
    assert r.code in (0, 3), r.stdout + r.stderr
    return r.json()


def items(cli: CliRunner) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in ok(cli("protection", "list", "--json"))}


def point_ids(cli: CliRunner, vm: str) -> set[str]:
    return {p["id"] for p in ok(cli("points", "list", vm, "--json"))}


def backup(cli: CliRunner, vm: str, *args: str) -> str:
    doc = ok(cli("backup", vm, *args, "--json"))[0]
    assert doc["point"] is not None, doc
    return str(doc["point"]["id"])


def test_protection_lifecycle(lab: dict, cli: CliRunner, home: Path) -> None:
    std, noag = N["standard"], N["no-agent"]
    assert cli("vault", "create", "main", "--location", "local").code == 0
    assert cli("discover").code in (0, 3)
    assert cli("register", std, noag, "--crash-consistent").code in (0, 3)
    # daily=2, all points today: only the newest of today stays, plus pinned ones
    assert cli("policy", "create", "p", "--schedule", "daily@02:30", "--daily", "2").code == 0

    jobs = ok(cli("protect", std, "--policy", "p", "--json"))
    assert [(j["type"], j["state"], j["vm_state"], j["policy"]) for j in jobs] == [
        ("configure-protection", "completed", "protected", "p")
    ]
    assert items(cli)[std]["protection"] == "protection-configured (pending initial backup)"
    r = cli("unregister", std)
    assert r.code == 2 and "error VM_PROTECTED" in r.stderr
    r = cli("policy", "delete", "p")
    assert r.code == 2 and "error POLICY_IN_USE" in r.stderr

    until = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%d")
    a = backup(cli, std, "--keep-until", f"{until}T00:00+00:00")
    shown = ok(cli("points", "show", a, "--json"))
    assert shown["keep_until"].startswith(until) and shown["protected"] is False
    assert items(cli)[std]["protection"] == "protected"
    b = backup(cli, std)
    assert point_ids(cli, std) == {a, b}
    c = backup(cli, std)
    assert point_ids(cli, std) == {a, c}  # b: not selected; a: kept until
    assert ok(cli("points", "protect", c, "--json"))["protected"] is True
    d = backup(cli, std)
    assert point_ids(cli, std) == {a, c, d}
    prunes = ok(cli("jobs", "list", "--type", "prune", "--vm", std, "--json"))
    assert len(prunes) == 4 and all(j["state"] == "completed" for j in prunes)
    log = "\n".join(ok(cli("jobs", "show", str(prunes[0]["id"]), "--json"))["log"])
    assert f"keep {a}: kept until {until}" in log and f"keep {c}: protected" in log
    assert f"keep {d}: newest point, daily" in log

    # --backup-now: configure, backup and prune in one command
    jobs = ok(cli("protect", noag, "--policy", "p", "--backup-now", "--json"))
    assert [j["type"] for j in jobs] == ["configure-protection", "backup", "prune"]
    assert items(cli)[noag]["protection"] == "protected"

    # stop, retaining data: points stay and are not pruned by later backups
    jobs = ok(cli("protection", "stop", std, "--retain-data", "--json"))
    assert jobs[0]["type"] == "stop-protection" and jobs[0]["vm_state"] == "protection-stopped"
    assert items(cli)[std]["policy"] == "p"
    e = backup(cli, std)
    assert point_ids(cli, std) == {a, c, d, e}
    r = cli("protection", "stop", std, "--retain-data")
    assert r.code == 2 and "error WRONG_PROTECTION_STATE" in r.stderr
    assert ok(cli("protection", "resume", std, "--json"))[0]["vm_state"] == "protected"
    assert items(cli)[std]["protection"] == "protected"

    # stop, deleting data: points soft-deleted (the vault's default: docs/soft-delete.md),
    # their manifests stay in the vault until purged; then unregister works
    noag_points = point_ids(cli, noag)
    assert len(noag_points) == 1
    manifests = home / "vaults" / "main" / "manifests"
    assert all((manifests / f"{pid}.manifest").exists() for pid in noag_points)
    ok(cli("protection", "stop", noag, "--delete-data", "--json"))
    assert point_ids(cli, noag) == set()
    deleted = ok(cli("points", "list", noag, "--deleted", "--json"))
    assert {p["id"] for p in deleted} == noag_points
    for pid in noag_points:
        assert (manifests / f"{pid}.manifest").exists()
    assert items(cli)[noag]["state"] == "registered" and items(cli)[noag]["policy"] is None
    assert ok(cli("unregister", noag, "--json"))[0]["vm_state"] == "discovered"
    assert noag not in items(cli)

    board = ok(cli("dashboard", "--json"))
    assert board["vms"]["registered"] == 1 and board["vms"]["protected"] == 1
    assert board["vms"]["discovered"] >= len(LAB_VARIANTS)
    assert board["vms"]["protection_stopped"] == 0 and board["vms"]["pending_initial_backup"] == 0
    assert board["jobs_24h"]["failed"] == 0 and board["jobs_24h"]["in_progress"] == 0
    assert board["jobs_24h"]["completed"] + board["jobs_24h"]["completed_with_warnings"] >= 15
    assert board["attention"] == []
    s = board["storage"]
    assert s["points"] == 4 and s["used_bytes"] > 0 and s["logical_bytes"] > 0
    assert s["dedup_ratio"] == round(s["logical_bytes"] / s["used_bytes"], 2)
