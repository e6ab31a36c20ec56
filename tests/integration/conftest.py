"""The real lab for integration tests: one guest of each variant, booted once per session
in parallel, on the host's real libvirtd (started if it is not running)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from vmvault.bootstrap import bootstrap
from vmvault.config import Settings
from vmvault.hypervisor.libvirt import agent
from vmvault.hypervisor.libvirt.domxml import has_agent_channel

#: Guests every integration test may use (names are lab-<variant>-1).
LAB_VARIANTS = ("standard", "no-agent", "raw-disk", "passthrough", "writer", "app-hook")
#: The lab's main libvirt host.
MAIN_HOST = "qemu:///system"
#: Guests of the session's second host (``second_host``; names are <prefix>h-<variant>-1).
SECOND_HOST_VARIANTS = ("writer",)


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


@pytest.fixture(scope="session")
def second_host(
    lab: dict[str, dict[str, object]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The lab's second libvirt host (``vmvault lab host up``) with one guest of each of
    :data:`SECOND_HOST_VARIANTS`, for the whole session: its document (``uri``, ``dir`` …) plus
    ``guests`` by name.  Removed at the session's end.  (tests/integration/test_remote_host.py
    has a host of its own for its module: it starts from a clean slate, so it runs after the
    tests that use this one, alphabetically, and its last test removes the host.)"""
    services = bootstrap(lab_settings(tmp_path_factory.mktemp("second-host-home")))
    services.lab.host_down()  # a clean slate: leftovers of an interrupted run
    doc = services.lab.host_up()
    vms = services.lab.up(1, list(SECOND_HOST_VARIANTS), doc["uri"])
    doc["guests"] = {str(vm["name"]): vm for vm in vms}
    yield doc
    services.lab.host_down()


def assert_vm_clean(
    work_dir: Path, name: str, checkpoints: set[str], exact: bool = True, uri: str = MAIN_HOST
) -> None:
    """What a cancelled, failed or interrupted backup must leave behind: no libvirt job, the
    guest running and thawed, no checkpoint but ``checkpoints`` (all of them when ``exact``),
    and nothing in the VM's work directory.  ``uri``: the guest's libvirt host."""
    conn = libvirt.open(uri)
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
