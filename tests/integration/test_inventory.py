"""Discovery and registration against the real lab (libvirtd, QEMU/TCG guests, qemu-ga),
driven through the real ``vmvault`` command."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.conftest import CliRunner
from tests.integration.conftest import LAB_VARIANTS, lab_settings
from vmvault.bootstrap import bootstrap
from vmvault.domain.job import JobType
from vmvault.hypervisor.lab.vms import lab_prefix
from vmvault.hypervisor.libvirt import agent

pytestmark = pytest.mark.lab

URI = "qemu:///system"
#: Lab guest names (``VMVAULT_LAB_PREFIX`` lets several labs share one libvirtd).
N = {v: f"{lab_prefix()}-{v}-1" for v in LAB_VARIANTS}


def domain_xml(name: str, disk: Path, *, group: str = "it", extra_disk: Path | None = None) -> str:
    extra = ""
    if extra_disk is not None:
        extra = f"""<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
          <source file='{extra_disk}'/><target dev='vdb' bus='virtio'/></disk>"""
    return f"""
<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuidlib.uuid4()}</uuid>
  <metadata><vmvault:group xmlns:vmvault="https://vmvault.dev/xmlns/1">{group}</vmvault:group></metadata>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
    {extra}
    <interface type='network'><mac address='52:54:00:11:22:33'/><source network='default'/>
      <model type='virtio'/></interface>
    <interface type='bridge'><mac address='52:54:00:11:22:34'/><source bridge='br-it'/></interface>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices>
