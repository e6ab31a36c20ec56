"""A vault in a bucket of the lab's real Ceph RADOS Gateway: backup of running lab guests,
incremental, restore, verify and GC through the real ``vmvault`` command; bad S3 coordinates
refused at ``vault create``; RGW killed in the middle of a backup and of a GC."""

from __future__ import annotations

import configparser
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import CliRunner
from tests.integration.conftest import LAB_VARIANTS, assert_vm_clean, lab_settings
from tests.integration.guests import fsck_clean, md5_in_image, write_file
from tests.integration.test_backup import backup, restore
from vmvault.bootstrap import Services, bootstrap
from vmvault.dataplane.chunk import ZERO_ID
from vmvault.dataplane.chunkstore import chunk_key
from vmvault.domain.errors import VmvaultError
from vmvault.domain.job import Job, JobState, JobType
from vmvault.domain.vault import s3_location
from vmvault.hypervisor.lab.vms import lab_prefix

pytestmark = pytest.mark.lab

N = {v: f"{lab_prefix()}-{v}-1" for v in LAB_VARIANTS}


def _objects(rgw: Any, bucket: str, prefix: str = "") -> list[str]:
    s3 = boto3.client(
        "s3",
        endpoint_url=rgw.endpoint,
        aws_access_key_id=rgw.access_key,
        aws_secret_access_key=rgw.secret_key,
        region_name="us-east-1",
    )
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def create_s3_vault(cli: CliRunner, rgw: Any, bucket: str, *extra: str) -> Any:
    r = cli(
        "vault", "create", "main", "--location", "local", "--storage", "s3",
        "--endpoint", rgw.endpoint, "--bucket", bucket, "--prefix", "vaults/main",
        *extra, "--json", env=rgw.env(),
    )  # fmt: skip
    assert r.code == 0, r.stderr
    return r.json()


def test_backup_restore_verify_gc_of_a_guest_on_an_s3_vault(
    lab: dict[str, Any], rgw: Any, cli: CliRunner, tmp_path: Path
) -> None:
    vm = N["standard"]
    env = rgw.env()
    bucket = rgw.bucket("vault")
    doc = create_s3_vault(cli, rgw, bucket)
    assert doc["storage"] == "s3" and doc["path"] == f"s3://{bucket}/vaults/main/"
    listed = cli("vault", "list", "--json", env=env)
    assert rgw.secret_key not in listed.stdout and rgw.access_key not in listed.stdout
    assert cli("discover", env=env).code in (0, 3)
    assert cli("register", vm, "--crash-consistent", env=env).code in (0, 3)

    a = write_file(vm, "/data/s3-a.bin", 8)
    p1 = backup(cli, vm, env=env)["point"]
    b = write_file(vm, "/data2/s3-b.bin", 4)
    p2 = backup(cli, vm, env=env)["point"]
    assert all(d["incremental"] for d in p2["disks"] if not d["excluded"]), p2
    assert p2["bytes_read"] < 32 << 20, p2  # only what changed
    keys = _objects(rgw, bucket, "vaults/main/")
    assert f"vaults/main/manifests/{p2['id']}.manifest" in keys
    assert any(k.startswith("vaults/main/chunks/") for k in keys)

    files = restore(cli, vm, p2["id"], tmp_path / "r", env=env)
    vda, vdb = (f for f in files if f.suffix == ".raw")
    assert md5_in_image(vda, "/s3-a.bin") == a and md5_in_image(vdb, "/s3-b.bin") == b
    fsck_clean(vda)
    fsck_clean(vdb)

    assert cli("verify", "--all", env=env).code == 0
    # soft delete (the default): the point stays in the bucket, GC keeps it
    manifest = f"vaults/main/manifests/{p1['id']}.manifest"
    assert cli("points", "delete", p1["id"], env=env).code == 0
    r = cli("gc", "--json", env=env)
    assert r.code == 0, r.stderr
    assert manifest in _objects(rgw, bucket)
    assert cli("verify", "--all", env=env).code == 0
    assert cli("points", "undelete", p1["id"], env=env).code == 0
    # soft delete off: deleted at once, its chunks collected
    assert cli("vault", "update", "main", "--soft-delete", "off", env=env).code == 0
    assert cli("points", "delete", p1["id"], env=env).code == 0
    r = cli("gc", "--json", env=env)
    assert r.code == 0, r.stderr
    assert cli("verify", "--all", env=env).code == 0
    assert manifest not in _objects(rgw, bucket)


