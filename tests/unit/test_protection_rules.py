"""Protection rules over a real SQLite catalog with an injected clock (no libvirt): the
pending state, the dashboard's counts and which protected VMs need attention, and policies
that cannot be deleted while VMs use them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from vmvault.domain.errors import InvalidInput, PolicyInUse
from vmvault.domain.job import JobState, JobType
from vmvault.domain.recovery_point import Consistency, Method, PointDisk, RecoveryPoint
from vmvault.domain.retention import Retention
from vmvault.domain.vm import PowerState, VmItem, VmState
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import open_catalog
from vmvault.services.context import ServiceContext
from vmvault.services.dashboard import DashboardService
from vmvault.services.policies import PolicyService
from vmvault.services.protection import PENDING, protection_detail
from vmvault.services.vaults import VaultService

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
URI = "qemu:///system"


@pytest.fixture()
def uow(tmp_path: Path, catalog_url: str):  # type: ignore[no-untyped-def]
    engine = open_catalog(catalog_url)
    factory = lambda: SqlUnitOfWork(engine)  # noqa: E731
    with factory() as u:
        u.vaults.add("main", "local", str(tmp_path / "vault"), NOW)
        u.hosts.add(URI, "local", "host", NOW)
        u.commit()
    yield factory
    engine.dispose()


def services(uow: Any) -> tuple[PolicyService, DashboardService]:
    vaults = VaultService(uow, None, lambda: NOW, Path("/nonexistent"), None)  # type: ignore[arg-type]
    ctx = ServiceContext(uow, None, vaults, lambda: NOW)  # type: ignore[arg-type]
    return PolicyService(ctx), DashboardService(ctx)


def vm(name: str, state: VmState, **kw: Any) -> VmItem:
    item = VmItem(
        uuid=f"00000000-0000-0000-0000-{name:0>12}",
        name=name, host_uri=URI, hostname="host", group="host", power_state=PowerState.RUNNING,
        disks=[], nics=[], agent_channel=True, fingerprint="", first_seen=NOW, last_seen=NOW,
        state=state, vault=None if state is VmState.DISCOVERED else "main",
    )  # fmt: skip
    for k, v in kw.items():
        setattr(item, k, v)
    return item


def point(item: VmItem, created: datetime, size: int = 1000) -> RecoveryPoint:
    return RecoveryPoint(
        id=created.strftime("%Y%m%dT%H%M%SZ") + "-" + item.name[-6:],
        vault="main", vm_uuid=item.uuid, vm_name=item.name, created_at=created,
        consistency=Consistency.CRASH, method=Method.OFFLINE, frozen_ms=0, checkpoint=None,
        disks=[PointDisk("vda", size)],
    )  # fmt: skip


def test_pending_until_the_first_point() -> None:
    item = vm("a", VmState.PROTECTED, policy="gold")
    assert protection_detail(item, has_points=False) == PENDING
    assert protection_detail(item, has_points=True) == "protected"
    item.state = VmState.PROTECTION_STOPPED
    assert protection_detail(item, has_points=True) == "protection-stopped (data retained)"


def test_dashboard_counts_and_attention(uow: Any) -> None:
    policies, dashboard = services(uow)
    policies.create(None, "gold", "daily@02:30", "UTC", Retention(daily=7))  # max age 30 h
    since = NOW - timedelta(days=3)
    fresh = vm("fresh", VmState.PROTECTED, policy="gold", protected_since=since)
    late = vm("late", VmState.PROTECTED, policy="gold", protected_since=since)
    never = vm("never", VmState.PROTECTED, policy="gold", protected_since=since)
    new = vm("new", VmState.PROTECTED, policy="gold", protected_since=NOW - timedelta(hours=1))
    failing = vm("failing", VmState.PROTECTED, policy="gold", protected_since=since)
    gone = vm("gone", VmState.PROTECTED, policy="gold", protected_since=since, vanished_at=NOW)
    stopped = vm("stopped", VmState.PROTECTION_STOPPED, policy="gold")
    others = [vm("reg", VmState.REGISTERED), vm("disc", VmState.DISCOVERED)]
    with uow() as u:
        for item in [fresh, late, never, new, failing, gone, stopped, *others]:
            u.vms.save(item)
        u.points.add(point(fresh, NOW - timedelta(hours=9)))  # after 02:30
        u.points.add(point(late, NOW - timedelta(days=2)))
        u.points.add(point(failing, NOW - timedelta(hours=10)))
        job = u.jobs.create(
            JobType.BACKUP, "main", failing.uuid, "failing", JobState.IN_PROGRESS, NOW, 1, None
        )
        job.state, job.error_code, job.message = JobState.FAILED, "BACKUP_FAILED", "broken"
        u.jobs.update(job)
        u.commit()

    board = dashboard.summary(None)
    assert board.vms == {
        "discovered": 9, "registered": 8, "protected": 6, "pending_initial_backup": 3,
        "protection_stopped": 1, "vanished": 1,
    }  # fmt: skip
    assert board.jobs["failed"] == 1 and board.jobs["completed"] == 0
    flagged = {a.name.split("/")[1]: a.reason for a in board.attention}
    assert flagged == {
        "late": "overdue",
        "never": "never-backed-up",
        "failing": "last-backup-failed",
        "gone": "vm-deleted",
    }
    # a backup that found the VM deleted flags it before discovery notices
    with uow() as u:
        job = u.jobs.create(
            JobType.BACKUP, "main", late.uuid, "late", JobState.FAILED, NOW, 1, None
        )
        job.error_code, job.message = "VM_DELETED", "VM late no longer exists"
        u.jobs.update(job)
        u.commit()
    assert {a.name.split("/")[1]: a.reason for a in dashboard.summary(None).attention}["late"] == (
        "vm-deleted"
    )
    # counted in all, listed a page at a time: the most urgent reason first, then by name
    order = ["host/gone", "host/late", "host/failing", "host/never"]
    whole = dashboard.summary(None)
    assert [a.name for a in whole.attention] == order
    assert whole.attention_total == 4
    assert whole.attention_by_reason == {
        "vm-deleted": 2, "last-backup-failed": 1, "overdue": 0, "never-backed-up": 1,
    }  # fmt: skip
    for limit, offset in ((1, 0), (2, 1), (3, 3), (5, 4), (1000, 2)):
        page = dashboard.summary(None, limit, offset)
        assert [a.name for a in page.attention] == order[offset : offset + limit]
        assert page.attention_total == 4 and page.attention_by_reason == whole.attention_by_reason
        assert page.vms == whole.vms and page.points == whole.points
    for limit, offset in ((0, 0), (1001, 0), (20, -1)):
        with pytest.raises(InvalidInput):
            dashboard.summary("no-such-vault", limit, offset)  # the page is refused first
    assert board.points == 3 and board.logical_bytes == 3000
    assert board.storage_bytes == 0 and board.dedup_ratio is None

    with pytest.raises(PolicyInUse):
        policies.delete("gold")
