"""The real lab for integration tests: one guest of each variant, booted once per session
in parallel, on the host's real libvirtd (started if it is not running)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from vmvault.bootstrap import bootstrap
from vmvault.config import Settings
from vmvault.hypervisor.libvirt import agent
from vmvault.hypervisor.libvirt.domxml import has_agent_channel

#: Guests every integration test may use (names are lab-<variant>-1).
LAB_VARIANTS = ("standard", "no-agent", "raw-disk", "passthrough", "writer", "app-hook")


def lab_settings(home: Path) -> Settings:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env["VMVAULT_HOME"] = str(home)
    for key in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE", "VMVAULT_LAB_PREFIX"):
        if key in os.environ:
            env[key] = os.environ[key]
    return Settings.from_env(env)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, object]]]:
    services = bootstrap(lab_settings(tmp_path_factory.mktemp("lab-home")))
    services.lab.ensure_daemons()
    services.lab.down()  # a clean slate: leftovers of an interrupted run
    vms = services.lab.up(1, list(LAB_VARIANTS))
    yield {str(vm["name"]): vm for vm in vms}
    services.lab.down()


def assert_vm_clean(work_dir: Path, name: str, checkpoints: set[str], exact: bool = True) -> None:
    """What a cancelled, failed or interrupted backup must leave behind: no libvirt job, the
    guest running and thawed, no checkpoint but ``checkpoints`` (all of them when ``exact``),
    and nothing in the VM's work directory."""
    conn = libvirt.open("qemu:///system")
    try:
        dom = conn.lookupByName(name)
        assert dom.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE
        found = {c.getName() for c in dom.listAllCheckpoints()}
        assert found == checkpoints if exact else found <= checkpoints, (found, checkpoints)
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        if has_agent_channel(dom.XMLDesc(0)):
            assert agent.agent_command(dom, "guest-fsfreeze-status", timeout=10) == "thawed"
        vm_dir = work_dir / dom.UUIDString()
    finally:
        conn.close()
    # the run directory keeps only its lock between backups (no state file: the journal)
    assert not vm_dir.exists() or {p.name for p in vm_dir.iterdir()} <= {"lock", "sock", "scratch"}
    for sub in ("sock", "scratch"):
        assert not (vm_dir / sub).exists() or list((vm_dir / sub).iterdir()) == []
