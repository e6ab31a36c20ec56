"""Soft delete through the real ``vmvault`` command (docs/soft-delete.md): points delete →
list --deleted → restore refused → undelete → restorable; protection stop --delete-data
soft-deletes; gc purges only what is due; --soft-delete off deletes at once; always cannot
be turned off.  Points are written in-process into the real vault (no guest needed); the
passing of the period is the catalog's purge_after moved into the past (the CLI reads the
real clock; services/test_soft_delete_service.py drives the clock itself)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import CliRunner, save_vm
from tests.unit.catalog_world import write_point
from vmvault.bootstrap import bootstrap
from vmvault.config import Settings
from vmvault.domain.soft_delete import Deletion
from vmvault.domain.vm import VmState


def _services(home: Path):  # type: ignore[no-untyped-def]
    return bootstrap(Settings.from_env({"VMVAULT_HOME": str(home)}))


def _point(home: Path, tmp: Path, point_id: str, seed: int, state: VmState) -> bytes:
    svc = _services(home)
    try:
        vm = save_vm(svc, "web", state, policy="gold" if state is VmState.PROTECTED else None)
        when = datetime.now(UTC) - timedelta(hours=seed)
        return write_point(
            tmp, svc._uow, svc.vaults, "main", point_id, seed, when, (vm.uuid, vm.name)
        )
    finally:
        svc.close()


def _period_passes(home: Path, point_id: str) -> None:
    svc = _services(home)
    try:
        past = datetime.now(UTC) - timedelta(days=30)
        with svc._uow() as uow:
            uow.points.set_deleted(point_id, Deletion(past, past + timedelta(days=14)))
            uow.commit()
    finally:
        svc.close()


def test_delete_list_restore_refused_undelete_restore(
    cli: CliRunner, home: Path, tmp_path: Path
) -> None:
    assert cli("vault", "create", "main", "--location", "local").code == 0
    data = _point(home, tmp_path, "p1", 1, VmState.REGISTERED)
    assert [p["id"] for p in cli("points", "list", "--json").json()] == ["p1"]

    r = cli("points", "delete", "p1")
    assert r.code == 0, r.stderr
    assert cli("points", "list", "--json").json() == []
    [gone] = cli("points", "list", "--deleted", "--json").json()
    assert gone["id"] == "p1" and gone["deleted_vault"] == "main"
    deleted_at = datetime.fromisoformat(gone["deleted_at"])
    assert datetime.fromisoformat(gone["purge_after"]) - deleted_at == timedelta(days=14)
    assert "p1" in cli("points", "list", "--deleted").stdout
    shown = cli("points", "show", "p1", "--json").json()
    assert shown["vaults"] == [] and set(shown["soft_deleted"]) == {"main"}

    out = tmp_path / "out"
    r = cli("restore", "web", "--point", "p1", "--disks-only", "--dir", str(out), "--format", "raw")
    assert r.code == 2 and "error POINT_SOFT_DELETED" in r.stderr, r.stderr
    assert "vmvault points undelete p1" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
    r = cli("verify", "--point", "p1")
    assert r.code == 2 and "error POINT_SOFT_DELETED" in r.stderr

    r = cli("points", "undelete", "p1")
    assert r.code == 0 and "undeleted p1" in r.stdout, r.stderr
    r = cli("points", "undelete", "p1")
    assert r.code == 2 and "error POINT_NOT_SOFT_DELETED" in r.stderr
    assert [p["id"] for p in cli("points", "list", "--json").json()] == ["p1"]
    r = cli("restore", "web", "--point", "p1", "--disks-only", "--dir", str(out), "--format", "raw")
    assert r.code == 0, r.stderr
    assert (out / "web-vda.raw").read_bytes() == data

    board = cli("dashboard", "--json").json()["storage"]
    assert board["soft_deleted_points"] == 0 and board["points"] == 1


def test_stop_with_delete_data_soft_deletes_and_gc_purges_only_what_is_due(
    cli: CliRunner, home: Path, tmp_path: Path
) -> None:
    assert cli("vault", "create", "main", "--location", "local").code == 0
    _point(home, tmp_path, "p1", 1, VmState.PROTECTED)
    _point(home, tmp_path, "p2", 2, VmState.PROTECTED)
    r = cli("protection", "stop", "web", "--delete-data")
    assert r.code == 0, r.stderr
    listed = cli("points", "list", "--deleted", "--json").json()
    assert sorted(p["id"] for p in listed) == ["p1", "p2"]
    manifests = Path(cli("vault", "show", "main", "--json").json()["path"]) / "manifests"
    assert len(list(manifests.iterdir())) == 2  # soft-deleted: still in the vault
    board = cli("dashboard", "--json").json()["storage"]
    assert board["soft_deleted_points"] == 2 and board["soft_deleted_logical_bytes"] > 0

    r = cli("gc", "--json")
    assert r.code == 0 and r.json()["result"]["points_purged"] == [], r.stderr
    _period_passes(home, "p1")
    r = cli("gc", "--json")
    assert r.code == 0 and r.json()["result"]["points_purged"] == ["p1"], r.stderr
    assert [p["id"] for p in cli("points", "list", "--deleted", "--json").json()] == ["p2"]
    assert [m.name.startswith("p2") for m in manifests.iterdir()] == [True]
    job = cli("jobs", "show", str(r.json()["id"]), "--json").json()
    assert any("purged p1" in line for line in job["log"])
    r = cli("points", "undelete", "p1")
    assert r.code == 2 and "error POINT_NOT_FOUND" in r.stderr


def test_soft_delete_off_deletes_at_once_and_always_cannot_be_turned_off(
    cli: CliRunner, home: Path, tmp_path: Path
) -> None:
    assert cli("vault", "create", "main", "--location", "local").code == 0
    doc = cli("vault", "show", "main", "--json").json()
    assert doc["soft_delete"] == "on" and doc["soft_delete_days"] == 14
    r = cli("vault", "update", "main", "--soft-delete", "off", "--json")
    assert r.code == 0 and r.json()["soft_delete"] == "off", r.stderr
    _point(home, tmp_path, "p1", 1, VmState.REGISTERED)
    manifests = Path(doc["path"]) / "manifests"
    assert [m.name for m in manifests.glob("p1*")] != []
    assert cli("points", "delete", "p1").code == 0
    assert cli("points", "list", "--deleted", "--json").json() == []
    assert list(manifests.glob("p1*")) == []
    assert not (Path(doc["path"]) / "indexes" / "p1").exists()
    r = cli("points", "show", "p1")
    assert r.code == 2 and "error POINT_NOT_FOUND" in r.stderr

    r = cli("vault", "update", "main", "--always-on", "--soft-delete-days", "30")
    assert r.code == 0, r.stderr
    for mode in ("off", "on"):
        r = cli("vault", "update", "main", "--soft-delete", mode)
        assert r.code == 2 and "error SOFT_DELETE_ALWAYS_ON" in r.stderr, r.stderr
    r = cli("vault", "update", "main", "--soft-delete-days", "0")
    assert r.code == 2 and "error INVALID_INPUT" in r.stderr
    [listed] = cli("vault", "list", "--json").json()
    assert listed["soft_delete"] == "always" and listed["soft_delete_days"] == 30


def test_deleting_a_copy_leaves_the_point_in_its_own_vault_normal(
    cli: CliRunner, home: Path, tmp_path: Path
) -> None:
    for name in ("main", "offsite"):
        assert cli("vault", "create", name, "--location", "local").code == 0
    _point(home, tmp_path, "p1", 1, VmState.REGISTERED)
    r = cli("copy", "--from", "main", "--to", "offsite", "web")
    assert r.code == 0, r.stderr
    r = cli("points", "delete", "p1", "--vault", "offsite")
    assert r.code == 0, r.stderr
    assert [p["id"] for p in cli("points", "list", "--vault", "main", "--json").json()] == ["p1"]
    assert cli("points", "list", "--vault", "offsite", "--json").json() == []
    gone = cli("points", "list", "--deleted", "--vault", "offsite", "--json").json()
    assert [p["id"] for p in gone] == ["p1"]
    assert cli("points", "list", "--deleted", "--vault", "main", "--json").json() == []
    out = tmp_path / "out"
    args = ("restore", "web", "--point", "p1", "--disks-only", "--dir", str(out))
    r = cli(*args, "--from-vault", "offsite")
    assert r.code == 2 and "error POINT_SOFT_DELETED" in r.stderr, r.stderr
    r = cli(*args, "--format", "raw")  # from its own vault, where it is held normally
    assert r.code == 0, r.stderr
    r = cli("points", "undelete", "p1", "--vault", "offsite")
    assert r.code == 0, r.stderr
    assert cli("points", "show", "p1", "--json").json()["vaults"] == ["main", "offsite"]
