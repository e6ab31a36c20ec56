"""Selective disks and cluster-managed VMs on the real lab, through the real ``vmvault``.

The selective-disk VM is defined here (two qcow2 disks, never started: an offline backup, an
``--as-new`` restore that is only defined), so no session guest gains a checkpoint.  The
cluster tests mark a domain through its libvirt metadata (this module's own VM) and, through
the host's settings, the session's ``no-agent`` guest, whose backups would need a pause; the
session guest's domain is never changed.  Pacemaker itself is not running here (Debian's
package is not installed): its CIB parser is tested on a golden file in the unit tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.conftest import Result
from tests.integration.guests import libvirt_conn
from tests.integration.test_restore import run_cli
from vmvault.hypervisor.lab.vms import lab_prefix
from vmvault.hypervisor.libvirt.domxml import CLUSTER_NS
from vmvault.hypervisor.libvirt.restore import LibvirtRestoreDriver

pytestmark = pytest.mark.lab

URI = "qemu:///system"
PREFIX = lab_prefix()
ROOT = Path("/var/lib/vmvault/test-restores") / f"{PREFIX}-sel"
NO_AGENT = f"{PREFIX}-no-agent-1"


def domain_xml(name: str, vda: Path, vdb: Path) -> str:
    return f"""
<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuidlib.uuid4()}</uuid>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{vda}'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{vdb}'/><target dev='vdb' bus='virtio'/></disk>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices>
</domain>"""


def image(path: Path, pattern: int) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"write -P {pattern} 1M 3M", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def inactive(name: str) -> str:
    with libvirt_conn() as conn:
        return str(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def undefine(name: str) -> None:
    assert name.startswith(f"{PREFIX}-sel"), name  # never anybody else's
    with libvirt_conn() as conn, contextlib.suppress(libvirt.libvirtError):
        conn.lookupByName(name).undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)


@dataclass
class World:
    home: Path
    vm: str
    vda: Path
    vdb: Path
    point: str = ""

    def cli(self, *args: str) -> Result:
        return run_cli(self.home, *args)


@pytest.fixture(scope="module")
def world(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("selective-home")
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    name = f"{PREFIX}-sel-db"
    undefine(name)
    w = World(home, name, image(ROOT / "db-vda.qcow2", 0xA1), image(ROOT / "db-vdb.qcow2", 0xB2))
    with libvirt_conn() as conn:
        conn.defineXML(domain_xml(name, w.vda, w.vdb))
    assert w.cli("vault", "create", "main", "--location", "local").code == 0
    assert w.cli("discover").code in (0, 3)
    yield w
    for made in (name, f"{PREFIX}-sel-copy"):
        undefine(made)
    for link in LibvirtRestoreDriver().default_dir(URI).glob(f"{PREFIX}-sel-*"):
        link.unlink()
    shutil.rmtree(ROOT, ignore_errors=True)


def vm_doc(world: World, name: str) -> dict[str, Any]:
    r = world.cli("vm", "show", name, "--json")
    assert r.code == 0, r.stderr
    return r.json()  # type: ignore[no-any-return]


# --- selective disks -----------------------------------------------------------------------------


def test_an_excluded_disk_is_left_out_of_the_point_and_of_a_new_vm(world: World) -> None:
    # bad names are refused before anything changes, each with its code
    r = world.cli("register", world.vm, "--exclude-disk", "vdz")
    assert r.code == 2 and "error DISK_NOT_OF_VM" in r.stderr and "vda, vdb" in r.stderr
    r = world.cli("register", world.vm, "--exclude-disk", "vda", "--exclude-disk", "vdb")
    assert r.code == 2 and "error ALL_DISKS_EXCLUDED" in r.stderr
    assert vm_doc(world, world.vm)["state"] == "discovered"

    r = world.cli("register", world.vm, "--exclude-disk", "vdb")
    assert r.code in (0, 3), r.stdout + r.stderr  # shut off: agent not validated (warning)
    doc = vm_doc(world, world.vm)
    assert doc["state"] == "registered" and doc["excluded_disks"] == ["vdb"]
    disks = {d["target"]: d for d in doc["disks"]}
    assert not disks["vda"]["excluded"]
    assert disks["vdb"]["excluded"] and disks["vdb"]["reason"] == "excluded by user"

    r = world.cli("backup", world.vm, "--json")
    assert r.code == 0, r.stdout + r.stderr  # the operator's choice is no warning
    point = r.json()[0]["point"]
    world.point = point["id"]
    shown = world.cli("points", "show", world.point, "--json").json()
    pdisks = {d["target"]: d for d in shown["disks"]}
    assert set(pdisks) == {"vda", "vdb"}
    assert not pdisks["vda"]["excluded"] and pdisks["vda"]["bytes_read"] >= 3 << 20
    assert pdisks["vdb"] == pdisks["vdb"] | {
        "excluded": True,
        "reason": "excluded by user",
        "bytes_read": 0,
        "size": 0,
    }
    assert shown["bytes_logical"] == 64 << 20  # vda only

    # --as-new: the new VM has vda only, and the job says why vdb is not there
    copy = f"{PREFIX}-sel-copy"
    r = world.cli(
        "restore", world.vm, "--point", world.point, "--as-new", copy,
        "--dir", str(ROOT / "as-new"), "--json",
    )  # fmt: skip
    assert r.code == 3, r.stdout + r.stderr
    job = r.json()
    assert any(
        "vdb (excluded by user)" in w and f"left out of {copy}" in w for w in job["warnings"]
    )
    root = ET.fromstring(inactive(copy))
    assert [t.get("dev") for t in root.findall("devices/disk/target")] == ["vda"]
    restored = Path(job["result"]["disks"][0]["path"])
    same = subprocess.run(
        ["qemu-img", "compare", "-q", str(world.vda), str(restored)], capture_output=True
    )
    assert same.returncode == 0, same.stderr


def test_including_the_disk_again_backs_it_up_in_full(world: World) -> None:
    assert world.point, "runs after the first test"
    r = world.cli("vm", "update", world.vm, "--include-disk", "vdc")
    assert r.code == 2 and "error DISK_NOT_OF_VM" in r.stderr
    r = world.cli("vm", "update", world.vm, "--exclude-disk", "vda")
    assert r.code == 2 and "error ALL_DISKS_EXCLUDED" in r.stderr
    r = world.cli("vm", "update", world.vm, "--include-disk", "vdb", "--json")
    assert r.code == 0 and r.json()["excluded_disks"] == [], r.stderr
    r = world.cli("backup", world.vm, "--json")
    assert r.code in (0, 3), r.stdout + r.stderr
    disks = {d["target"]: d for d in r.json()[0]["point"]["disks"]}
    assert not disks["vdb"]["excluded"] and not disks["vdb"]["incremental"]
    assert disks["vdb"]["bytes_read"] >= 3 << 20


# --- cluster-managed -----------------------------------------------------------------------------


def test_a_vm_marked_in_its_metadata_is_never_replaced(world: World) -> None:
    assert world.point, "runs after the first test"
    marker = "<managed by='pacemaker'/>"
    with libvirt_conn() as conn:
        conn.lookupByName(world.vm).setMetadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT, marker, "vmcluster", CLUSTER_NS,
            libvirt.VIR_DOMAIN_AFFECT_CONFIG,
        )  # fmt: skip
    before_xml, before = inactive(world.vm), {p: md5(p) for p in (world.vda, world.vdb)}
    assert CLUSTER_NS in before_xml
    # refused from the domain's own metadata, even before a discovery has seen the marker
    r = world.cli("restore", world.vm, "--point", world.point, "--replace")
    assert r.code == 2 and "error CLUSTER_MANAGED_REPLACE" in r.stderr, r.stderr
    assert "--as-new" in r.stderr  # the remedy
    assert world.cli("discover").code in (0, 3)
    doc = vm_doc(world, world.vm)
    assert doc["cluster_managed"] is True
    assert doc["cluster_managed_reason"] == (
        "marked cluster-managed in its libvirt metadata (by pacemaker)"
    )
    shown = world.cli("vm", "show", world.vm)
    assert re.search(r"^cluster-managed +yes: marked cluster-managed", shown.stdout, re.M)
    listing = world.cli("vm", "list")
    line = next(x for x in listing.stdout.splitlines() if world.vm in x)
    assert "managed" in line.split()
    r = world.cli("restore", world.vm, "--point", world.point, "--replace")
    assert r.code == 2 and "error CLUSTER_MANAGED_REPLACE" in r.stderr
    # untouched: same definition, same images, still defined
    assert inactive(world.vm) == before_xml
    assert {p: md5(p) for p in (world.vda, world.vdb)} == before


def test_a_vm_whose_backups_would_pause_it_is_refused_and_never_paused(
    lab: dict[str, Any], tmp_path: Path
) -> None:
    """The session's no-agent guest (running): registering it crash-consistent (its backups
    pause it) is refused once the host's settings say a cluster manager owns it; registered
    before that, its backup is refused and it keeps running."""
    home = tmp_path / "home"
    home.mkdir()

    def cli(*args: str) -> Result:
        return run_cli(home, *args)

    assert cli("vault", "create", "main", "--location", "local").code == 0
    assert cli("discover").code in (0, 3)
    r = cli("host", "update", URI, "--cluster-managed", NO_AGENT)
    assert r.code == 0, r.stderr
    listed = cli("vm", "show", NO_AGENT, "--json").json()
    assert listed["cluster_managed_reason"].startswith("listed as cluster-managed in the settings")
    r = cli("register", NO_AGENT, "--crash-consistent", "--json")
    assert r.code == 1 and r.json()[0]["error_code"] == "CLUSTER_MANAGED_NO_PAUSE", r.stdout
    assert cli("vm", "show", NO_AGENT, "--json").json()["state"] == "discovered"

    r = cli("host", "update", URI, "--not-cluster-managed", NO_AGENT)
    assert r.code == 0 and cli("vm", "show", NO_AGENT, "--json").json()["cluster_managed"] is False
    assert cli("register", NO_AGENT, "--crash-consistent").code in (0, 3)
    assert cli("host", "update", URI, "--cluster-managed", NO_AGENT).code == 0
    with libvirt_conn() as conn:
        dom = conn.lookupByName(NO_AGENT)
        checkpoints = {c.getName() for c in dom.listAllCheckpoints()}
    r = cli("backup", NO_AGENT, "--json")
    assert r.code == 1 and r.json()[0]["error_code"] == "CLUSTER_MANAGED_NO_PAUSE", r.stdout
    with libvirt_conn() as conn:
        dom = conn.lookupByName(NO_AGENT)
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert dom.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE
        # no new checkpoint.  (Not "the same set": a session guest may carry a checkpoint of
        # another module's catalog, which this catalog's backup removes as a stale leftover of
        # its own before it plans — the one-catalog-per-host assumption, see docs/backup.md.)
        assert {c.getName() for c in dom.listAllCheckpoints()} <= checkpoints
