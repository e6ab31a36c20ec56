"""A second, independent libvirt host (``vmvault lab host``), driven through the real
``vmvault`` command, every test on the real PostgreSQL catalog (``tests/pglab.py``: two nodes
share one catalog): discovery across both hosts, the up-front refusal of a backup where no
node serves the VM's host, and a vmvault process acting as the node of the second host
(``VMVAULT_NODE_HOST``) that backs up and restores (as new) a guest of that host on the shared
catalog and vault; then a ``vmvault serve`` as that host's node (``node_world``) running what
the main host's CLI queues — backups, a set, a restore test, a replace — with a disks-only
restore and file recovery of its points from the main host's node; and, the host marked as
one no node runs on (``host add --pull-tls``), the main host's node pulling its second guest
over libvirt's NBD export with TLS (full, incremental, a crash, a refused certificate). Two
small guests; the
host is started once for the module and removed by the last test, which checks that nothing
is left."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.conftest import CliRunner, Result, make_cli
from tests.integration.conftest import lab_settings
from tests.integration.guests import fsck_clean, image_file, md5_in_image, raw_copy, write_file
from tests.integration.test_inventory import Defined, defined  # noqa: F401
from tests.integration.test_server import ServerProcess
from tests.pglab import Postgres, database
from vmvault.bootstrap import bootstrap
from vmvault.hypervisor.lab.disks import build_templates
from vmvault.hypervisor.lab.host_pki import write_pki
from vmvault.hypervisor.lab.vms import lab_prefix

pytestmark = pytest.mark.lab
#: two nodes share one catalog: every test of this module runs on PostgreSQL (``cli`` too)
ON_POSTGRESQL = pytest.mark.parametrize("cli", ["postgresql"], indirect=True)

MAIN = "qemu:///system"
GUEST = f"{lab_prefix()}h-standard-1"
GUEST2 = f"{lab_prefix()}h-standard-2"
PW = "hx-Secret-pw"  # in the second node's catalog URL


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The second host, up, with one standard guest; its document plus ``up_s``."""
    services = bootstrap(lab_settings(tmp_path_factory.mktemp("host-home")))
    services.lab.ensure_daemons()  # the main host too: discovery covers both
    services.lab.host_down()  # a clean slate: leftovers of an interrupted run
    t0 = time.monotonic()
    doc = services.lab.host_up()
    doc["up_s"] = time.monotonic() - t0
    vms = services.lab.up(2, ["standard"], doc["uri"])
    doc["guest"] = next(vm for vm in vms if vm["name"] == GUEST)
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


@ON_POSTGRESQL
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
        assert sorted(d.name() for d in conn.listAllDomains(0)) == [GUEST, GUEST2]
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
    assert sorted(vm["name"] for vm in listed) == [GUEST, GUEST2]
    refused = cli("lab", "status", "--host", "qemu+tcp://127.0.0.1:9/system")
    assert refused.code == 2 and "INVALID_INPUT" in refused.stderr


def _added_and_discovered(cli: CliRunner, second: dict[str, Any], uri: str) -> dict[str, Any]:
    """``host add URI`` and a discovery: the VMs by name, the second host's guest at ``uri``."""
    added = cli("host", "add", uri, "--location", "dc1")
    assert added.code == 0, added
    found = cli("discover", "--json")
    assert found.code == 0, found
    vms = {vm["name"]: vm for vm in cli("vm", "list", "--json").json()}
    assert vms[GUEST]["host_uri"] == uri and vms[GUEST]["uuid"] == second["guest"]["uuid"]
    return vms


