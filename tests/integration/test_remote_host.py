"""A second, independent libvirt host (``vmvault lab host``), driven through the real
``vmvault`` command: discovery across both hosts, the up-front refusal of a backup where no
node serves the VM's host, and a vmvault process acting as the node of the second host
(``VMVAULT_NODE_HOST``) that backs up and restores (as new) a guest of that host on the shared
catalog and vault. One small guest; the host is started once for the module and removed by
the last test, which checks that nothing is left."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.conftest import CliRunner
from tests.integration.conftest import lab_settings
from tests.integration.test_inventory import Defined, defined  # noqa: F401
from vmvault.bootstrap import bootstrap
from vmvault.hypervisor.lab.disks import build_templates
from vmvault.hypervisor.lab.vms import lab_prefix

pytestmark = pytest.mark.lab

MAIN = "qemu:///system"
GUEST = f"{lab_prefix()}h-standard-1"


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The second host, up, with one standard guest; its document plus ``up_s``."""
    services = bootstrap(lab_settings(tmp_path_factory.mktemp("host-home")))
    services.lab.ensure_daemons()  # the main host too: discovery covers both
    services.lab.host_down()  # a clean slate: leftovers of an interrupted run
    t0 = time.monotonic()
    doc = services.lab.host_up()
    doc["up_s"] = time.monotonic() - t0
    [vm] = services.lab.up(1, ["standard"], doc["uri"])
    doc["guest"] = vm
    doc["cache"] = services.settings.lab_cache
    yield doc
    services.lab.host_down()


