"""Shared fixtures: a private VMVAULT_HOME per test and a CLI runner that spawns the real
``vmvault`` command (a separate process, as a user or script would)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: The session fixture ``rgw``: a real Ceph RADOS Gateway for every S3 test.
pytest_plugins = ["tests.s3lab"]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


CliRunner = Callable[..., Result]


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture()
def cli(home: Path) -> CliRunner:
    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Result:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
        full_env["VMVAULT_HOME"] = str(home)
        for key in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE", "VMVAULT_LAB_PREFIX"):
            if key in os.environ:
                full_env[key] = os.environ[key]
        full_env.update(env or {})
        p = subprocess.run(
            [sys.executable, "-m", "vmvault", *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
        )
        return Result(p.returncode, p.stdout, p.stderr)

    return run


def save_vm(
    services: Any, name: str, state: Any, policy: str | None = None, host: str = "host"
) -> Any:
    """Write a VM into the catalog as discovery (and registration) would, without libvirt:
    for tests of catalog-level logic (queue, scheduler, API)."""
    from vmvault.domain.vm import PowerState, VmItem, VmState

    now = services.clock()
    vm = VmItem(
        uuid=f"00000000-0000-0000-0000-{name:0>12}",
        name=name, host_uri="qemu:///system", hostname=host, group=host,
        power_state=PowerState.RUNNING, disks=[], nics=[], agent_channel=True, fingerprint="",
        first_seen=now, last_seen=now, state=state,
        vault=None if state is VmState.DISCOVERED else "main", policy=policy,
    )  # fmt: skip
    with services._uow() as uow:
        uow.vms.save(vm)
        uow.commit()
    return vm
