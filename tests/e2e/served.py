"""A real ``vmvault serve`` on a test's home, over a small catalog (:func:`seed_catalog`):
what the remote CLI's and the local socket's tests run their commands against."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import save_vm
from tests.e2e.api_world import make_world
from vmvault.domain.vm import VmState


@dataclass
class Served:
    url: str
    admin: str
    reader: str
    log: Path


@contextlib.contextmanager
def serve_home(
    home: Path, listen: str, url: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[None]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    environment |= {"VMVAULT_HOME": str(home), "VMVAULT_GC_SCHEDULE": "off"} | (env or {})
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmvault", "serve", "--listen", listen],
            env=environment,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{url}/api/v1/health", timeout=5, verify=False)
                break
            time.sleep(0.2)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=150)


WEB = "11111111-2222-3333-4444-555555555555"


def seed_catalog(home: Path) -> None:
    """Vault ``main``; ``web`` protected by ``gold`` with a point (backed up through the
    in-memory hypervisor, into the real catalog and vault), and VMs in three states."""
    w = make_world(home)
    w.services.vaults.create("main", "local", None)
    w.add_vm("web", WEB)
    c = w.client()
    assert c.post("/api/v1/vms/discover", json={}).status_code == 200
    assert c.post("/api/v1/vms/register", json={"vms": ["web"]}).status_code == 200
    gold = {"name": "gold", "schedule": "daily@02:00", "retention": {"daily": 7}}
    assert c.post("/api/v1/policies", json=gold).status_code == 201
    hourly = {
        "name": "sets",
        "schedule": "every:6h@00:00-23:59",
        "retention": {"daily": 2},
        "as_set": True,
    }
    assert c.post("/api/v1/policies", json=hourly).status_code == 201, c.get("/api/v1/policies")
    assert c.post("/api/v1/protection", json={"vms": ["web"], "policy": "gold"}).status_code == 200
    assert c.post("/api/v1/backups", json={"vms": ["web"]}).status_code == 202
    [backup, *_] = w.run_queued()
    assert backup.state.value == "completed", backup.message
    save_vm(w.services, "web1", VmState.DISCOVERED)
    save_vm(w.services, "db1", VmState.REGISTERED)
    save_vm(w.services, "app[1]", VmState.REGISTERED, host="other")
    w.services._engine.dispose()
