"""``host update URI --pull-tls DIR`` / ``--no-pull-tls`` at the edges (docs/deployment.md,
"Switching a host"): the API's ``PATCH /hosts/{uri}`` with ``pull_tls`` / ``no_pull_tls`` /
``check``; the real ``vmvault`` locally and with ``--server`` against a real server (uvicorn
in this process, over the same catalog; the in-memory hypervisor), printing the same; a switch
refused with 409 / exit 2 ``HOST_JOBS_ACTIVE`` while a job of the host's VMs runs; each change
in the audit log as other host changes are (API: the request; CLI: the command, without the
option's value)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import uvicorn

from tests.api_tokens import TOKENS, authenticate
from tests.conftest import CliRunner
from tests.e2e.api_world import World, make_world
from tests.e2e.conftest import free_port
from tests.e2e.test_api_routes import refused
from tests.unit.test_host_update_pull import pki
from vmvault.api.app import create_app
from vmvault.bootstrap import utcnow
from vmvault.domain.access import Role
from vmvault.domain.job import Job, JobType
from vmvault.domain.vm import Disk, DomainFacts, PowerState, VmItem, classify_disk

B = "qemu+tls://h1.example/system"
DB = "00000000-0000-0000-0000-0000000000db"
PATH = f"/api/v1/hosts/{quote(B, safe='')}"


@pytest.fixture()
def world(home: Path) -> World:
    """Host B (not pulled) with VM ``db`` in the catalog of ``home``."""
    w = make_world(home)
    w.services.vaults.create("main", "local", None)
    w.services.vaults.add_host(B, "local", check=False)
    facts = DomainFacts(
        uuid=DB, name="db", host_uri=B, hostname="h1.example", group="h1.example",
        power_state=PowerState.RUNNING, nics=(), agent_channel=True,
        disks=(classify_disk(Disk("vda", "file", "disk", "qcow2", "/v/db.qcow2")),),
    )  # fmt: skip
    with w.services.vaults.uow() as uow:
        uow.vms.save(VmItem.from_facts(facts, utcnow()))
        uow.commit()
    return w


def backup_of_db(world: World) -> Job:
    """A backup of ``db`` in progress (as a node's would be)."""
    return world.services.runner.start(JobType.BACKUP, "main", DB, "h1.example/db")


def test_the_api_sets_changes_and_clears_the_directory_and_refuses_bad_bodies(
    world: World, tmp_path: Path
) -> None:
    api = world.client()
    one, two, leaky = pki(tmp_path / "one"), pki(tmp_path / "two"), pki(tmp_path / "k", 0o644)
    for body, words in (
        ({}, "give --cluster-managed, --not-cluster-managed, --pull-tls DIR or --no-pull-tls"),
        ({"pull_tls": str(one), "no_pull_tls": True}, "either pulled from"),
        ({"pull_tls": str(leaky)}, "client-key.pem is readable by its group or others"),
        ({"pull_tls": "pki", "check": False}, "absolute directory"),
        ({"check": False, "no_pull_tls": True}, "give it with --pull-tls"),
        ({"pull": str(one)}, "body.pull"),  # unknown field: refused, not ignored
        ({"no_pull_tls": "yes"}, "body.no_pull_tls"),
    ):
        assert words in refused(api.patch(PATH, json=body), 400, "INVALID_INPUT"), body
    assert api.get("/api/v1/hosts").json()[-1]["pull_tls"] is None
    r = api.patch(PATH, json={"pull_tls": f"{one}/"})
    assert r.status_code == 200 and r.json()["pull_tls"] == str(one), r.text
    r = api.patch(PATH, json={"pull_tls": str(tmp_path / "nothing"), "check": False})
    assert r.status_code == 200 and r.json()["pull_tls"] == str(tmp_path / "nothing"), r.text
    job = backup_of_db(world)
    r = api.patch(PATH, json={"no_pull_tls": True, "cluster_managed": ["db"]})
    message = refused(r, 409, "HOST_JOBS_ACTIVE")
    assert f"job {job.id} (backup, in-progress) of its VM h1.example/db" in message, message
    assert f"'vmvault jobs wait {job.id}'" in r.json()["error"]["remedy"]
    r = api.patch(PATH, json={"pull_tls": str(two)})  # a new directory is no switch
    assert r.status_code == 200 and r.json()["pull_tls"] == str(two), r.text
    world.services.runner.finish(job, None)
    r = api.patch(PATH, json={"no_pull_tls": True, "cluster_managed": ["db"]})
    assert r.status_code == 200, r.text
    assert (r.json()["pull_tls"], r.json()["cluster_managed"]) == (None, ["db"])
    entries, _ = world.services.audit.list_entries()
    patches = [(e.action, e.target, e.status) for e in entries if e.action.startswith("PATCH")]
    action = f"PATCH /api/v1/hosts/{B}"  # the path as the server read it
    assert patches[:4] == [(action, B, s) for s in (200, 200, 409, 200)], patches


PULLED = "host {uri}: cluster-managed VMs: none; backed up by pulling over NBD with TLS ({dir})\n"
BY_NODE = "host {uri}: cluster-managed VMs: none; backed up by its own node\n"


def test_the_local_cli_switches_a_host_and_refuses_bad_input(
    cli: CliRunner, world: World, tmp_path: Path
) -> None:
    one, leaky = pki(tmp_path / "one"), pki(tmp_path / "leaky", 0o644)
    done = cli("host", "update", B, "--pull-tls", str(one))
    assert (done.code, done.stdout) == (0, PULLED.format(uri=B, dir=one)), done
    done = cli("host", "update", B, "--pull-tls", str(leaky), "--cluster-managed", "db")
    assert done.code == 2 and "error INVALID_INPUT: --pull-tls" in done.stderr, done
    assert "client-key.pem is readable by its group or others" in done.stderr, done
    done = cli("host", "update", B, "--no-pull-tls")
    assert (done.code, done.stdout) == (0, BY_NODE.format(uri=B)), done
    [host] = [h for h in world.services.vaults.list_hosts() if h.uri == B]
    assert (host.pull_tls, host.cluster_managed) == (None, ())
    entries, _ = world.services.audit.list_entries()
    updates = [(e.action, e.target, e.status) for e in entries if e.action.endswith("update")]
    assert updates == [("vmvault host update", B, s) for s in (0, 2, 0)], updates
    assert not any(str(one) in (e.target or "") for e in entries)  # option values unrecorded


@pytest.fixture()
def server(world: World) -> Iterator[str]:
    """``world``'s API served by uvicorn on loopback (what ``vmvault serve`` runs)."""
    port = free_port()
    app = create_app(world.services, authenticate=authenticate)
    served = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not served.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        served.should_exit = True
        thread.join(timeout=30)


def test_the_remote_cli_prints_as_the_local_one_and_is_refused_while_a_job_runs(
    cli: CliRunner, world: World, server: str, tmp_path: Path
) -> None:
    one = pki(tmp_path / "one")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def remote(*args: str) -> tuple[int, str, str]:
        done = cli(
            "--server", server, "--token", TOKENS[Role.ADMIN], "host", "update", B, *args,
            env={"VMVAULT_HOME": str(elsewhere)},
        )  # fmt: skip
        assert "Traceback" not in done.stderr and TOKENS[Role.ADMIN] not in done.stderr, done
        return done.code, done.stdout, done.stderr

    assert remote("--pull-tls", str(one)) == (0, PULLED.format(uri=B, dir=one), "")
    code, _, stderr = remote()
    assert code == 2 and "give --cluster-managed, --not-cluster-managed, --pull-tls DIR" in stderr
    code, _, stderr = remote("--pull-tls", str(one), "--no-pull-tls")
    assert code == 2 and "either pulled from (--pull-tls DIR)" in stderr, stderr
    job = backup_of_db(world)
    code, _, stderr = remote("--no-pull-tls")
    assert code == 2 and stderr.startswith("error HOST_JOBS_ACTIVE: host " + B), stderr
    assert f"remedy: Wait for the host's jobs to end ('vmvault jobs wait {job.id}'" in stderr
    world.services.runner.finish(job, None)
    assert remote("--no-pull-tls") == (0, BY_NODE.format(uri=B), "")
    assert list(elsewhere.iterdir()) == []  # nothing local was opened
    entries, _ = world.services.audit.list_entries()
    statuses = [e.status for e in entries if e.action == f"PATCH /api/v1/hosts/{B}"]
    assert statuses[::-1] == [200, 400, 400, 409, 200], statuses