def _processes_of(hdir: Path) -> list[int]:
    """Pids whose command line names the host's directory (its unshare and init)."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if str(hdir).encode() in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def test_lab_host_up_is_idempotent_and_independent(second: dict[str, Any], cli: CliRunner) -> None:
    uri = second["uri"]
    assert second["state"] == "up" and uri.startswith("qemu+tcp://127.0.0.1:"), second
    assert uri.endswith("/system")
    again = cli("lab", "host", "up", "--json")
    assert again.code == 0, again
    assert again.json()["uri"] == uri and again.json()["pid"] == second["pid"]  # the same one
    status = cli("lab", "host", "status", "--json").json()
    assert status["state"] == "up" and status["uri"] == uri
    # its own daemon: its domains are not the main host's, and the reverse
    conn = libvirt.open(uri)
    try:
        assert [d.name() for d in conn.listAllDomains(0)] == [GUEST]
        assert conn.getURI() == uri
    finally:
        conn.close()
    main = libvirt.open(MAIN)
    try:
        assert GUEST not in {d.name() for d in main.listAllDomains(0)}
    finally:
        main.close()
    hdir = Path(second["dir"])
    # its sockets, pid files and domain XML are in its own directory, not in /run or /etc
    assert (hdir / "root/run/libvirt/libvirt-sock").is_socket()
    assert (hdir / f"root/etc/libvirt/qemu/{GUEST}.xml").is_file()
    assert not Path(f"/etc/libvirt/qemu/{GUEST}.xml").exists()
    listed = cli("lab", "status", "--host", uri, "--json").json()
    assert [vm["name"] for vm in listed] == [GUEST]
    refused = cli("lab", "status", "--host", "qemu+tcp://127.0.0.1:9/system")
    assert refused.code == 2 and "INVALID_INPUT" in refused.stderr


def test_discovery_across_both_hosts(
    second: dict[str, Any],
    defined: Defined,  # noqa: F811  (the fixture)
    cli: CliRunner,
) -> None:
    uri = second["uri"]
    local = defined.define("it-remote-local")  # on the main host, never started
    assert cli("vault", "create", "main", "--location", "dc1").code == 0
    assert cli("host", "add", MAIN, "--location", "dc1").code == 0
    added = cli("host", "add", uri, "--location", "dc1")
    assert added.code == 0, added
    found = cli("discover", "--json")
    assert found.code == 0, found
    vms = {vm["name"]: vm for vm in cli("vm", "list", "--json").json()}
    assert vms[GUEST]["host_uri"] == uri and vms[GUEST]["uuid"] == second["guest"]["uuid"]
    assert vms["it-remote-local"]["host_uri"] == MAIN and vms["it-remote-local"]["uuid"] == local
    hosts = {h["uri"]: h for h in cli("host", "list", "--json").json()}
    assert set(hosts) == {MAIN, uri}


def _seed(image: Path, raw: Path) -> bytes:
    """``/seed/random.bin`` of the ext4 file system in qcow2 ``image`` (via debugfs)."""
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", str(image), str(raw)], check=True)
    out = subprocess.run(
        ["debugfs", "-R", "cat /seed/random.bin", str(raw)], capture_output=True, check=True
    )
    raw.unlink()
    return out.stdout


def test_backup_and_restore_through_the_node_of_the_second_host(
    second: dict[str, Any], cli: CliRunner, tmp_path: Path
) -> None:
    uri = second["uri"]
    assert cli("vault", "create", "main", "--location", "dc1").code == 0
    assert cli("host", "add", uri, "--location", "dc1").code == 0
    assert cli("discover").code == 0
    assert cli("register", GUEST).code == 0
    # this process serves qemu:///system: refused before any job, any NBD or path
    refused = cli("backup", GUEST)
    assert refused.code == 2 and refused.stderr.startswith("error HOST_NOT_SERVED: "), refused
    assert f"VMVAULT_NODE_HOST={uri}" in refused.stderr
    assert cli("jobs", "list", "--type", "backup", "--json").json() == []
    # the node of that host: same catalog and vault, VMVAULT_NODE_HOST=its URI
    node = {"VMVAULT_NODE_HOST": uri}
    t0 = time.monotonic()
    done = cli("backup", GUEST, "--json", env=node)
    backup_s = time.monotonic() - t0
    assert done.code == 0, done
    [job] = done.json() if isinstance(done.json(), list) else [done.json()]
    assert job["state"] == "completed", job
    [point] = cli("points", "list", "--json").json()
    assert point["consistency"] == "file-system-consistent", point
    t0 = time.monotonic()
    restored = cli("restore", GUEST, "--point", point["id"], "--as-new", f"{GUEST}-r", env=node)
    restore_s = time.monotonic() - t0
    assert restored.code == 0, restored
    images = Path(second["dir"]) / "images"
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName(f"{GUEST}-r")  # on the second host, not the main one
        xml = dom.XMLDesc(0)
    finally:
        conn.close()
    for target in ("vda", "vdb"):
        assert f"<source file='{images / f'{GUEST}-r-{target}.qcow2'}'" in xml, xml
    # the restored /data2 holds the guest's seed file, byte for byte (every lab disk starts
    # from the same template; the guest never writes /data2/seed)
    seed = _seed(images / f"{GUEST}-r-vdb.qcow2", tmp_path / "r.raw")
    assert seed == _seed(build_templates(second["cache"]).data2_qcow2, tmp_path / "t.raw")
    assert len(seed) == 1 << 20
    # the main host's node cannot restore it either (its disks are the second host's)
    # (HOST_SERVED_ELSEWHERE while the second host's node is live — its last heartbeat younger
    # than a lease, docs/deployment.md — HOST_NOT_SERVED once it is not: both refuse up front)
    again = cli("restore", GUEST, "--point", point["id"], "--as-new", f"{GUEST}-r2")
    assert again.code == 2, again
    assert again.stderr.startswith(("error HOST_SERVED_ELSEWHERE: ", "error HOST_NOT_SERVED: "))
    print(f"\nlab host up {second['up_s']:.1f}s; node backup {backup_s:.1f}s, "
          f"restore as-new {restore_s:.1f}s")  # fmt: skip


def test_lab_host_down_leaves_nothing(second: dict[str, Any], cli: CliRunner) -> None:
    hdir = Path(second["dir"])
    port = int(second["uri"].split(":")[2].split("/")[0])
    assert _processes_of(hdir), "the host runs before down"
    t0 = time.monotonic()
    down = cli("lab", "host", "down", "--json")
    down_s = time.monotonic() - t0
    assert down.code == 0, down
    assert set(down.json()["domains"]) == {GUEST, f"{GUEST}-r"}
    assert not hdir.exists()
    assert _processes_of(hdir) == []
    assert not any(str(hdir) in line for line in Path("/proc/mounts").read_text().splitlines())
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nobody listens any more
    assert cli("lab", "host", "status", "--json").json()["state"] == "down"
    assert cli("lab", "host", "down", "--json").json() == {"removed": False, "domains": []}
    assert os.path.exists("/run/libvirt/libvirt-sock")  # the main libvirtd is untouched
    print(f"\nlab host down {down_s:.1f}s")