</domain>"""


class Defined:
    """Domains defined (never started) by a test, undefined at the end whatever happens."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.conn = libvirt.open(URI)
        self.names: list[str] = []

    def define(self, name: str, *, group: str = "it", two_disks: bool = False) -> str:
        disks = []
        for i in range(2 if two_disks else 1):
            path = self.tmp / f"{name}-{i}.qcow2"
            if not path.exists():
                subprocess.run(
                    ["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True
                )
            disks.append(path)
        try:  # redefinition keeps the uuid
            old = self.conn.lookupByName(name)
            uuid = old.UUIDString()
        except libvirt.libvirtError:
            uuid = None
        xml = domain_xml(name, disks[0], group=group, extra_disk=disks[1] if two_disks else None)
        if uuid:
            xml = xml.replace(
                xml[xml.index("<uuid>") : xml.index("</uuid>") + 7], f"<uuid>{uuid}</uuid>"
            )
        dom = self.conn.defineXML(xml)
        if name not in self.names:
            self.names.append(name)
        return str(dom.UUIDString())

    def undefine(self, name: str) -> None:
        self.conn.lookupByName(name).undefine()
        self.names.remove(name)

    def close(self) -> None:
        for name in self.names:
            with contextlib.suppress(libvirt.libvirtError):
                self.conn.lookupByName(name).undefine()
        self.conn.close()


@pytest.fixture()
def defined(tmp_path: Path) -> Iterator[Defined]:
    d = Defined(tmp_path)
    yield d
    d.close()


def by_name(vms: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(vm["name"]): vm for vm in vms if vm["host_uri"] == URI}


def setup_vault(cli: CliRunner) -> None:
    r = cli("vault", "create", "main", "--location", "local")
    assert r.code == 0, r.stderr


def discover(cli: CliRunner, *args: str) -> dict[str, object]:
    r = cli("discover", "--json", *args)
    assert r.code in (0, 3), r.stderr
    doc = r.json()
    assert doc["type"] == "discovery" and doc["state"].startswith("completed")
    return doc  # type: ignore[no-any-return]


# --- discovery ---------------------------------------------------------------------------------


def test_discovery_records_every_lab_vm(lab: dict, cli: CliRunner) -> None:
    setup_vault(cli)
    doc = discover(cli)
    assert {str(v["uuid"]) for v in lab.values()} <= set(doc["result"]["new"])  # type: ignore[index]
    vms = by_name(cli("vm", "list", "--json").json())
    std = vms[N["standard"]]
    assert std["state"] == "discovered" and std["power_state"] == "running"
    assert std["group"] == "lab" and std["agent_channel"] is True
    assert [
        (d["target"], d["format"], d["type"], d["device"], d["excluded"]) for d in std["disks"]
    ] == [
        ("vda", "qcow2", "file", "disk", False),
        ("vdb", "qcow2", "file", "disk", False),
    ]
    assert vms[N["no-agent"]]["agent_channel"] is False
    assert {d["format"] for d in vms[N["raw-disk"]]["disks"]} == {"qcow2", "raw"}
    lun = [d for d in vms[N["passthrough"]]["disks"] if d["device"] == "lun"]
    assert lun and lun[0]["excluded"] and "pass-through" in lun[0]["reason"]
    # a job was recorded with its log
    job = cli("jobs", "show", str(doc["id"]), "--json").json()
    assert any("new: " in line for line in job["log"])


def test_discovery_sees_defined_changed_and_undefined_vms(cli: CliRunner, defined: Defined) -> None:
    setup_vault(cli)
    discover(cli)
    uuid = defined.define("vmvault-it-moving")
    doc = discover(cli)
    assert doc["result"]["new"] == [uuid]  # type: ignore[index]
    vm = cli("vm", "show", uuid, "--json").json()
    assert vm["power_state"] == "shut-off" and vm["group"] == "it"
    assert [(n["type"], n["source"], n["mac"]) for n in vm["nics"]] == [
        ("network", "default", "52:54:00:11:22:33"),
        ("bridge", "br-it", "52:54:00:11:22:34"),
    ]
    assert discover(cli)["result"]["changed"] == []  # type: ignore[index]
    defined.define("vmvault-it-moving", two_disks=True)
    assert discover(cli)["result"]["changed"] == [uuid]  # type: ignore[index]
    defined.undefine("vmvault-it-moving")
    assert discover(cli)["result"]["vanished"] == [uuid]  # type: ignore[index]
    assert cli("vm", "show", uuid, "--json").json()["vanished"] is True
    assert discover(cli)["result"]["vanished"] == []  # type: ignore[index]


def test_equal_names_on_two_hosts_are_told_apart(cli: CliRunner, defined: Defined) -> None:
    setup_vault(cli)
    # libvirt's test driver is a second (in-process) host; its one domain is named "test"
    assert cli("host", "add", "test:///default", "--location", "local").code == 0
    mine = defined.define("test", group="blue")
    discover(cli)
    tests = [vm for vm in cli("vm", "list", "--json").json() if vm["name"] == "test"]
    assert len(tests) == 2 and len({vm["uuid"] for vm in tests}) == 2
    assert {vm["host_uri"] for vm in tests} == {URI, "test:///default"}
    r = cli("vm", "show", "test")
    assert r.code == 2 and "error VM_AMBIGUOUS" in r.stderr
    assert cli("vm", "show", "blue/test", "--json").json()["uuid"] == mine
    table = cli("vm", "list").stdout
    assert table.count(" test ") == 2 and mine in table


# --- registration ------------------------------------------------------------------------------


def register(cli: CliRunner, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    r = cli("register", *args, "--json", env=env)
    return r, (r.json() if r.stdout.strip() else None)


def test_registration_outcomes(lab: dict, cli: CliRunner, defined: Defined) -> None:
    setup_vault(cli)
    off = defined.define("vmvault-it-off")
    discover(cli)

    r, jobs = register(cli, N["standard"])
    assert r.code == 0 and jobs[0]["state"] == "completed", r.stderr
    vm = cli("vm", "show", N["standard"], "--json").json()
    assert vm["state"] == "registered" and vm["vault"] == "main"
    assert vm["agent_version"] and vm["agent_version"].split(".")[0].isdigit()

    r, _ = register(cli, N["standard"])
    assert r.code == 2 and "error ALREADY_REGISTERED" in r.stderr

    r, jobs = register(cli, N["no-agent"])
    assert r.code == 1 and jobs[0]["error_code"] == "AGENT_NOT_CONFIGURED" and jobs[0]["remedy"]
    assert cli("vm", "show", N["no-agent"], "--json").json()["state"] == "discovered"
    r, jobs = register(cli, N["no-agent"], "--crash-consistent")
    assert r.code == 3 and jobs[0]["state"] == "completed-with-warnings"
    assert cli("vm", "show", N["no-agent"], "--json").json()["crash_consistent_only"] is True

    r, jobs = register(cli, N["raw-disk"])
    assert r.code == 3 and any("raw" in w and "full backup" in w for w in jobs[0]["warnings"])

    r, jobs = register(cli, N["passthrough"])
    assert r.code == 3
    assert any("excluded" in w and "pass-through" in w for w in jobs[0]["warnings"])

    r, jobs = register(cli, N["writer"], env={"VMVAULT_MIN_AGENT": "99.0"})
    assert r.code == 1 and jobs[0]["error_code"] == "AGENT_TOO_OLD"
    assert "99.0" in jobs[0]["remedy"]

    r, jobs = register(cli, N["app-hook"], env={"VMVAULT_MAX_DISKS": "1"})
    assert r.code == 1 and jobs[0]["error_code"] == "TOO_MANY_DISKS"

    r, jobs = register(cli, off)
    assert r.code == 3 and any("crash-consistent" in w for w in jobs[0]["warnings"])

    failed = cli("jobs", "list", "--type", "register", "--status", "failed", "--json").json()
    assert {j["error_code"] for j in failed} == {
        "AGENT_NOT_CONFIGURED",
        "AGENT_TOO_OLD",
        "TOO_MANY_DISKS",
    }
    assert all(j["vm"] and j["remedy"] for j in failed)
    registered = cli("vm", "list", "--state", "registered", "--json").json()
    assert len(registered) == 5


def test_a_bad_reference_refuses_the_whole_request(lab: dict, cli: CliRunner) -> None:
    setup_vault(cli)
    discover(cli)
    r, _ = register(cli, N["standard"], "no-such-vm")
    assert r.code == 2 and "error VM_NOT_FOUND" in r.stderr and "Traceback" not in r.stderr
    assert cli("jobs", "list", "--type", "register", "--json").json() == []
    assert cli("vm", "show", N["standard"], "--json").json()["state"] == "discovered"


def test_vm_of_another_location_is_refused(cli: CliRunner) -> None:
    setup_vault(cli)
    cli("vault", "create", "far", "--location", "remote")
    assert cli("host", "add", "test:///default", "--location", "remote").code == 0
    discover(cli, "--vault", "far")
    remote = [vm for vm in cli("vm", "list", "--vault", "far", "--json").json()]
    assert [vm["name"] for vm in remote] == ["test"]
    r, _ = register(cli, str(remote[0]["uuid"]), "--vault", "main")
    assert r.code == 2 and "error VM_NOT_IN_LOCATION" in r.stderr


def test_vm_deleted_after_discovery(cli: CliRunner, defined: Defined) -> None:
    setup_vault(cli)
    uuid = defined.define("vmvault-it-gone")
    discover(cli)
    defined.undefine("vmvault-it-gone")
    r, jobs = register(cli, uuid)
    assert r.code == 1 and jobs[0]["error_code"] == "VM_DELETED"
    assert "stop its protection" in jobs[0]["remedy"]


def test_silent_agent(lab: dict, cli: CliRunner) -> None:
    """qemu-ga stopped (SIGSTOP) in the guest: guest-ping times out."""
    setup_vault(cli)
    discover(cli)
    conn = libvirt.open(URI)
    dom = conn.lookupByName(N["writer"])
    try:
        agent.exec_(
            dom,
            "/bin/sh",
            [
                "-c",
                "(sleep 1; killall -STOP qemu-ga; sleep 10; killall -CONT qemu-ga)"
                " >/dev/null 2>&1 &",
            ],
        )
        time.sleep(2)
        r, jobs = register(cli, N["writer"], env={"VMVAULT_AGENT_TIMEOUT": "2"})
        assert r.code == 1 and jobs[0]["error_code"] == "AGENT_NOT_RESPONDING"
    finally:
        deadline = time.monotonic() + 60
        while not agent.ping(dom, timeout=2) and time.monotonic() < deadline:
            time.sleep(1)
        conn.close()
    r, jobs = register(cli, N["writer"])
    assert r.code == 0, r.stderr


def test_concurrent_jobs_are_refused(lab: dict, cli: CliRunner, home: Path) -> None:
    setup_vault(cli)
    discover(cli)
    services = bootstrap(lab_settings(home))
    vm = services.inventory.find(N["standard"])
    held = services.runner.start(JobType.BACKUP, "main", vm.uuid, vm.label)
    r, _ = register(cli, N["standard"])
    assert r.code == 2 and "error OPERATION_IN_PROGRESS" in r.stderr
    assert "another operation is in progress on this item" in r.stderr
    assert f"job {held.id}" in r.stderr
    services.runner.finish(held, None)
    assert register(cli, N["standard"])[0].code == 0

    running = services.runner.start(JobType.DISCOVERY, "main", None, None)
    r = cli("discover")
    assert r.code == 2 and "error DISCOVERY_IN_PROGRESS" in r.stderr
    services.runner.finish(running, None)
    discover(cli)
