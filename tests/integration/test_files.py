"""File-level restore and exports on the real lab: files written in a guest, backed up twice
(one deleted between the points), listed, found and extracted byte-exact through
``vmvault files``; ``vmvault export`` read with ``nbdcopy`` equals a disks-only restore of
the same point; ``jobs cancel`` stops the export; start-up recovery cleans up after a killed
one.  Uses the session's standard guest (its ``/data`` is vda, ``/data2`` vdb).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api_tokens import authenticate, bearer
from tests.conftest import Result
from tests.integration.conftest import lab_settings
from tests.integration.guests import guest
from tests.integration.test_restore import run_cli
from vmvault.api.app import create_app
from vmvault.bootstrap import Services, bootstrap
from vmvault.domain.access import Role
from vmvault.domain.job import JobState

pytestmark = pytest.mark.lab

DIR = "/data/fr-files"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env["VMVAULT_HOME"] = str(home)
    for key in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE", "VMVAULT_LAB_PREFIX"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


@dataclass
class World:
    home: Path
    services: Services
    vm: str
    first: str  # point id: a.txt v1, gone.bin
    second: str  # point id: a.txt v2, gone.bin deleted
    md5: dict[str, str]

    def cli(self, *args: str) -> Result:
        return run_cli(self.home, *args)


@pytest.fixture(scope="module")
def world(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("files-home")
    services = bootstrap(lab_settings(home))
    vm = next(n for n, v in lab.items() if v.get("variant") == "standard")
    md5 = {}
    out = guest(
        vm,
        f"rm -rf {DIR} && mkdir -p {DIR}/sub && cd {DIR} && "
        "dd if=/dev/urandom of=a.txt bs=1k count=300 2>/dev/null && "
        "dd if=/dev/urandom of=gone.bin bs=1k count=70 2>/dev/null && "
        "echo deep > sub/deep.txt && ln -s a.txt link && mkfifo pipe && "
        "chmod 0640 a.txt && chown 1234:567 a.txt && touch -d '2020-01-02 03:04:05' gone.bin && "
        "sync && md5sum a.txt gone.bin",
    )
    for line in out.splitlines():
        digest, name = line.split()
        md5[f"v1/{name}"] = digest
    assert run_cli(home, "vault", "create", "main", "--location", "local").code == 0
    assert run_cli(home, "discover").code in (0, 3)
    assert run_cli(home, "register", vm).code in (0, 3)
    r = run_cli(home, "backup", vm, "--json")
    assert r.code in (0, 3), r.stdout + r.stderr
    first = r.json()[0]["point"]["id"]
    out = guest(
        vm,
        f"cd {DIR} && rm gone.bin && dd if=/dev/urandom of=a.txt bs=1k count=90 2>/dev/null"
        " && sync && md5sum a.txt",
    )
    md5["v2/a.txt"] = out.split()[0]
    r = run_cli(home, "backup", vm, "--json")
    assert r.code in (0, 3), r.stdout + r.stderr
    second = r.json()[0]["point"]["id"]
    yield World(home, services, vm, first, second, md5)
    guest(vm, f"rm -rf {DIR}")


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_ls_shows_the_guest_paths_with_owners_and_modes(world: World) -> None:
    r = world.cli("files", "ls", world.first, DIR, "--json")
    assert r.code == 0, r.stderr
    entries = {e["path"]: e for e in r.json()}
    assert set(entries) == {f"{DIR}/{n}" for n in ("a.txt", "gone.bin", "link", "pipe", "sub")}
    a = entries[f"{DIR}/a.txt"]
    assert (a["kind"], a["mode"], a["uid"], a["gid"], a["size"]) == (
        "file",
        "0640",
        1234,
        567,
        307200,
    )
    assert entries[f"{DIR}/link"]["kind"] == "symlink"
    assert entries[f"{DIR}/pipe"]["kind"] == "fifo"
    assert entries[f"{DIR}/sub"]["kind"] == "dir"
    # the second point: gone.bin deleted
    names = {e.path for e in world.services.files.ls(world.second, DIR)}
    assert f"{DIR}/gone.bin" not in names and f"{DIR}/a.txt" in names
    # the file systems and their mount points, as the guest recorded them
    r = world.cli("files", "ls", world.first, "--json")
    mounts = {v["volume"]: v["mounted_on"] for v in r.json()}
    # vda was written since it was mounted (ext4 then records it); vdb maybe not yet
    assert set(mounts) == {"vda", "vdb"} and mounts["vda"] == "/data", mounts
    assert mounts["vdb"] in (None, "/data2"), mounts


def test_get_extracts_byte_exact_from_two_points(world: World, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    r = world.cli("files", "get", world.first, f"{DIR}/a.txt", f"{DIR}/gone.bin", "--to", str(one))
    assert r.code == 0, r.stderr
    assert md5_of(one / "a.txt") == world.md5["v1/a.txt"]
    assert md5_of(one / "gone.bin") == world.md5["v1/gone.bin"]
    st = (one / "a.txt").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1234, 567)
    assert time.gmtime((one / "gone.bin").stat().st_mtime)[:6] == (2020, 1, 2, 3, 4, 5)
    world.services.files.get(world.second, [f"{DIR}/a.txt"], str(two))
    assert md5_of(two / "a.txt") == world.md5["v2/a.txt"]
    # deleted after the first point: a clear error, nothing written
    r = world.cli("files", "get", world.second, f"{DIR}/gone.bin", "--to", str(two))
    assert r.code == 2 and "error FILE_NOT_FOUND" in r.stderr, r.stderr
    assert not (two / "gone.bin").exists()
    # a whole tree, relative to the disk's root: symlink, fifo and subdirectory kept
    world.services.files.get(world.first, ["/fr-files"], str(two), disk="vda")
    tree = two / "fr-files"
    assert os.readlink(tree / "link") == "a.txt"
    assert stat.S_ISFIFO((tree / "pipe").lstat().st_mode)
    assert (tree / "sub" / "deep.txt").read_text() == "deep\n"
    assert md5_of(tree / "gone.bin") == world.md5["v1/gone.bin"]


def test_find_and_unknown_paths(world: World) -> None:
    r = world.cli("files", "find", world.first, "*.bin", "--json")
    assert r.code == 0, r.stderr
    assert f"{DIR}/gone.bin" in {e["path"] for e in r.json()}
    assert f"{DIR}/sub/deep.txt" in {
        e.path for e in world.services.files.find(world.first, "deep*")
    }
    r = world.cli("files", "ls", world.first, "/nowhere/x")
    assert r.code == 2 and "error FILESYSTEM_NOT_FOUND" in r.stderr, r.stderr
    r = world.cli("files", "ls", world.first, "/x", "--disk", "vdz")
    assert r.code == 2 and "error DISK_NOT_IN_POINT" in r.stderr, r.stderr


def test_export_reads_like_a_restore_and_cancel_stops_it(world: World, tmp_path: Path) -> None:
    r = world.cli("restore", world.vm, "--point", world.first, "--disks-only", "--dir",
                  str(tmp_path / "restored"), "--format", "raw")  # fmt: skip
    assert r.code == 0, r.stdout + r.stderr
    restored = next((tmp_path / "restored").glob("*-vdb.raw"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmvault", "export", world.first, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(world.home),
    )
    try:
        assert proc.stdout is not None
        doc = json.loads(proc.stdout.readline())
        uri = {d["target"]: d["uri"] for d in doc["disks"]}["vdb"]
        copy = tmp_path / "vdb.raw"
        subprocess.run(["nbdcopy", uri, str(copy)], check=True, timeout=120)
        cmp = subprocess.run(["cmp", str(copy), str(restored)], capture_output=True)
        assert cmp.returncode == 0, cmp.stdout
        same = subprocess.run(
            ["qemu-img", "compare", "-f", "raw", str(restored), uri], capture_output=True
        )
        assert same.returncode == 0, same.stdout
        job = doc["job"]
        assert world.cli("jobs", "cancel", str(job)).code == 0
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not Path(doc["socket"]).exists()
    done, _ = world.services.jobs.show(job)
    assert done.state is JobState.CANCELLED and done.type.value == "export"


def test_a_killed_export_is_recovered(world: World, tmp_path: Path) -> None:
    sock = tmp_path / "e.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmvault", "export", world.second, "--writable",
         "--socket", str(sock), "--json"],
        stdout=subprocess.PIPE, text=True, env=_env(world.home),
    )  # fmt: skip
    assert proc.stdout is not None
    doc = json.loads(proc.stdout.readline())
    uri = {d["target"]: d["uri"] for d in doc["disks"]}["vda"]
    w = subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 64k", uri],
                       capture_output=True, text=True)  # fmt: skip
    assert w.returncode == 0, w.stderr
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert sock.exists()
    recovered = {r.job.id: r for r in world.services.recovery.recover()}
    r = recovered[doc["job"]]
    assert r.job.state is JobState.FAILED and r.job.error_code == "JOB_INTERRUPTED"
    assert not sock.exists()
    assert not list((world.services.settings.work_dir / "exports").glob("*.overlay"))


def test_rest_lists_downloads_and_exports(world: World, tmp_path: Path) -> None:
    app = create_app(world.services, authenticate=authenticate)
    reader = TestClient(app, headers=bearer(Role.READER))
    op = TestClient(app, headers=bearer(Role.OPERATOR))
    base = f"/api/v1/points/{world.first}"
    r = reader.get(f"{base}/files", params={"path": DIR})
    assert r.status_code == 200 and f"{DIR}/gone.bin" in {e["path"] for e in r.json()}
    assert reader.get(f"{base}/files/content", params={"path": f"{DIR}/a.txt"}).status_code == 403
    r = op.get(f"{base}/files/content", params={"path": f"{DIR}/a.txt"})
    assert r.status_code == 200 and hashlib.md5(r.content).hexdigest() == world.md5["v1/a.txt"]
    r = op.get(f"/api/v1/points/{world.second}/files/content", params={"path": f"{DIR}/gone.bin"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "FILE_NOT_FOUND"
    r = op.post(f"{base}/export", json={"disk": "vdb"})
    assert r.status_code == 201, r.text
    doc = r.json()
    copy = tmp_path / "vdb.raw"
    subprocess.run(["nbdcopy", doc["disks"][0]["uri"], str(copy)], check=True, timeout=120)
    assert copy.stat().st_size == doc["disks"][0]["size"]
    r = op.post(f"/api/v1/exports/{doc['job']}/stop")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    assert not Path(doc["socket"]).exists()
