"""The remote CLI on a real lab guest (docs/server.md, "Remote CLI"): a foreground ``backup``
and ``restore --as-new`` run with ``--server`` against a real ``vmvault serve`` — the server's
workers run them on libvirt, the CLI waits and prints the job, the point and the restored VM
as a local run prints them (from the job's outcome the server kept), with the local exit
code.  The restored VM is removed afterwards, with its files and the backup's checkpoints."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.conftest import CliRunner, Result
from tests.integration.test_api_lab import remove_domain
from tests.integration.test_server import N, ServerProcess
from vmvault.hypervisor.lab.vms import lab_prefix

pytestmark = pytest.mark.lab

URI = "qemu:///system"
SOURCE = N["standard"]
RESTORED = f"{lab_prefix()}-remote-restored"
#: Reachable by QEMU (libvirt-qemu): not under pytest's 0700 temporary directories.
ROOT = Path("/var/lib/vmvault/test-remote-restores") / SOURCE


def remove_files() -> None:
    """The restored VM's disks and the links to them in the default pool."""
    shutil.rmtree(ROOT, ignore_errors=True)
    for link in Path("/var/lib/libvirt/images").glob(f"{RESTORED}-*"):
        link.unlink()


@pytest.fixture()
def served(lab: dict[str, Any], home: Path) -> Iterator[ServerProcess]:
    assert SOURCE in lab, sorted(lab)
    conn = libvirt.open(URI)
    checkpoints = {c.getName() for c in conn.lookupByName(SOURCE).listAllCheckpoints()}
    remove_domain(conn, RESTORED)  # what an interrupted run left
    remove_files()
    ROOT.mkdir(parents=True)
    server = ServerProcess(home)
    try:
        yield server
    finally:
        if server.proc is not None:
            server.stop()
        remove_domain(conn, RESTORED)
        remove_files()
        for c in conn.lookupByName(SOURCE).listAllCheckpoints():
            if c.getName() not in checkpoints:
                c.delete(0)
        conn.close()


def test_foreground_backup_and_restore_as_new_with_server(
    cli: CliRunner, home: Path, served: ServerProcess, tmp_path: Path
) -> None:
    assert cli("vault", "create", "main", "--location", "local").code == 0
    assert cli("discover").code in (0, 3)
    assert cli("register", SOURCE).code in (0, 3)
    served.start()  # its operator token: enough to back up and restore
    token = served.auth["Authorization"].removeprefix("Bearer ")
    elsewhere = tmp_path / "elsewhere"  # the remote CLI's own (empty) home
    elsewhere.mkdir()

    def remote(*args: str) -> Result:
        env = {"VMVAULT_HOME": str(elsewhere), "VMVAULT_SERVER": served.url.removesuffix("/api/v1")}
        return cli(*args, env=env | {"VMVAULT_TOKEN": token}, timeout=600)

    r = remote("backup", SOURCE)
    assert r.code == 0 and r.stderr == "", (r, served.log.read_text())
    [job_line, point_line] = r.stdout.splitlines()
    assert re.fullmatch(rf"job \d+ backup \S+/{SOURCE}: completed", job_line), r.stdout
    [point] = cli("points", "list", SOURCE, "--json").json()  # the server's catalog
    assert point_line.startswith(f"  point {point['id']}: {point['consistency']} ("), r.stdout
    assert point["job_id"] == int(job_line.split()[1])

    r = remote("restore", SOURCE, "--point", point["id"], "--as-new", RESTORED, "--dir", str(ROOT))
    assert r.code == 0 and r.stderr == "", (r, served.log.read_text())
    lines = r.stdout.splitlines()
    assert re.fullmatch(rf"job \d+ restore \S+/{SOURCE}: completed", lines[0]), r.stdout
    conn = libvirt.open(URI)
    try:
        dom = conn.lookupByName(RESTORED)  # defined by the server, as the CLI printed
        assert lines[1] == f"  restored as {RESTORED} ({dom.UUIDString()})", r.stdout
    finally:
        conn.close()
    disks = [d["target"] for d in point["disks"] if not d["excluded"]]
    for target, line in zip(disks, lines[2:], strict=False):
        assert line.startswith(f"  {target}: {ROOT}/{RESTORED}-{target}.qcow2 "), r.stdout
    # the same restore again: refused before anything is queued, as locally (exit 2)
    r = remote("restore", SOURCE, "--point", point["id"], "--as-new", RESTORED, "--dir", str(ROOT))
    local = cli("restore", SOURCE, "--point", point["id"], "--as-new", RESTORED, "--dir", str(ROOT))
    assert (r.code, r.stdout, r.stderr) == (local.code, local.stdout, local.stderr) and r.code == 2
    assert list(elsewhere.iterdir()) == []
