"""The REST API on a real lab guest, as a client drives it: create a vault, discover,
register, protect with a new policy, back up, restore as a new VM — every step a request
(TestClient over the app ``vmvault serve`` builds), queued jobs run by a worker thread as the
server's workers run them (``claim_next`` / ``execute``, services of its own).  The restored
VM must exist in libvirt with new uuid and disks in the directory asked for; it is removed
afterwards, with its files and the checkpoints the backup left on the session guest."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from fastapi.testclient import TestClient

from tests.api_tokens import authenticate, bearer
from tests.integration.conftest import lab_settings
from vmvault.api.app import create_app
from vmvault.bootstrap import bootstrap
from vmvault.domain.access import Role
from vmvault.hypervisor.lab.vms import lab_prefix

pytestmark = pytest.mark.lab

URI = "qemu:///system"
PREFIX = lab_prefix()
SOURCE = f"{PREFIX}-standard-1"
RESTORED = f"{PREFIX}-api-restored"
#: Reachable by QEMU (libvirt-qemu): not under pytest's 0700 temporary directories.
ROOT = Path("/var/lib/vmvault/test-api-restores") / PREFIX


class Worker:
    """The server's job worker: claims queued jobs and runs them, until stopped."""

    def __init__(self, home: Path) -> None:
        self.services = bootstrap(lab_settings(home))
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="api-lab-worker", daemon=True)

    def run(self) -> None:
        while not self.stopping.is_set():
            job = self.services.queue.claim_next()
            if job is None:
                self.wake.wait(0.5)
                self.wake.clear()
                continue
            self.services.queue.execute(job)


def remove_domain(conn: Any, name: str) -> None:
    assert name.startswith(f"{PREFIX}-"), name  # never anybody else's
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    with contextlib.suppress(libvirt.libvirtError):
        dom.destroy()
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)


@pytest.fixture()
def api(lab: dict[str, Any], tmp_path: Path) -> Iterator[TestClient]:
    assert SOURCE in lab, sorted(lab)
    conn = libvirt.open(URI)
    checkpoints = {c.getName() for c in conn.lookupByName(SOURCE).listAllCheckpoints()}
    remove_domain(conn, RESTORED)  # what an interrupted run left
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    for p in (ROOT, *ROOT.parents):
        assert p.stat().st_mode & 0o001, f"{p} must be traversable by libvirt-qemu"
    home = tmp_path / "home"
    services = bootstrap(lab_settings(home))
    worker = Worker(home)
    services.queue.on_queued = worker.wake.set
    worker.thread.start()
    try:
        app = create_app(services, authenticate=authenticate)
        yield TestClient(app, headers=bearer(Role.ADMIN))
    finally:
        worker.stopping.set()
        worker.wake.set()
        worker.thread.join(600)
        remove_domain(conn, RESTORED)
        for link in Path("/var/lib/libvirt/images").glob(f"{RESTORED}-*"):
            link.unlink()
        shutil.rmtree(ROOT, ignore_errors=True)
        dom = conn.lookupByName(SOURCE)
        for c in dom.listAllCheckpoints():
            if c.getName() not in checkpoints:
                c.delete(0)
        conn.close()
        services.close()
        worker.services.close()


def finished(api: TestClient, job: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    """The job once it has ended (polled as a client would)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = api.get(f"/api/v1/jobs/{job['id']}").json()
        if shown["state"] not in ("queued", "in-progress", "cancelling"):
            return dict(shown)
        time.sleep(1)
    raise AssertionError(f"job {job['id']} did not end in {timeout} s")


def test_protect_backup_and_restore_as_new_through_the_api(api: TestClient) -> None:
    r = api.post("/api/v1/vaults", json={"name": "main", "location": "local"})
    assert r.status_code == 201, r.text
    found = api.post("/api/v1/vms/discover", json={}).json()
    assert found["state"] in ("completed", "completed-with-warnings"), found
    source = api.get(f"/api/v1/vms/{SOURCE}").json()
    [reg] = api.post("/api/v1/vms/register", json={"vms": [SOURCE]}).json()
    assert reg["state"] in ("completed", "completed-with-warnings"), reg
    policy = {"name": "api-daily", "schedule": "daily@02:00", "retention": {"daily": 7}}
    assert api.post("/api/v1/policies", json=policy).status_code == 201
    [conf] = api.post("/api/v1/protection", json={"vms": [SOURCE], "policy": "api-daily"}).json()
    assert conf["state"] == "completed" and conf["vm_state"] == "protected", conf
    [item] = api.get("/api/v1/protection").json()
    assert item["health"] == "never-backed-up" or item["health"] == "ok", item

    r = api.post("/api/v1/backups", json={"vms": [SOURCE]})
    assert r.status_code == 202, r.text
    backup = finished(api, r.json()[0])
    assert backup["state"] in ("completed", "completed-with-warnings"), backup
    [point] = api.get(f"/api/v1/points?vm={SOURCE}").json()
    assert point["job_id"] == backup["id"]
    [item] = api.get("/api/v1/protection").json()
    assert item["health"] == "ok" and item["points"] == 1

    body = {"vm": SOURCE, "point": point["id"], "mode": "as-new", "name": RESTORED,
            "directory": str(ROOT)}  # fmt: skip
    r = api.post("/api/v1/restores", json=body)
    assert r.status_code == 202, r.text
    restore = finished(api, r.json())
    assert restore["state"] in ("completed", "completed-with-warnings"), restore
    conn = libvirt.open(URI)
    try:
        dom = conn.lookupByName(RESTORED)
        assert dom.UUIDString() != source["uuid"]
        assert not dom.isActive()  # not started: no "start" asked
    finally:
        conn.close()
    assert sorted(p.name for p in ROOT.iterdir() if p.suffix == ".qcow2") == [
        f"{RESTORED}-{d['target']}.qcow2" for d in point["disks"] if not d["excluded"]
    ]
    # the same name again is refused before anything is queued: it exists now
    r = api.post("/api/v1/restores", json=body)
    assert r.status_code == 409 and r.json()["error"]["code"] == "RESTORE_NAME_EXISTS"