@ON_POSTGRESQL
def test_discovery_across_both_hosts(
    second: dict[str, Any],
    defined: Defined,  # noqa: F811  (the fixture)
    cli: CliRunner,
) -> None:
    uri = second["uri"]
    local = defined.define("it-remote-local")  # on the main host, never started
    assert cli("vault", "create", "main", "--location", "dc1").code == 0
    assert cli("host", "add", MAIN, "--location", "dc1").code == 0
    vms = _added_and_discovered(cli, second, uri)
    assert vms["it-remote-local"]["host_uri"] == MAIN and vms["it-remote-local"]["uuid"] == local
    hosts = {h["uri"]: h for h in cli("host", "list", "--json").json()}
    assert set(hosts) == {MAIN, uri}
    # a set across the two hosts: refused up front on every path, nothing queued
    assert cli("register", GUEST, "it-remote-local").code in (0, 3)  # 3: shut off, warned
    for extra in ((), ("--no-wait",)):
        spans = cli("backup", GUEST, "it-remote-local", "--set", *extra)
        assert spans.code == 2, spans
        assert spans.stderr.startswith("error BACKUP_SET_SPANS_HOSTS: "), spans
        assert f"on {uri}, {MAIN}" in spans.stderr and "Traceback" not in spans.stderr
    jobs = cli("jobs", "list", "--json").json()
    assert [j for j in jobs if j["type"] in ("backup", "backup-set")] == [], jobs


@ON_POSTGRESQL
def test_a_tls_host_is_reached_with_its_ca_and_refused_when_its_certificate_does_not_verify(
    second: dict[str, Any], cli: CliRunner, tmp_path: Path
) -> None:
    """The lab host's TLS listener (hypervisor/lab/host_pki.py: a CA of its own, client
    certificates required): reached as a production host is, ``qemu+tls`` with the client's
    ``pkipath``; a client that trusts another CA is refused by libvirt's check of the server's
    certificate, up front and clearly, and no key is ever printed."""
    tls = second["tls_uri"]
    assert tls.startswith("qemu+tls://127.0.0.1:") and "?pkipath=" in tls, second
    pkipath = Path(tls.split("?pkipath=", 1)[1])
    secrets = [(pkipath / "clientkey.pem").read_text().splitlines()[1]]
    assert cli("vault", "create", "main", "--location", "dc1").code == 0
    _added_and_discovered(cli, second, tls)
    # another CA's complete client set-up: the lab host's certificate does not verify with it
    other = write_pki(tmp_path / "other", org="another CA").client
    secrets.append((other / "clientkey.pem").read_text().splitlines()[1])
    untrusted = tls.split("?pkipath=", 1)[0] + f"?pkipath={other}"
    refused = cli("host", "add", untrusted, "--location", "dc1")
    # (libvirt's own warning, saying which check failed, comes first on stderr)
    assert refused.code != 0 and "\nerror HOST_AUTH_FAILED: " in refused.stderr, refused
    assert "Failed to verify peer's certificate" in refused.stderr, refused
    assert "pkipath" in refused.stderr and "Traceback" not in refused.stderr, refused
    # trusting the host, but with a client certificate the host's CA never signed: refused
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    trusted = (pkipath / "cacert.pem").read_text() + (other / "cacert.pem").read_text()
    (mixed / "cacert.pem").write_text(trusted)
    for name in ("clientcert.pem", "clientkey.pem"):
        (mixed / name).write_bytes((other / name).read_bytes())
    unknown = cli(
        "host", "add", tls.split("?pkipath=", 1)[0] + f"?pkipath={mixed}", "--location", "dc1"
    )
    assert unknown.code != 0 and "error HOST_AUTH_FAILED: " in unknown.stderr, unknown
    assert "TLS confirmation" in unknown.stderr and "Traceback" not in unknown.stderr, unknown
    # libvirt's no_verify is refused before any connection
    no_check = cli("host", "add", untrusted + "&no_verify=1", "--location", "dc1")
    assert no_check.code == 2 and "INVALID_INPUT" in no_check.stderr, no_check
    assert [h["uri"] for h in cli("host", "list", "--json").json()] == [tls]
    logs = [cli("jobs", "show", str(j["id"])).stdout for j in cli("jobs", "list", "--json").json()]
    for text in [refused.stdout, refused.stderr, unknown.stdout, unknown.stderr, *logs]:
        assert not any(secret in text for secret in secrets)


def _seed(image: Path, raw: Path) -> bytes:
    """``/seed/random.bin`` of the ext4 file system in qcow2 ``image`` (via debugfs)."""
    seed = image_file(raw_copy(image, raw), "/seed/random.bin")
    raw.unlink()
    return seed


