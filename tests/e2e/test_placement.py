"""The placement rule (domain/placement.py) at the edges: a backup, restore or restore test of
a VM on a host this node does not serve is refused up front — CLI exit 2, API 409
``HOST_NOT_SERVED`` — with nothing queued; one queued by a node of the VM's host and claimed by
another node is refused when it runs. Two "nodes" share one catalog and vault here: the
in-memory hypervisor's VMs are on ``qemu:///system``; the other node serves another URI."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import CliRunner
from tests.e2e.api_world import World, make_world
from tests.e2e.test_api_routes import refused
from vmvault.bootstrap import utcnow
from vmvault.config import Settings
from vmvault.domain.job import JobState

WEB = "00000000-0000-0000-0000-0000000000aa"
#: The node host of the other node: not web's host (nothing needs to listen there).
OTHER = "qemu+tcp://127.0.0.1:9/system"


@pytest.fixture()
def world(home: Path) -> World:
    """Vault ``main``; VM ``web`` on qemu:///system, registered, with one point."""
    w = make_world(home)
    w.services.vaults.create("main", "local", None)
    w.add_vm("web", WEB)
    c = w.client()
    assert c.post("/api/v1/vms/discover", json={}).status_code == 200
    [reg] = c.post("/api/v1/vms/register", json={"vms": ["web"]}).json()
    assert reg["state"] == "completed", reg
    assert c.post("/api/v1/backups", json={"vms": ["web"]}).status_code == 202
    [backup] = w.run_queued()
    assert backup.state is JobState.COMPLETED, backup.message
    return w


def stop_nodes(world: World) -> None:
    """As if every node had been silent for more than a day: none is live (the rows of nodes
    that ran the fixture's jobs are gone), so no node serves web's host."""
    with world.services.node.uow() as uow:
        uow.nodes.forget(utcnow() + timedelta(days=2))
        uow.commit()


def other_node(world: World) -> World:
    """A node of host OTHER on the same catalog and vault (what the next process would be)."""
    return make_world(world.settings.home, {"VMVAULT_NODE_HOST": OTHER})


def point_of(world: World) -> str:
    [p] = world.client().get("/api/v1/points?vm=web").json()
    return str(p["id"])


def test_the_api_refuses_up_front_with_409_and_queues_nothing(world: World) -> None:
    pid = point_of(world)
    stop_nodes(world)
    other = other_node(world)
    api = other.client()
    before = len(world.services.jobs.list_jobs())
    asks = [
        ("/api/v1/backups", {"vms": ["web"]}, "backup"),
        (
            "/api/v1/restores",
            {"vm": "web", "point": pid, "mode": "as-new", "name": "w2"},
            "restore",
        ),
        ("/api/v1/restores", {"vm": "web", "point": pid, "mode": "test"}, "restore test"),
        ("/api/v1/restore-tests", {"vm": "web", "point": pid}, "restore test"),
    ]
    for path, body, operation in asks:
        r = api.post(path, json=body)
        message = refused(r, 409, "HOST_NOT_SERVED")
        assert "no vmvault node serves host qemu:///system, where VM " in message, message
        assert f"a {operation} reads and writes" in message, message
        assert f"(this node serves {OTHER})" in message, message
        remedy = r.json()["error"]["remedy"]
        assert "VMVAULT_NODE_HOST=qemu:///system" in remedy and "--pull-tls DIR" in remedy
    assert len(world.services.jobs.list_jobs()) == before  # nothing queued, nothing run
    # the node of web's host takes the same backup
    assert world.client().post("/api/v1/backups", json={"vms": ["web"]}).status_code == 202


def test_a_job_claimed_by_a_node_of_another_host_fails_when_it_runs(world: World) -> None:
    [queued] = world.client().post("/api/v1/backups", json={"vms": ["web"]}).json()
    stop_nodes(world)  # web's node went away after queueing it: another node claims it
    other = other_node(world)
    [ran] = other.run_queued()
    assert ran.id == queued["id"]
    assert ran.state is JobState.FAILED and ran.error_code == "HOST_NOT_SERVED", ran.message
    assert len(world.client().get("/api/v1/points?vm=web").json()) == 1  # no new point


