"""``host update --pull-tls DIR`` / ``--no-pull-tls`` (services/host_pull.py) on a real SQLite
catalog and a real client PKI directory: a host switched to pulled, its directory changed and
switched back, each visible to the backup's planning (``pulled_hosts``); bad input refused with
the host unchanged; a switch refused (``HOST_JOBS_ACTIVE``) while a job that touches the disks
of one of its VMs is in progress or cancelling — not for a queued one, a job of another host
or one that does not touch disks, nor for a change of directory of a host that stays pulled."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain.errors import HostJobsActive, InvalidInput
from vmvault.domain.job import Job, JobState, JobType
from vmvault.domain.pull import PULL_FILES
from vmvault.domain.vm import Disk, DomainFacts, PowerState, VmItem, classify_disk

NOW = datetime(2026, 12, 3, 11, 0, tzinfo=UTC)
B = "qemu+tls://h1.example/system"
OTHER = "qemu+tls://h2.example/system"
DB = "00000000-0000-0000-0000-0000000000db"
WEB = "00000000-0000-0000-0000-0000000000aa"


def pki(where: Path, key_mode: int = 0o600) -> Path:
    """A client PKI directory (domain/pull.py ``PULL_FILES``) whose key has ``key_mode``."""
    where.mkdir(mode=0o700)
    for name in PULL_FILES:
        (where / name).write_text("not read here")
    (where / "client-key.pem").chmod(key_mode)
    return where


def make(tmp_path: Path, catalog_url: str | None = None) -> Services:
    env = {"VMVAULT_HOME": str(tmp_path / "home")}
    if catalog_url is not None:
        env["VMVAULT_CATALOG_URL"] = catalog_url
    svc = bootstrap(Settings.from_env(env), lambda: NOW)
    svc.vaults.create("main", "local", None)
    with svc.vaults.uow() as uow:
        for uri, name, uuid in ((B, "db", DB), (OTHER, "web", WEB)):
            uow.hosts.add(uri, "local", uri.split("/")[2], NOW)
            facts = DomainFacts(
                uuid=uuid, name=name, host_uri=uri, hostname=uri.split("/")[2],
                group="g", power_state=PowerState.RUNNING, nics=(), agent_channel=True,
                disks=(classify_disk(Disk("vda", "file", "disk", "qcow2", f"/v/{name}")),),
            )  # fmt: skip
            uow.vms.save(VmItem.from_facts(facts, NOW))
        uow.commit()
    return svc


@pytest.fixture()
def services(tmp_path: Path) -> Services:
    return make(tmp_path)


def pull_of(services: Services, uri: str = B) -> str | None:
    [host] = [h for h in services.vaults.list_hosts() if h.uri == uri]
    return host.pull_tls


def job(
    services: Services,
    job_type: JobType,
    vm: str | None,
    state: JobState,
    request: dict[str, object] | None = None,
) -> int:
    with services.vaults.uow() as uow:
        # no conflict key: two jobs of one VM here, whatever the conflict rules would allow
        made = uow.jobs.create(job_type, "main", vm, vm, state, NOW, 1, None, request=request)
        uow.commit()
    return made.id


def test_a_host_is_pulled_its_directory_changed_and_backed_up_by_its_node_again(
    services: Services, tmp_path: Path
) -> None:
    one, two = pki(tmp_path / "one"), pki(tmp_path / "two")
    host = services.inventory.update_host(B, pull_tls=f"{one}/")
    assert host.pull_tls == str(one) == pull_of(services)
    assert services.backups.pulled_hosts() == {B: str(one)}  # what a backup plans with
    assert services.inventory.update_host(B, pull_tls=str(two)).pull_tls == str(two)
    host = services.inventory.update_host(B, ["db"], no_pull_tls=True)
    assert (host.pull_tls, host.cluster_managed) == (None, ("db",))
    assert services.backups.pulled_hosts() == {}
    assert services.inventory.update_host(B, no_pull_tls=True).pull_tls is None  # nothing to do
    empty = tmp_path / "empty"
    empty.mkdir()
    assert services.inventory.update_host(B, pull_tls=str(empty), check=False).pull_tls == str(
        empty
    )


@pytest.mark.parametrize(
    ("uri", "kw", "words"),
    [
        (B, {}, "give --cluster-managed, --not-cluster-managed, --pull-tls DIR or --no-pull-tls"),
        (B, {"pull_tls": "GOOD", "no_pull_tls": True}, "either pulled from (--pull-tls DIR)"),
        (B, {"no_pull_tls": True, "check": False}, "give it with --pull-tls"),
        (B, {"pull_tls": "relative/pki", "check": False}, "give an absolute directory"),
        (B, {"pull_tls": "MISSING"}, "lacks ca-cert.pem, client-cert.pem, client-key.pem"),
        (B, {"pull_tls": "OPEN_KEY"}, "client-key.pem is readable by its group or others"),
        (B, {"pull_tls": "OPEN_DIR"}, "the directory is writable by others"),
        ("qemu:///system", {"pull_tls": "GOOD"}, "give its URI with a host name"),
    ],
)
def test_bad_input_is_refused_and_nothing_changes(
    services: Services, tmp_path: Path, uri: str, kw: dict[str, object], words: str
) -> None:
    dirs = {
        "GOOD": pki(tmp_path / "good"),
        "MISSING": tmp_path / "missing",
        "OPEN_KEY": pki(tmp_path / "open-key", key_mode=0o644),
        "OPEN_DIR": pki(tmp_path / "open-dir"),
    }
    dirs["OPEN_DIR"].chmod(0o777)
    if uri not in {h.uri for h in services.vaults.list_hosts()}:
        services.vaults.add_host(uri, "local", check=False)
    if "pull_tls" in kw and kw["pull_tls"] in dirs:
        kw["pull_tls"] = str(dirs[str(kw["pull_tls"])])
    with pytest.raises(InvalidInput) as refused:
        # with a VM to mark, but for the update that gives nothing: all of it refused
        services.inventory.update_host(uri, ["db"] if kw else [], **kw)  # type: ignore[arg-type]
    assert words in refused.value.text, refused.value.text
    [host] = [h for h in services.vaults.list_hosts() if h.uri == uri]
    assert (host.pull_tls, host.cluster_managed) == (None, ())


@pytest.mark.parametrize(
    ("job_type", "state", "request_"),
    [
        (JobType.BACKUP, JobState.IN_PROGRESS, None),
        (JobType.BACKUP, JobState.CANCELLING, None),
        (JobType.RESTORE, JobState.IN_PROGRESS, {"mode": "replace"}),
        (JobType.BACKUP_SET, JobState.IN_PROGRESS, {"vms": [WEB, DB], "host": B}),
    ],
)
def test_a_switch_is_refused_while_a_job_of_the_hosts_vms_runs(
    services: Services,
    tmp_path: Path,
    job_type: JobType,
    state: JobState,
    request_: dict[str, object] | None,
) -> None:
    one, two = pki(tmp_path / "one"), pki(tmp_path / "two")
    running = job(
        services, job_type, None if job_type is JobType.BACKUP_SET else DB, state, request_
    )
    with pytest.raises(HostJobsActive) as refused:
        services.inventory.update_host(B, ["db"], pull_tls=str(one))
    assert refused.value.code == "HOST_JOBS_ACTIVE"
    text = refused.value.text
    assert f"host {B} is backed up by its own node and job {running} ({job_type.value}" in text, (
        text
    )
    assert f"jobs wait {running}" in refused.value.remedy_text
    [host] = [h for h in services.vaults.list_hosts() if h.uri == B]
    assert (host.pull_tls, host.cluster_managed) == (None, ())  # the whole update refused
    # pulled already (as if marked before the job began): a new directory is no switch, ...
    with services.vaults.uow() as uow:
        uow.hosts.set_pull_tls(B, str(one))
        uow.commit()
    assert services.inventory.update_host(B, pull_tls=str(two)).pull_tls == str(two)
    with pytest.raises(HostJobsActive, match="is backed up by pulling over NBD with TLS"):
        services.inventory.update_host(B, no_pull_tls=True)  # ... but back to its node is
    assert pull_of(services) == str(two)
    with services.vaults.uow() as uow:
        current = uow.jobs.get(running)
    assert current is not None
    services.runner.finish(current, None)
    assert services.inventory.update_host(B, no_pull_tls=True).pull_tls is None


def test_queued_jobs_other_hosts_and_jobs_that_touch_no_disks_do_not_block(
    services: Services, tmp_path: Path
) -> None:
    one = pki(tmp_path / "one")
    job(services, JobType.BACKUP, DB, JobState.QUEUED)  # plans with the host as it is then
    job(services, JobType.BACKUP, WEB, JobState.IN_PROGRESS)  # another host's VM
    job(services, JobType.RESTORE, DB, JobState.CANCELLING, {"mode": "disks-only"})
    assert services.inventory.update_host(B, pull_tls=str(one)).pull_tls == str(one)
    assert services.inventory.update_host(B, no_pull_tls=True).pull_tls is None


def test_no_job_starts_between_the_switchs_check_and_its_commit(
    tmp_path: Path, catalog_url: str
) -> None:
    """``jobs.hold_starts`` (PostgreSQL: a SHARE lock of the jobs table; SQLite: the
    transaction's BEGIN IMMEDIATE): a backup started meanwhile waits for the switch's commit,
    and is then seen by the next switch."""
    svc = make(tmp_path, catalog_url)
    started: list[Job] = []
    thread = threading.Thread(
        target=lambda: started.append(svc.runner.start(JobType.BACKUP, "main", DB, "db"))
    )
    with svc.vaults.uow() as uow:
        uow.jobs.hold_starts()
        thread.start()
        thread.join(0.5)
        assert thread.is_alive() and not started  # it waits for this transaction
        uow.commit()
    thread.join(30)
    assert [j.state for j in started] == [JobState.IN_PROGRESS]
    with pytest.raises(HostJobsActive):
        svc.inventory.update_host(B, pull_tls=str(pki(tmp_path / "one")))
