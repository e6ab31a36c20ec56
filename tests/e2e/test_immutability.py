"""Immutable vaults through the REST API and the real ``vmvault`` command
(docs/immutability.md): a backup of a protected VM gets its policy's retain-until; the vault
setting (PATCH / ``vault update``) and its one-way lock; ``points lock`` only lengthens; a
retained point's deletion refused with POINT_RETAINED; the point's files held below vmvault."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import CliRunner, save_vm
from tests.e2e.api_world import World
from tests.e2e.test_api_routes import api, point_of, refused, world  # noqa: F401 (fixtures)
from tests.unit.catalog_world import write_point
from vmvault.bootstrap import bootstrap
from vmvault.config import Settings
from vmvault.domain.vm import VmState
from vmvault.storage import local_hold


@pytest.fixture(autouse=True)
def _clear_flags(tmp_path: Path) -> Iterator[None]:
    """Let pytest remove what a test left immutable."""
    yield
    for p in tmp_path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            with contextlib.suppress(OSError):
                local_hold.set_immutable(p, False)


def test_the_api_sets_immutability_and_refuses_deleting_a_retained_point(
    world: World,  # noqa: F811
    api: TestClient,  # noqa: F811
) -> None:
    pid = point_of(api)
    point = api.get(f"/api/v1/points/{pid}").json()
    created = datetime.fromisoformat(point["created_at"])
    # gold keeps 7 daily points: the start (UTC) of the 7th day after the point's day
    day = datetime(created.year, created.month, created.day, tzinfo=UTC)
    assert datetime.fromisoformat(point["retain_until"]) == day + timedelta(days=7)

    doc = api.patch("/api/v1/vaults/main", json={"immutable": True}).json()
    assert doc["immutable"] == "on" and doc["storage"] == "local" and doc["path"]
    assert api.get("/api/v1/vaults/main").json()["immutable"] == "on"
    vault_dir = Path(doc["path"])  # its retained point's files: held from now on
    assert local_hold.is_immutable(vault_dir / "manifests" / f"{pid}.manifest")
    refused(api.delete(f"/api/v1/points/{pid}"), 409, "POINT_RETAINED")
    refused(api.patch("/api/v1/policies/gold", json={"retention": {"daily": 3}}),
            409, "RETENTION_SHORTENED")  # fmt: skip
    refused(api.patch("/api/v1/vaults/main", json={"soft_delete_days": 7}),
            409, "RETENTION_SHORTENED")  # fmt: skip

    later = day + timedelta(days=30)
    locked = api.post(f"/api/v1/points/{pid}/lock", json={"keep_until": later.isoformat()})
    assert locked.status_code == 200, locked.text
    assert datetime.fromisoformat(locked.json()["retain_until"]) == later
    earlier = (day + timedelta(days=10)).isoformat()
    refused(api.post(f"/api/v1/points/{pid}/lock", json={"keep_until": earlier}),
            409, "RETENTION_SHORTENED")  # fmt: skip

    refused(api.patch("/api/v1/vaults/main", json={"immutable": True, "soft_delete": "on"}),
            400, "INVALID_INPUT")  # fmt: skip
    assert (
        api.patch("/api/v1/vaults/main", json={"immutable": True, "lock": True}).json()["immutable"]
        == "locked"
    )
    refused(api.patch("/api/v1/vaults/main", json={"immutable": False}), 409, "IMMUTABLE_LOCKED")
    assert api.patch("/api/v1/vaults/main", json={"immutabel": True}).status_code in (400, 422)


def test_the_cli_sets_immutability_locks_points_and_refuses_deletes(
    cli: CliRunner, home: Path, tmp_path: Path
) -> None:
    assert cli("vault", "create", "main", "--location", "local").code == 0
    svc = bootstrap(Settings.from_env({"VMVAULT_HOME": str(home)}))
    try:
        vm = save_vm(svc, "web", VmState.REGISTERED)
        when = datetime.now(UTC) - timedelta(hours=1)
        write_point(tmp_path, svc._uow, svc.vaults, "main", "p1", 1, when, (vm.uuid, vm.name))
    finally:
        svc.close()

    r = cli("vault", "update", "main", "--immutable")
    assert r.code == 0 and "immutable on" in r.stdout, r.stderr
    shown = cli("vault", "show", "main", "--json").json()
    assert shown["immutable"] == "on" and shown["storage"] == "local"
    assert cli("points", "delete", "p1").code == 0  # an ad-hoc point without a date: may go
    assert cli("points", "undelete", "p1").code == 0

    until = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    r = cli("points", "lock", "p1", "--keep-until", until)
    assert r.code == 0 and "retained until" in r.stdout and "held by the storage" in r.stdout
    [p] = cli("points", "list", "--json").json()
    assert p["retain_until"] is not None and p["keep_until"] == p["retain_until"]
    r = cli("points", "delete", "p1")
    assert r.code == 2 and "error POINT_RETAINED" in r.stderr and "Traceback" not in r.stderr
    soon = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    r = cli("points", "lock", "p1", "--keep-until", soon)
    assert r.code == 2 and "error RETENTION_SHORTENED" in r.stderr

    assert cli("vault", "update", "main", "--immutable", "--lock").code == 0
    r = cli("vault", "update", "main", "--no-immutable")
    assert r.code == 2 and "error IMMUTABLE_LOCKED" in r.stderr, r.stderr
    r = cli("vault", "update", "main", "--immutable", "--soft-delete-days", "30")
    assert r.code == 2 and "error INVALID_INPUT" in r.stderr