def test_the_cli_refuses_up_front_with_exit_2(world: World, cli: CliRunner) -> None:
    pid = point_of(world)
    stop_nodes(world)
    env = {"VMVAULT_NODE_HOST": OTHER}
    before = len(world.services.jobs.list_jobs())
    for args in (
        ("backup", "web"),
        ("backup", "web", "--no-wait"),
        ("restore", "web", "--point", pid, "--as-new", "w2"),
        ("restore-test", "web", "--point", pid),
        ("restore-test", "web", "--point", pid, "--no-wait"),
    ):
        r = cli(*args, env=env)
        assert r.code == 2, (args, r)
        assert r.stderr.startswith("error HOST_NOT_SERVED: no vmvault node serves host "), r
        assert "remedy: Run the " in r.stderr and "VMVAULT_NODE_HOST=qemu:///system" in r.stderr
        assert "Traceback" not in r.stderr
    assert len(world.services.jobs.list_jobs()) == before
    bad = cli("backup", "web", env={"VMVAULT_NODE_HOST": "http://x"})
    assert bad.code == 2 and "INVALID_SETTING" in bad.stderr and "VMVAULT_NODE_HOST" in bad.stderr


def test_with_a_live_node_of_the_host_a_job_is_queued_for_it(world: World, cli: CliRunner) -> None:
    """While web's node beats, another node queues web's jobs for it (API 202, CLI
    --no-wait) and refuses to run one itself (HOST_SERVED_ELSEWHERE, exit 2); web's node
    claims and runs what was queued."""
    pid = point_of(world)
    world.services.node.beat()  # web's node is live
    other = other_node(world)
    r = other.client().post("/api/v1/backups", json={"vms": ["web"]})
    assert r.status_code == 202, r.text
    assert other.run_queued() == []  # not its host's job: left for web's node
    [ran] = world.run_queued()
    assert (ran.type.value, ran.state) == ("backup", JobState.COMPLETED), ran.message
    env = {"VMVAULT_NODE_HOST": OTHER}
    for args in (("backup", "web"), ("restore-test", "web", "--point", pid)):
        here = cli(*args, env=env)  # run here, in the foreground: not this node's host
        assert here.code == 2 and here.stderr.startswith("error HOST_SERVED_ELSEWHERE: "), here
        assert "add --no-wait" in here.stderr and "Traceback" not in here.stderr
    queued = cli("backup", "web", "--no-wait", "--json", env=env)
    assert queued.code == 0, queued
    assert other.run_queued() == []
    [ran] = world.run_queued()
    assert (ran.type.value, ran.state) == ("backup", JobState.COMPLETED), ran.message
    assert len(world.client().get("/api/v1/points?vm=web").json()) == 3


def test_a_set_runs_on_its_hosts_node_and_one_across_hosts_is_refused(world: World) -> None:
    """A queued set is claimed only by a node of its VMs' host (its request's ``host``), as
    its members' backups would be; a set whose VMs are on two hosts is refused up front
    (BACKUP_SET_SPANS_HOSTS, nothing queued) on every path."""
    world.add_vm("db", "00000000-0000-0000-0000-0000000000db")
    c = world.client()
    assert c.post("/api/v1/vms/discover", json={}).status_code == 200
    [reg] = c.post("/api/v1/vms/register", json={"vms": ["db"]}).json()
    assert reg["state"] == "completed", reg
    world.services.node.beat()  # the node of qemu:///system is live
    other = other_node(world)
    r = other.client().post("/api/v1/backups", json={"vms": ["web", "db"], "set": True})
    assert r.status_code == 202, r.text
    [queued] = r.json() if isinstance(r.json(), list) else [r.json()]
    assert other.run_queued() == []  # not its host's set: left for the node of qemu:///system
    [ran] = world.run_queued()
    assert ran.id == queued["id"]
    assert (ran.type.value, ran.state) == ("backup-set", JobState.COMPLETED), ran.message
    assert ran.node == world.services.node.identity.id
    # db moves to host OTHER (as discovery would record it): web and db span two hosts
    with world.services.node.uow() as uow:
        db = uow.vms.get("00000000-0000-0000-0000-0000000000db")
        assert db is not None
        db.host_uri = OTHER
        uow.vms.save(db)
        uow.hosts.add(OTHER, "local", None, utcnow())  # in the vault's location
        uow.commit()
    before = len(world.services.jobs.list_jobs())
    for client in (c, other.client()):
        r = client.post("/api/v1/backups", json={"vms": ["web", "db"], "set": True})
        message = refused(r, 400, "BACKUP_SET_SPANS_HOSTS")
        assert f"on {OTHER}, qemu:///system" in message, message
    assert len(world.services.jobs.list_jobs()) == before


