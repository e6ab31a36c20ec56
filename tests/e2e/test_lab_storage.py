"""``vmvault lab storage``: a real Ceph cluster with the RADOS Gateway, through the real CLI,
each test with a private VMVAULT_LAB_DIR; and the session fixture ``rgw`` (tests/s3lab.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from tests.conftest import CliRunner
from tests.s3lab import Rgw, ceph_parent, remove_ceph_parent
from vmvault.hypervisor.lab.ceph import CephCluster
from vmvault.hypervisor.lab.ceph_conf import MARKER


@pytest.fixture()
def lab_dir(tmp_path: Path) -> Iterator[Path]:
    """A private lab directory (short enough for the daemons' sockets: ceph_parent); whatever
    cluster a test leaves in it is removed afterwards."""
    d = ceph_parent(tmp_path / "lab", "test-lab-")
    yield d
    CephCluster(d / "ceph").down()
    remove_ceph_parent(d, "test-lab-")


def processes_of(conf: Path) -> list[int]:
    """Pids of every process started with ``conf`` on its command line (zombies excluded)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if os.fsencode(str(conf)) in argv and state != "Z":
            found.append(int(proc.name))
    return found


def s3(doc: dict[str, str]) -> object:
    return boto3.client(
        "s3", endpoint_url=doc["endpoint"], aws_access_key_id=doc["access_key"],
        aws_secret_access_key=doc["secret_key"], region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )  # fmt: skip


def test_up_gives_keys_that_work_status_and_idempotent_up_then_down_leaves_nothing(
    cli: CliRunner, lab_dir: Path, rgw: Rgw
) -> None:
    """Beside the session's cluster (``rgw``): two clusters coexist, and down stops only its own."""
    env = {"VMVAULT_LAB_DIR": str(lab_dir)}
    r = cli("lab", "storage", "up", "--json", env=env)
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["endpoint"] != rgw.endpoint
    assert doc["endpoint"].startswith("http://127.0.0.1:") and doc["dir"] == str(lab_dir / "ceph")
    client = s3(doc)
    client.create_bucket(Bucket="lab-storage-test")  # type: ignore[attr-defined]
    client.put_object(Bucket="lab-storage-test", Key="a/b", Body=b"payload")  # type: ignore[attr-defined]
    got = client.get_object(Bucket="lab-storage-test", Key="a/b")  # type: ignore[attr-defined]
    assert got["Body"].read() == b"payload"
    state = lab_dir / "ceph" / "state.json"
    assert state.stat().st_mode & 0o777 == 0o600

    st = cli("lab", "storage", "status", "--json", env=env).json()
    assert st["state"] == "up" and st["endpoint"] == doc["endpoint"]
    assert all(isinstance(pid, int) for pid in st["daemons"].values())
    human = cli("lab", "storage", "status", env=env)
    assert f"lab storage up at {doc['endpoint']}" in human.stdout

    again = cli("lab", "storage", "up", "--json", env=env)
    assert again.code == 0, again.stderr
    assert {k: again.json()[k] for k in ("endpoint", "access_key", "secret_key")} == {
        k: doc[k] for k in ("endpoint", "access_key", "secret_key")
    }
    assert cli("lab", "storage", "status", "--json", env=env).json()["daemons"] == st["daemons"]
    printed = cli("lab", "storage", "up", env=env).stdout
    assert doc["access_key"] in printed and doc["secret_key"] in printed

    conf = lab_dir / "ceph" / "ceph.conf"
    assert len(processes_of(conf)) == 3
    down = cli("lab", "storage", "down", env=env)
    assert down.code == 0, down.stderr
    assert processes_of(conf) == []
    assert not (lab_dir / "ceph").exists()
    after = cli("lab", "storage", "status", "--json", env=env).json()
    assert after["state"] == "down" and after["endpoint"] is None
    assert "no lab storage" in cli("lab", "storage", "down", env=env).stdout
    assert rgw.running() and len(processes_of(rgw.cluster.paths.conf)) == 3


def test_a_dead_osd_makes_the_cluster_partial_and_up_starts_it_again(
    cli: CliRunner, lab_dir: Path
) -> None:
    env = {"VMVAULT_LAB_DIR": str(lab_dir)}
    doc = cli("lab", "storage", "up", "--json", env=env).json()
    client = s3(doc)
    client.create_bucket(Bucket="kept")  # type: ignore[attr-defined]
    client.put_object(Bucket="kept", Key="k", Body=b"before")  # type: ignore[attr-defined]
    osd_pid = int((lab_dir / "ceph" / "run" / "osd.0.pid").read_text())
    os.kill(osd_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while osd_pid in processes_of(lab_dir / "ceph" / "ceph.conf"):
        assert time.monotonic() < deadline
        time.sleep(0.1)

    st = cli("lab", "storage", "status", "--json", env=env).json()
    assert st["state"] == "partial" and st["daemons"]["osd.0"] is None
    assert "osd.0          not running" in cli("lab", "storage", "status", env=env).stdout

    again = cli("lab", "storage", "up", "--json", env=env)
    assert again.code == 0, again.stderr
    assert again.json()["secret_key"] == doc["secret_key"]
    assert cli("lab", "storage", "status", "--json", env=env).json()["state"] == "up"
    got = client.get_object(Bucket="kept", Key="k")  # type: ignore[attr-defined]
    assert got["Body"].read() == b"before"


def test_a_monitor_that_cannot_start_is_named_with_its_log_and_no_traceback(
    cli: CliRunner, lab_dir: Path
) -> None:
    env = {"VMVAULT_LAB_DIR": str(lab_dir)}
    assert cli("lab", "storage", "up", "--json", env=env).code == 0
    root = lab_dir / "ceph"
    pids = processes_of(root / "ceph.conf")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    while processes_of(root / "ceph.conf"):
        time.sleep(0.1)
    for f in (root / "mon" / "a" / "store.db").iterdir():
        f.unlink()  # the monitor's store is gone: ceph-mon refuses to start

    r = cli("lab", "storage", "up", env=env)
    assert r.code == 1
    assert "Traceback" not in r.stderr
    assert "error LAB_STORAGE_FAILED: the lab's Ceph cluster failed: ceph-mon (mon.a)" in r.stderr
    assert f"{root}/log/mon.a.log" in r.stderr  # the tail of its log is quoted
    assert "remedy:" in r.stderr and "vmvault lab storage down" in r.stderr
    assert processes_of(root / "ceph.conf") == []
    assert cli("lab", "storage", "status", "--json", env=env).json()["state"] == "down"


@pytest.mark.parametrize("problem", ["a file", "too long"])
def test_an_unusable_lab_dir_is_refused_without_traceback_and_nothing_made(
    cli: CliRunner, tmp_path: Path, problem: str
) -> None:
    if problem == "a file":
        lab = tmp_path / "plain-file"
        lab.write_text("not a directory")
    else:
        lab = tmp_path / ("x" * (100 - len(str(tmp_path))))
    before = sorted(p.name for p in tmp_path.iterdir())
    r = cli("lab", "storage", "up", env={"VMVAULT_LAB_DIR": str(lab)})
    assert r.code == 1
    assert "Traceback" not in r.stderr
    assert f"error LAB_STORAGE_FAILED: the lab's Ceph cluster failed: the directory {lab}/ceph" in (
        r.stderr
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("verb", ["up", "down"])
def test_a_ceph_directory_the_lab_did_not_make_is_never_deleted(
    cli: CliRunner, tmp_path: Path, verb: str
) -> None:
    """VMVAULT_LAB_DIR=/var/lib would name Debian's /var/lib/ceph: no marker, no deletion."""
    foreign = tmp_path / "ceph"
    (foreign / "osd").mkdir(parents=True)
    (foreign / "osd" / "keep-me").write_text("someone else's data")
    r = cli("lab", "storage", verb, env={"VMVAULT_LAB_DIR": str(tmp_path)})
    assert r.code == 1 and "Traceback" not in r.stderr
    assert f"error LAB_STORAGE_DIR_FOREIGN: {foreign} is not a lab Ceph directory" in r.stderr
    assert "VMVAULT_LAB_DIR" in r.stderr  # the remedy
    assert (foreign / "osd" / "keep-me").read_text() == "someone else's data"
    assert sorted(p.name for p in foreign.iterdir()) == ["osd"]


def test_the_session_rgw_survives_a_kill_and_restart(rgw: Rgw) -> None:
    bucket = rgw.bucket("fixture")
    client = rgw.client()
    client.put_object(Bucket=bucket, Key="k", Body=b"v1")
    assert rgw.bucket("fixture") != bucket
    assert set(rgw.env()) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
    locked = rgw.bucket("locked", object_lock=True)
    lock = client.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"

    rgw.kill_rgw()
    with pytest.raises(EndpointConnectionError):
        client.get_object(Bucket=bucket, Key="k")
    rgw.restart_rgw()
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v1"


def test_down_never_signals_a_stranger_named_by_a_stale_pid_file(
    cli: CliRunner, lab_dir: Path
) -> None:
    root = lab_dir / "ceph"
    (root / "run").mkdir(parents=True)
    (root / MARKER).write_text("")  # a set-up of ours that got as far as its pid files
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        for daemon in ("mon.a", "osd.0", "client.rgw.gw"):
            (root / "run" / f"{daemon}.pid").write_text(f"{stranger.pid}\n")
        st = cli("lab", "storage", "status", "--json", env={"VMVAULT_LAB_DIR": str(lab_dir)})
        assert st.json()["state"] == "down" and st.json()["exists"] is True
        r = cli("lab", "storage", "down", env={"VMVAULT_LAB_DIR": str(lab_dir)})
        assert r.code == 0, r.stderr
        assert not root.exists()
        assert stranger.poll() is None  # still running: it was not started with our ceph.conf
    finally:
        stranger.kill()
        stranger.wait()


INNER_TESTS = """
import os
from pathlib import Path

def test_kills_the_gateway_and_leaves_it_dead(rgw):
    Path(os.environ["ROOT_FILE"]).write_text(str(rgw.cluster.root))
    rgw.kill_rgw()
    assert not rgw.running()

def test_the_next_test_finds_it_running(rgw):
    assert rgw.running()
    assert rgw.client().list_buckets()["Buckets"] == []
"""


def test_the_plugin_restarts_a_gateway_a_test_left_dead_and_removes_its_cluster(
    tmp_path: Path,
) -> None:
    """A pytest session of its own with the plugin: after a test that killed RGW without
    restarting it, the next test finds it answering; the session's end removes the cluster."""
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    root_file = tmp_path / "root"
    repo = Path(__file__).resolve().parents[2]
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.s3lab", "-q", "-p", "no:cacheprovider",
         "--basetemp", str(tmp_path / "b"), str(tmp_path / "test_inner.py")],
        cwd=repo, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, ROOT_FILE=str(root_file), PYTHONPATH=str(repo)),
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    assert "2 passed" in p.stdout
    root = Path(root_file.read_text())
    assert not root.exists()
    assert processes_of(root / "ceph.conf") == []


def test_an_up_killed_half_way_is_started_afresh_by_the_next_up(
    cli: CliRunner, lab_dir: Path
) -> None:
    root = lab_dir / "ceph"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    first = subprocess.Popen(
        [sys.executable, "-m", "vmvault", "lab", "storage", "up"],
        env=env | {"VMVAULT_LAB_DIR": str(lab_dir)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (root / "run" / "mon.a.pid").exists():  # the monitor runs: kill the up
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        first.kill()
        first.wait()
    assert not (root / "state.json").exists() and (root / MARKER).is_file()
    old_mon = int((root / "run" / "mon.a.pid").read_text())
    assert old_mon in processes_of(root / "ceph.conf")

    r = cli("lab", "storage", "up", "--json", env={"VMVAULT_LAB_DIR": str(lab_dir)})
    assert r.code == 0, r.stderr
    running = processes_of(root / "ceph.conf")
    assert old_mon not in running and len(running) == 3
    client = s3(r.json())
    client.create_bucket(Bucket="fresh")  # type: ignore[attr-defined]
    assert client.list_buckets()["Buckets"][0]["Name"] == "fresh"  # type: ignore[attr-defined]
