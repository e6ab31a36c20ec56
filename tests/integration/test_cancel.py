"""Cancelling a backup: it ends the libvirt job, thaws the guest, leaves no half point and no
new checkpoint, and the VM's next backup works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.conftest import CliRunner
from tests.integration.conftest import LAB_VARIANTS, lab_settings
from vmvault.bootstrap import Services, bootstrap
from vmvault.domain.job import Job, JobState
from vmvault.hypervisor.lab.vms import lab_prefix
from vmvault.services.jobs import JobContext

pytestmark = pytest.mark.lab

URI = "qemu:///system"
N = {v: f"{lab_prefix()}-{v}-1" for v in LAB_VARIANTS}


@pytest.fixture()
def services(home: Path) -> Iterator[Services]:
    svc = bootstrap(lab_settings(home))
    svc.vaults.create("main", "local", None)
    svc.inventory.discover(None)
    poll = JobContext.CANCEL_POLL_EVERY
    JobContext.CANCEL_POLL_EVERY = 0.0  # see a cancel at the very next chunk
    yield svc
    JobContext.CANCEL_POLL_EVERY = poll


def cancel_once_reading(services: Services) -> None:
    """Cancel every job as soon as it reports its first bytes read."""

    def observe(job: Job) -> None:
        if job.state is JobState.IN_PROGRESS and job.bytes_done > 0:
            services.jobs.cancel(job.id)

    services.runner.observers.append(observe)


def test_cancel_while_reading(lab: dict, services: Services, home: Path) -> None:
    vm = N["writer"]
    services.inventory.register(None, [vm])
    first = services.backups.backup(None, [vm])[0]
    assert first.job.state is JobState.COMPLETED and first.result is not None

    cancel_once_reading(services)
    outcome = services.backups.backup(None, [vm])[0]
    services.runner.observers.clear()
    job, log = services.jobs.show(outcome.job.id)
    assert job.state is JobState.CANCELLED, (job, log)
    assert any("cancel requested" in line for line in log)

    conn = libvirt.open(URI)
    try:
        dom = conn.lookupByName(vm)
        assert dom.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE  # the pull job was ended
        names = [c.getName() for c in dom.listAllCheckpoints()]
        assert names == [first.result.checkpoint]  # no new checkpoint
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    finally:
        conn.close()
    points = services.points.list_points(None, vm)
    assert [p.id for p in points] == [first.result.id]  # no half point in the catalog
    vault_dir = home / "vaults" / "main"
    assert sorted(p.name for p in (vault_dir / "indexes").iterdir()) == [first.result.id]
    assert len(list((vault_dir / "manifests").iterdir())) == 1

    again = services.backups.backup(None, [vm])[0]
    assert again.job.state is JobState.COMPLETED and again.result is not None
    assert all(d.incremental for d in again.result.disks if not d.excluded)
    assert services.points.verify(None, vm_ref=vm).job.state is JobState.COMPLETED


def test_cancel_of_an_ended_job_is_refused(cli: CliRunner) -> None:
    cli("vault", "create", "main", "--location", "local")
    job_id = cli("discover", "--json").json()["id"]
    r = cli("jobs", "cancel", str(job_id))
    assert r.code == 2 and "error JOB_NOT_ACTIVE" in r.stderr
    r = cli("jobs", "wait", str(job_id), "--json")
    assert r.code == 0 and r.json()["state"] == "completed"