def test_vault_create_refuses_bad_s3_coordinates_and_creates_nothing(
    rgw: Any, cli: CliRunner, tmp_path: Path
) -> None:
    bucket = rgw.bucket("refuse")
    base = ("vault", "create", "v", "--location", "local", "--storage", "s3")
    cases = {
        "wrong keys": (
            (*base, "--endpoint", rgw.endpoint, "--bucket", bucket),
            rgw.env() | {"AWS_SECRET_ACCESS_KEY": "not-the-secret"},
            "STORAGE_ACCESS_DENIED",
        ),
        "unknown bucket": (
            (*base, "--endpoint", rgw.endpoint, "--bucket", "no-such-bucket-here"),
            rgw.env(),
            "STORAGE_BUCKET_NOT_FOUND",
        ),
        "unreachable endpoint": (
            (*base, "--endpoint", "http://127.0.0.1:9", "--bucket", bucket),
            rgw.env(),
            "STORAGE_UNREACHABLE",
        ),
        "no credentials": (
            (*base, "--endpoint", rgw.endpoint, "--bucket", bucket),
            {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
            "STORAGE_CREDENTIALS_MISSING",
        ),
        "an endpoint that is not a URL": (
            (*base, "--endpoint", "rgw:7480", "--bucket", bucket),
            rgw.env(),
            "INVALID_INPUT",
        ),
        "s3 options without --storage s3": (
            ("vault", "create", "v", "--location", "local", "--bucket", bucket),
            rgw.env(),
            "INVALID_INPUT",
        ),
    }
    for what, (args, env, code) in cases.items():
        r = cli(*args, env=env, timeout=120)
        assert r.code != 0 and f"error {code}" in r.stderr, (what, r.stderr)
        assert "Traceback" not in r.stderr and rgw.secret_key not in r.stderr, what
    assert cli("vault", "list", "--json").json() == []
    assert _objects(rgw, bucket) == []

    # a bucket and prefix that already hold a vault: refused, the first vault untouched —
    # by this catalog (it knows the vault) and by another one (it finds the objects)
    create_s3_vault(cli, rgw, bucket)
    before = sorted(_objects(rgw, bucket))
    second = (
        "vault", "create", "second", "--location", "local", "--storage", "s3",
        "--endpoint", rgw.endpoint, "--bucket", bucket, "--prefix", "vaults/main/",
    )  # fmt: skip
    r = cli(*second, env=rgw.env())
    assert r.code == 2 and "error INVALID_INPUT" in r.stderr and "overlaps" in r.stderr, r.stderr
    elsewhere = tmp_path / "another-catalog"
    elsewhere.mkdir()
    r = cli(*second, env=rgw.env() | {"VMVAULT_HOME": str(elsewhere)})
    assert r.code == 2 and "error VAULT_STORAGE_IN_USE" in r.stderr, r.stderr
    assert sorted(_objects(rgw, bucket)) == before
    assert [v["name"] for v in cli("vault", "list", "--json").json()] == ["main"]


# --- RGW killed in the middle of an operation ---------------------------------------------------


@pytest.fixture(scope="module")
def s3svc(
    lab: dict[str, Any], rgw: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    """Services with an S3 vault (credentials from a file), the writer guest registered and
    backed up once."""
    home = tmp_path_factory.mktemp("s3-home")
    creds = home / "s3.ini"
    ini = configparser.ConfigParser()
    ini["default"] = {"aws_access_key_id": rgw.access_key, "aws_secret_access_key": rgw.secret_key}
    with creds.open("w") as f:
        ini.write(f)
    services = bootstrap(lab_settings(home))
    where = s3_location(rgw.endpoint, rgw.bucket("faults"), "v", credentials_file=str(creds))
    services.vaults.create("main", "local", None, s3=where)
    services.inventory.discover(None)
    for out in services.inventory.register(None, [N["writer"]], allow_crash_consistent=True):
        assert out.error is None, out.error
    first = services.backups.backup(None, [N["writer"]])[0]
    assert first.result is not None, services.jobs.show(first.job.id)
    yield services
    services.runner.phase_observers.clear()
    services.runner.observers.clear()


def _kill_rgw_at(svc: Services, rgw: Any, job_type: JobType, phase: str) -> list[int]:
    """Kill RGW (SIGKILL) as the next job of ``job_type`` enters ``phase``; returns the ids."""
    killed: list[int] = []

    def at(job: Job, name: str) -> None:
        if job.type is job_type and name == phase and not killed:
            rgw.kill_rgw()
            killed.append(job.id)

    svc.runner.phase_observers.append(at)
    return killed


def test_rgw_killed_during_a_backup_fails_it_cleanly_and_the_next_backup_works(
    s3svc: Services, rgw: Any
) -> None:
    vm = N["writer"]
    before = [p.id for p in s3svc.point_listing.list_points("main", vm)]
    last = s3svc.point_listing.get(before[0])
    killed = _kill_rgw_at(s3svc, rgw, JobType.BACKUP, "writing")
    try:
        outcome = s3svc.backups.backup("main", [vm])[0]
    finally:
        s3svc.runner.phase_observers.clear()
        rgw.restart_rgw()
    assert killed, "the backup never reached its writing phase"
    job, log = s3svc.jobs.show(outcome.job.id)
    assert job.state is JobState.FAILED, log
    assert job.error_code == "STORAGE_UNREACHABLE", (job.error_code, log)
    assert [p.id for p in s3svc.point_listing.list_points("main", vm)] == before  # no half point
    assert_vm_clean(s3svc.settings.work_dir, vm, {last.checkpoint} - {None})

    again = s3svc.backups.backup("main", [vm])[0]
    assert again.result is not None, s3svc.jobs.show(again.job.id)
    verified = s3svc.points.verify("main")
    assert verified.job.state is JobState.COMPLETED, s3svc.jobs.show(verified.job.id)


def test_rgw_killed_during_gc_fails_it_cleanly_and_the_rerun_collects(
    s3svc: Services, rgw: Any
) -> None:
    vm = N["writer"]
    write_file(vm, "/data/gc.bin", 4)
    doomed = s3svc.backups.backup("main", [vm])[0]
    assert doomed.result is not None
    s3svc.soft_delete.update_vault("main", "off")  # deleted at once: GC has chunks to remove
    try:
        s3svc.points.delete_point(doomed.result.id)
    finally:
        s3svc.soft_delete.update_vault("main", "on")
    chunks_before = s3svc.vaults.stored_chunk_bytes(s3svc.vaults.resolve("main")).bytes
    killed = _kill_rgw_at(s3svc, rgw, JobType.GC, "collecting")
    try:
        outcome = s3svc.points.gc("main")
    except VmvaultError:
        outcome = None
    finally:
        s3svc.runner.phase_observers.clear()
        rgw.restart_rgw()
    assert killed, "GC never started collecting"
    assert outcome is not None and outcome.job.state is JobState.FAILED
    assert outcome.job.error_code == "STORAGE_UNREACHABLE", s3svc.jobs.show(outcome.job.id)
    assert s3svc.vaults.stored_chunk_bytes(s3svc.vaults.resolve("main")).bytes == chunks_before
    rerun = s3svc.points.gc("main")
    assert rerun.job.state is JobState.COMPLETED, s3svc.jobs.show(rerun.job.id)
    verified = s3svc.points.verify("main")
    assert verified.job.state is JobState.COMPLETED, s3svc.jobs.show(verified.job.id)


def _a_chunk_of(svc: Services, vault: str, point_id: str) -> str:
    """The storage key of one non-zero chunk the point references in ``vault``."""
    store = svc.vaults.open_store(svc.vaults.resolve(vault))
    manifest = store.read_manifest(point_id)
    for disk in manifest.disks:
        if disk.index is None:
            continue
        for cid in store.read_point_index(manifest, disk.target).ids:
            if cid != ZERO_ID:
                return chunk_key(cid)
    raise AssertionError(f"point {point_id} has no data chunk")


def test_a_chunk_lost_or_corrupted_in_the_s3_vault_is_healed_from_a_local_copy(
    s3svc: Services, rgw: Any
) -> None:
    vm = N["writer"]
    s3svc.vaults.create("local", "local", None)
    copies = s3svc.copies.copy("main", "local", [vm])
    assert all(c.job.state is JobState.COMPLETED for c in copies), copies
    newest = s3svc.point_listing.list_points("main", vm)[0]
    lost = _a_chunk_of(s3svc, "main", newest.id)
    backend = s3svc.vaults.backend(s3svc.vaults.resolve("main"))
    backend.delete(lost)

    found = s3svc.points.verify("main", point_id=newest.id)
    job, log = s3svc.jobs.show(found.job.id)
    assert job.state is JobState.COMPLETED_WITH_WARNINGS, log
    assert any("healed" in line and "local" in line for line in log), log
    assert backend.exists(lost)
    clean = s3svc.points.verify("main", point_id=newest.id)
    assert clean.job.state is JobState.COMPLETED, s3svc.jobs.show(clean.job.id)

    # corrupted in place (a PUT over it, as a faulty or malicious store would): healed too
    data = bytearray(backend.get(lost))
    data[len(data) // 2] ^= 0xFF
    backend.publish(lost, bytes(data))
    found = s3svc.points.verify("main", point_id=newest.id)
    assert found.job.state is JobState.COMPLETED_WITH_WARNINGS, s3svc.jobs.show(found.job.id)
    assert s3svc.points.verify("main", point_id=newest.id).job.state is JobState.COMPLETED


def test_rgw_killed_during_a_copy_leaves_no_point_and_the_rerun_completes(
    s3svc: Services, rgw: Any
) -> None:
    """A copy from the local vault into a second, empty S3 vault; RGW killed as the copy of
    the first point begins."""
    vm = N["writer"]
    if "local" not in [v.name for v in s3svc.vaults.list_vaults()]:
        s3svc.vaults.create("local", "local", None)
        s3svc.copies.copy("main", "local", [vm])
    where = s3_location(
        rgw.endpoint, rgw.bucket("copy"), "v", credentials_file=str(s3svc.settings.home / "s3.ini")
    )
    s3svc.vaults.create("far", "local", None, s3=where)
    killed = _kill_rgw_at(s3svc, rgw, JobType.COPY, "copying")
    try:
        outcomes = s3svc.copies.copy("local", "far", [vm])
    finally:
        s3svc.runner.phase_observers.clear()
        rgw.restart_rgw()
    assert killed, "the copy never began copying"
    job, log = s3svc.jobs.show(outcomes[0].job.id)
    assert job.state is JobState.FAILED, log
    assert job.error_code == "STORAGE_UNREACHABLE", (job.error_code, log)
    held = [p.id for p in s3svc.point_listing.list_points("far", vm)]
    assert held == [], held  # no half point

    rerun = s3svc.copies.copy("local", "far", [vm])
    assert all(c.job.state is JobState.COMPLETED for c in rerun), rerun
    verified = s3svc.points.verify("far")
    assert verified.job.state is JobState.COMPLETED, s3svc.jobs.show(verified.job.id)