@ON_POSTGRESQL
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


# --- a `vmvault serve` as the node of the second host --------------------------------------------


class NodeProcess(ServerProcess):
    """``vmvault serve`` with settings of its own (its catalog, its ``VMVAULT_NODE_HOST``)."""

    def __init__(self, home: Path, settings: dict[str, str]) -> None:
        super().__init__(home)
        self.settings = settings

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.settings}


def _one(result: Result) -> dict[str, Any]:
    assert result.code == 0, result
    doc = result.json()
    [job] = doc if isinstance(doc, list) else [doc]
    return dict(job)


def _waited(run: CliRunner, job: dict[str, Any]) -> dict[str, Any]:
    """The job once it ended (``vmvault jobs wait``, as a script would)."""
    return _one(run("jobs", "wait", str(job["id"]), "--json", timeout=900))


@pytest.fixture(scope="module")
def node_world(
    second: dict[str, Any], postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One PostgreSQL catalog and vault shared by the main host's CLI (``run``: a node of
    qemu:///system) and ``node``, a ``vmvault serve`` with VMVAULT_NODE_HOST the second host;
    both guests registered, and ``backup``: a backup of GUEST the CLI queued and ``node`` ran."""
    uri = second["uri"]
    home = tmp_path_factory.mktemp("node-world")
    with database(postgres) as url:
        run = make_cli(home, {"VMVAULT_CATALOG_URL": url})
        # the node's URL carries a password (the lab's trust auth ignores it): never logged
        secret = url.replace("postgresql+psycopg://vmvault@", f"postgresql+psycopg://vmvault:{PW}@")
        assert PW in secret
        node = NodeProcess(home, {"VMVAULT_CATALOG_URL": secret, "VMVAULT_NODE_HOST": uri})
        try:
            assert run("vault", "create", "main", "--location", "dc1").code == 0
            assert run("host", "add", uri, "--location", "dc1").code == 0
            assert run("discover").code == 0
            assert run("register", GUEST, GUEST2).code == 0
            node.start()
            queued = _one(run("backup", GUEST, "--no-wait", "--json"))
            assert queued["state"] == "queued", queued
            done = _waited(run, queued)
            [point] = run("points", "list", "--json").json()
            yield {"run": run, "node": node, "uri": uri, "backup": done, "point": point}
        finally:
            if node.proc is not None:
                node.stop()


def _ran_on(job: dict[str, Any], node: NodeProcess) -> bool:
    """Whether ``node``'s process ran ``job`` (a node id is MACHINE-PID-RANDOM)."""
    assert node.proc is not None
    return f"-{node.proc.pid}-" in str(job.get("node"))


def test_a_queued_backup_runs_on_the_node_of_its_host(node_world: dict[str, Any]) -> None:
    run, node, job = node_world["run"], node_world["node"], node_world["backup"]
    assert job["state"] == "completed" and _ran_on(job, node), job
    point = node_world["point"]
    assert point["consistency"] == "file-system-consistent", point
    assert point["job_id"] == job["id"], point
    here = run("backup", GUEST)  # in the foreground here: not this node's host
    assert here.code == 2 and here.stderr.startswith("error HOST_SERVED_ELSEWHERE: "), here


def test_a_set_of_the_second_host_runs_on_its_node(node_world: dict[str, Any]) -> None:
    run, node = node_world["run"], node_world["node"]
    here = run("backup", GUEST, GUEST2, "--set")
    assert here.code == 2 and here.stderr.startswith("error HOST_SERVED_ELSEWHERE: "), here
    t0 = time.monotonic()
    job = _waited(run, _one(run("backup", GUEST, GUEST2, "--set", "--no-wait", "--json")))
    set_s = time.monotonic() - t0
    assert job["type"] == "backup-set" and job["state"] == "completed", job
    assert _ran_on(job, node), job
    points = [p for p in run("points", "list", "--json").json() if p.get("set_id")]
    assert sorted(p["vm_name"] for p in points) == [GUEST, GUEST2], points
    [set_id] = {p["set_id"] for p in points}
    listed = run("points", "list", "--set", set_id, "--json")
    assert listed.code == 0 and len(listed.json()) == 2, listed
    assert len({p["created_at"] for p in points}) == 1  # one instant
    print(f"\nset of 2 on the second host's node: {set_s:.1f}s")


def test_files_and_disks_only_of_a_remote_vm_from_the_main_hosts_node(
    node_world: dict[str, Any], second: dict[str, Any], tmp_path: Path
) -> None:
    """File recovery and a disks-only restore read the vault and write here: any node."""
    run = node_world["run"]
    point = node_world["point"]["id"]
    seed = _seed(build_templates(second["cache"]).data2_qcow2, tmp_path / "t.raw")
    # by disk: the template's ext4 records no "Last mounted on" for /data2 to map a guest path
    listed = run("files", "ls", point, "/seed", "--disk", "vdb", "--json")
    assert listed.code == 0, listed
    assert "/seed/random.bin" in {e["path"] for e in listed.json()}, listed.json()
    out = tmp_path / "got"
    out.mkdir()
    got = run("files", "get", point, "/seed/random.bin", "--disk", "vdb", "--to", str(out))
    assert got.code == 0, got
    assert (out / "random.bin").read_bytes() == seed
    images = tmp_path / "disks"
    images.mkdir()
    done = run("restore", GUEST, "--point", point, "--disks-only", "--dir", str(images))
    assert done.code == 0, done
    assert _seed(images / f"{GUEST}-vdb.qcow2", tmp_path / "r.raw") == seed
    assert (images / f"{GUEST}.xml").is_file()


def test_restore_test_and_replace_of_a_remote_vm_through_its_node(
    node_world: dict[str, Any], second: dict[str, Any], tmp_path: Path
) -> None:
    run, node, uri = node_world["run"], node_world["node"], node_world["uri"]
    point = node_world["point"]["id"]
    t0 = time.monotonic()
    tested = _waited(run, _one(run("restore-test", GUEST, "--point", point, "--no-wait", "--json")))
    test_s = time.monotonic() - t0
    assert tested["state"] == "completed" and _ran_on(tested, node), tested  # it passed
    conn = libvirt.open(uri)
    try:
        before = conn.lookupByName(GUEST)
        uuid, xml = before.UUIDString(), before.XMLDesc(0)
        assert not [d for d in conn.listAllDomains(0) if "-rtest-" in d.name()]  # removed
    finally:
        conn.close()
    # replace, asked through the node's REST API: the VM keeps its name, uuid and disk paths
    t0 = time.monotonic()
    body = {"vm": GUEST, "point": point, "mode": "replace", "shutdown_timeout": 20}
    asked = node.post("/restores", body)
    replaced = node.wait(asked["id"], timeout=900)
    replace_s = time.monotonic() - t0
    assert replaced["state"] == "completed" and _ran_on(replaced, node), replaced
    conn = libvirt.open(uri)
    try:
        after = conn.lookupByName(GUEST)
        assert after.UUIDString() == uuid
        new_xml = after.XMLDesc(0)
    finally:
        conn.close()
    assert _disks(new_xml) == _disks(xml), new_xml  # the same images, by target
    vdb = Path(_disks(new_xml)["vdb"])
    assert not list(vdb.parent.glob(f"{GUEST}*.pre-restore-*"))  # none kept (no --keep-previous)
    seed = _seed(build_templates(second["cache"]).data2_qcow2, tmp_path / "t.raw")
    assert _seed(vdb, tmp_path / "r.raw") == seed
    print(f"\nrestore test {test_s:.1f}s, replace {replace_s:.1f}s (through the node)")
    assert PW not in node.log.read_text()  # the node's whole log so far
    for job in (tested, replaced, node_world["backup"]):
        shown = run("jobs", "show", str(job["id"]), "--json")
        assert shown.code == 0 and PW not in shown.stdout, shown


def _disks(xml: str) -> dict[str, str]:
    """Target → image file of a domain's file disks."""
    disks = ET.fromstring(xml).findall("./devices/disk")
    found = {d.find("target"): d.find("source") for d in disks}
    return {
        t.get("dev", ""): s.get("file", "")
        for t, s in found.items()
        if t is not None and s is not None and s.get("file")
    }


# --- a host no node runs on: pulled over NBD with TLS by this node ------------------------------

#: The guest pulled from (the other tests leave GUEST shut off, after its replace).
PULLED = GUEST2
#: A real backup in its own process that sleeps on entering ``committing`` (its indexes
#: written, no manifest, the pull job still running on the remote host), to be killed there.
HOLD_AT_COMMIT = """
import sys, time
from vmvault.bootstrap import bootstrap
services = bootstrap()
def hold(job, name):
    if name == "committing":
        print("holding", job.id, flush=True)
        time.sleep(600)
services.runner.phase_observers.append(hold)
services.backups.backup(None, [sys.argv[1]])
"""


def _job_text(svc: Any, job_id: int) -> str:
    """A job's message, remedy and log, as ``jobs show`` prints them."""
    job, log = svc.jobs.show(job_id)
    return "\n".join([job.message or "", job.remedy or "", *log])


def test_a_host_no_node_runs_on_is_pulled_over_nbd_with_tls(
    second: dict[str, Any], cli: CliRunner, home: Path, tmp_path: Path
) -> None:
    """``host add URI --pull-tls DIR``: this node (of qemu:///system) backs up the second
    host's guest — full, then incremental — reading libvirt's NBD export over TCP with TLS
    (qemu.conf's backup_tls_x509_cert_dir on that host, DIR's client certificates here).  An
    incremental killed mid-way leaves its pull job running on the remote host: the next backup
    ends it from the journal (job aborted, checkpoint and half point removed) and then reads
    incrementally; a disks-only restore of its point holds the guest's files byte for byte and
    clean file systems.  A client certificate the host's CA never signed is refused (PULL_TLS_FAILED,
    no point, nothing left on the host); no key is ever shown."""
    uri = second["uri"]
    pki = tmp_path / "pull-pki"  # this node's copy of the lab's client certificates
    shutil.copytree(second["pull_tls"], pki)
    secret = (pki / "client-key.pem").read_text().splitlines()[1]
    assert cli("vault", "create", "main", "--location", "dc1").code == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    for bad_uri, where, words in (
        (uri, empty, "lacks ca-cert.pem, client-cert.pem, client-key.pem"),
        ("qemu:///system", pki, "with a host name"),
    ):
        bad = cli("host", "add", bad_uri, "--location", "dc1", "--pull-tls", str(where))
        assert bad.code == 2 and "error INVALID_INPUT: " in bad.stderr and words in bad.stderr, bad
    added = cli("host", "add", uri, "--location", "dc1", "--pull-tls", str(pki), "--json")
    assert added.code == 0 and added.json()["pull_tls"] == str(pki), added
    assert cli("discover").code == 0
    assert cli("register", PULLED).code == 0
    sums = {"/data/pull-a.bin": write_file(PULLED, "/data/pull-a.bin", 8, uri=uri)}
    t0 = time.monotonic()
    full = cli("backup", PULLED, "--json")  # this process serves qemu:///system only
    full_s = time.monotonic() - t0
    assert full.code == 0, full
    first = full.json()[0]["point"]
    sums["/data/pull-b.bin"] = write_file(PULLED, "/data/pull-b.bin", 2, uri=uri)

    # an incremental killed while committing: its pull job runs on, on the remote host
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env["VMVAULT_HOME"] = str(home)
    env |= {k: os.environ[k] for k in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE",
                                       "VMVAULT_LAB_PREFIX") if k in os.environ}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_AT_COMMIT, PULLED], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("holding")
    finally:
        proc.kill()
        proc.wait()
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName(PULLED)
        assert dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE  # left running by the dead
        stray = {c.getName() for c in dom.listAllCheckpoints()} - {first["checkpoint"]}
    finally:
        conn.close()
    assert len(stray) == 1, stray
    # the next backup ends it from the journal, then reads incrementally from the full
    incr = cli("backup", PULLED, "--json")
    assert incr.code == 0, incr
    newest = incr.json()[0]["point"]
    svc = bootstrap(lab_settings(home))  # job logs read in-process: a CLI call each is slow
    logs = [_job_text(svc, j.json()[0]["id"]) for j in (full, incr)]
    for log in logs:
        assert "disks pulled over NBD with TLS from 127.0.0.1:" in log, log
    assert "disk vda: full" in logs[0] and "disk vda: incremental" in logs[1], logs
    for words in ("aborted the stale backup job of", "with TLS", f"deleted checkpoint {stray.pop()}",
                  "removed the half-written point"):  # fmt: skip
        assert words in logs[1], (words, logs[1])
    assert newest["bytes_read"] < first["bytes_read"], (newest, first)

    # restored where this node runs: the files written before each backup, clean ext4
    images = tmp_path / "restored"
    images.mkdir()
    done = cli("restore", PULLED, "--point", newest["id"], "--disks-only", "--dir", str(images))
    assert done.code == 0, done  # every chunk verified as it is written
    vda = raw_copy(images / f"{PULLED}-vda.qcow2", tmp_path / "vda.raw")
    for path, md5 in sums.items():  # vda is the file system the guest mounts on /data
        assert md5_in_image(vda, path.removeprefix("/data")) == md5, path
    vdb = raw_copy(images / f"{PULLED}-vdb.qcow2", tmp_path / "vdb.raw")
    template = raw_copy(build_templates(second["cache"]).data2_qcow2, tmp_path / "t.raw")
    assert md5_in_image(vdb, "/seed/random.bin") == md5_in_image(template, "/seed/random.bin")
    for raw in (vda, vdb):
        fsck_clean(raw)

    # a client certificate that another CA signed: refused by the host's QEMU
    other = write_pki(tmp_path / "other", org="another CA").nbd_client
    assert other is not None
    for name in ("client-cert.pem", "client-key.pem"):
        shutil.copy(other / name, pki / name)
    secret2 = (pki / "client-key.pem").read_text().splitlines()[1]
    before = len(svc.point_listing.list_points(None, PULLED))
    refused = cli("backup", PULLED)
    assert refused.code == 1 and "error PULL_TLS_FAILED: " in refused.stderr, refused
    assert str(pki) in refused.stderr and "Traceback" not in refused.stderr, refused
    assert len(svc.point_listing.list_points(None, PULLED)) == before
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName(PULLED)
        assert dom.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE
        checkpoints = {c.getName() for c in dom.listAllCheckpoints()}
    finally:
        conn.close()
    assert checkpoints == {newest["checkpoint"]}  # the last good one
    shown = [_job_text(svc, j.id) for j in svc.jobs.list_jobs()]
    for text in [added.stdout, refused.stdout, refused.stderr, *shown]:
        assert secret not in text and secret2 not in text
    print(f"\npull backup (full) {full_s:.1f}s")


@ON_POSTGRESQL
def test_lab_host_down_leaves_nothing(second: dict[str, Any], cli: CliRunner) -> None:
    hdir = Path(second["dir"])
    port = int(second["uri"].split(":")[2].split("/")[0])
    assert _processes_of(hdir), "the host runs before down"
    t0 = time.monotonic()
    down = cli("lab", "host", "down", "--json")
    down_s = time.monotonic() - t0
    assert down.code == 0, down
    assert set(down.json()["domains"]) == {GUEST, GUEST2, f"{GUEST}-r"}
    assert not hdir.exists()
    assert _processes_of(hdir) == []
    assert not any(str(hdir) in line for line in Path("/proc/mounts").read_text().splitlines())
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nobody listens any more
    assert cli("lab", "host", "status", "--json").json()["state"] == "down"
    assert cli("lab", "host", "down", "--json").json() == {"removed": False, "domains": []}
    assert os.path.exists("/run/libvirt/libvirt-sock")  # the main libvirtd is untouched
    print(f"\nlab host down {down_s:.1f}s")