def test_a_pulled_host_is_backed_up_by_any_node_and_nothing_else_is(world: World) -> None:
    """A host marked ``--pull-tls`` (no node runs there, domain/pull.py): another node backs
    its VM up — in the foreground and queued — telling the driver to pull with the host's
    certificates; a restore, a restore test and a set of its VMs are still refused up front."""
    pid = point_of(world)
    stop_nodes(world)
    with world.services.node.uow() as uow:  # web's host, marked as pulled from
        uow.hosts.remove("qemu:///system")
        uow.hosts.add("qemu:///system", "local", None, utcnow(), "/etc/vmvault/pull")
        uow.commit()
    settings = Settings.from_env(
        {"VMVAULT_HOME": str(world.settings.home), "VMVAULT_NODE_HOST": OTHER}
    )
    other = World(settings, world.hv, world.files, world.restore_driver)  # web's disks in reach
    api = other.client()
    hosts = {h["uri"]: h for h in api.get("/api/v1/hosts").json()}
    assert hosts["qemu:///system"]["pull_tls"] == "/etc/vmvault/pull", hosts
    [out] = other.services.backups.backup(None, ["web"])
    assert out.job.state is JobState.COMPLETED, out.job.message
    assert other.services.backups.driver.pulled == "/etc/vmvault/pull"  # type: ignore[attr-defined]
    r = api.post("/api/v1/backups", json={"vms": ["web"]})
    assert r.status_code == 202, r.text
    [ran] = other.run_queued()
    assert (ran.type.value, ran.state) == ("backup", JobState.COMPLETED), ran.message
    body = {"vm": "web", "point": pid, "mode": "as-new", "name": "w2"}
    r = api.post("/api/v1/restores", json=body)
    refused(r, 409, "HOST_NOT_SERVED")
    remedy = r.json()["error"]["remedy"]  # not the advice to pull: it is pulled already
    assert "is pulled from" in remedy and "--pull-tls DIR" not in remedy, remedy
    refused(
        api.post("/api/v1/restore-tests", json={"vm": "web", "point": pid}), 409, "HOST_NOT_SERVED"
    )
    world.add_vm("db", "00000000-0000-0000-0000-0000000000db")
    assert api.post("/api/v1/vms/discover", json={}).status_code == 200
    assert api.post("/api/v1/vms/register", json={"vms": ["db"]}).status_code == 200
    r = api.post("/api/v1/backups", json={"vms": ["web", "db"], "set": True})
    refused(r, 409, "HOST_NOT_SERVED")


def test_a_pulled_host_is_added_through_the_api_with_its_certificates(
    world: World, tmp_path: Path
) -> None:
    """``POST /hosts`` with ``pull_tls``: refused before anything when the URI has no host
    name, the path is not absolute or (checked) lacks the client files; added otherwise."""
    api = world.client()
    pki = tmp_path / "pki"
    pki.mkdir()
    base = {"uri": "qemu+tls://h1.example/system", "location": "local"}
    for body, words in (
        (base | {"pull_tls": str(pki)}, "lacks ca-cert.pem, client-cert.pem, client-key.pem"),
        (base | {"pull_tls": "pki", "check": False}, "absolute directory"),
        (base | {"uri": "qemu:///session", "pull_tls": str(pki)}, "with a host name"),
    ):
        assert words in refused(api.post("/api/v1/hosts", json=body), 400, "INVALID_INPUT")
    for name in ("ca-cert.pem", "client-cert.pem", "client-key.pem"):
        (pki / name).write_text("not read here")
    r = api.post("/api/v1/hosts", json=base | {"pull_tls": f"{pki}/", "check": False})
    assert r.status_code == 201 and r.json()["pull_tls"] == str(pki), r.text
    hosts = {h["uri"]: h["pull_tls"] for h in api.get("/api/v1/hosts").json()}
    assert hosts == {"qemu:///system": None, base["uri"]: str(pki)}, hosts
