"""``vault attach``: a vault written by one ``VMVAULT_HOME`` rebuilt into a fresh, empty one
from its storage alone (docs/disaster-recovery.md).

The vaults are real (a local directory; on S3 the lab's real RGW) and written by the real
backup service over the in-memory hypervisor (tests/e2e/api_world.py); the new home attaches
them through the real CLI (a process of its own) or the API, lists the same VMs and points,
restores them bit-exact, and refuses what it must with nothing written.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliRunner
from tests.e2e.api_world import World, make_world
from tests.e2e.test_vault_keys import tree_digest
from tests.s3lab import Rgw
from vmvault import documents
from vmvault.api import models
from vmvault.bootstrap import bootstrap
from vmvault.dataplane.keys import KeySet
from vmvault.domain import paper_key
from vmvault.domain.access import Role
from vmvault.domain.errors import InvalidInput, VaultAlreadyAttached
from vmvault.domain.vault import s3_location
from vmvault.hypervisor.memory import MemoryBackupDriver

WEB = "00000000-0000-0000-0000-0000000000aa"
DB = "00000000-0000-0000-0000-0000000000bb"
PASS = {"VMVAULT_PASSPHRASE": "old horse"}
#: what a point's catalog row has that its manifest has not (docs/disaster-recovery.md): the
#: job that wrote it, and per disk the image format and why it was read in full or not
JOB_FIELDS = ("job_id", "warnings")
DISK_FIELDS = ("format", "reason")


def written_world(home: Path, vault_dir: Path, *, encrypt: bool = False) -> World:
    """Vault ``main`` in ``vault_dir``; ``web`` backed up twice (full, then incremental after
    a write), ``web`` and ``db`` once more as one backup set."""
    w = make_world(home, PASS if encrypt else None)
    w.services.vaults.create("main", "local", str(vault_dir), encrypt=encrypt)
    back_up(w)
    return w


def back_up(w: World) -> None:
    web, db = w.add_vm("web", WEB), w.add_vm("db", DB)
    svc = w.services
    assert svc.inventory.discover("main").job.state.value == "completed"
    for outcome in svc.inventory.register("main", ["web", "db"], allow_crash_consistent=True):
        assert outcome.job.state.value in ("completed", "completed-with-warnings"), outcome.job
    [full] = svc.backups.backup("main", ["web"])
    assert full.job.state.value == "completed", full.job.message
    web.disks[0].write(4 << 20, b"changed" * 1000)
    [incr] = svc.backups.backup("main", ["web"])
    assert incr.job.state.value == "completed", incr.job.message
    db.disks[1].write(0, b"db" * 5000)
    done = svc.backup_sets.backup_set("main", ["web", "db"])
    assert done.job.state.value == "completed", done.job.message


def points_of(services: Any) -> list[dict[str, Any]]:
    docs = [documents.point_doc(p) for p in services.point_listing.list_points("main", None)]
    return [comparable(d) for d in docs]


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A point document without what the storage does not hold."""
    disks = [{k: v for k, v in d.items() if k not in DISK_FIELDS} for d in doc["disks"]]
    return {k: v for k, v in doc.items() if k not in JOB_FIELDS} | {"disks": disks}


def fresh(home: Path, env: dict[str, str] | None = None) -> World:
    """A new machine: an empty catalog, no VM defined on its (in-memory) host."""
    return make_world(home, env)


def test_a_local_vault_is_rebuilt_in_an_empty_home_and_restores_bit_exact(
    tmp_path: Path,
) -> None:
    old = written_world(tmp_path / "old", tmp_path / "vault")
    new = fresh(tmp_path / "new")
    before = points_of(old.services)
    report = new.services.vault_attach.attach("main", "local", str(tmp_path / "vault"))
    assert (report.vms, report.vms_new, report.points, report.copies) == (2, 2, 4, 0)
    assert report.bytes_logical == sum(p["bytes_logical"] for p in before) > 0
    assert report.bytes_stored > 0 and report.keys_from == "config"
    assert report.recorded_name == "main" and not report.skipped
    # the API's model names exactly the document's keys (a missing one would be dropped)
    assert set(documents.attach_doc(report)) == set(models.AttachDoc.model_fields)
    # the same points, field for field (but the job that wrote them)
    assert points_of(new.services) == before
    incr = next(p for p in before if p["checkpoint"] and not p["set_id"])
    assert before[-1]["disks"][0]["incremental"] is False
    assert any(p["disks"][0]["incremental"] for p in points_of(new.services))
    assert {p["set_id"] for p in before if p["set_id"]} == {
        p["set_id"] for p in points_of(new.services) if p["set_id"]
    }
    assert incr
    # the VMs: known from their points, on no host of this catalog yet
    with new.services.vaults.uow() as u:
        vms = {vm.name: vm for vm in u.vms.all()}
    assert set(vms) == {"web", "db"} and all(vm.vanished_at is not None for vm in vms.values())
    assert all(vm.state.value == "discovered" for vm in vms.values())

    # restore from the rebuilt catalog, without the original host: bit-exact
    newest_web = new.services.point_listing.list_points("main", "web")[0]
    out = tmp_path / "out"
    done = new.services.points.restore_disks("web", newest_web.id, str(out), fmt="raw")
    assert done.job.state.value == "completed", done.job.message
    web_disks = old.hv.domains[WEB].disks
    for disk in web_disks:
        assert (out / f"web-{disk.target}.raw").read_bytes() == bytes(disk.data)


def test_rediscovery_relinks_the_vm_and_its_next_backup_is_full_and_says_why(
    tmp_path: Path,
) -> None:
    written_world(tmp_path / "old", tmp_path / "vault")
    new = fresh(tmp_path / "new")
    new.services.vault_attach.attach("main", "local", str(tmp_path / "vault"))
    # the same VM (same uuid) defined on this machine's host: discovery re-links it
    new.add_vm("web", WEB)
    outcome = new.services.inventory.discover("main")
    assert outcome.result is not None and [vm.uuid for vm in outcome.result.changed] == [WEB]
    svc = new.services
    [reg] = svc.inventory.register("main", ["web"], allow_crash_consistent=True)
    assert reg.job.state.value in ("completed", "completed-with-warnings")
    [b] = svc.backups.backup("main", ["web"])
    assert b.job.state.value == "completed", b.job.message
    assert b.result is not None and not any(d.incremental for d in b.result.disks)
    with svc.vaults.uow() as u:
        log = "\n".join(u.jobs.log(b.job.id))
    assert "missing in libvirt and not in the catalog" in log, log


def test_a_vault_of_copies_is_recorded_as_holding_the_points_the_catalog_has(
    tmp_path: Path,
) -> None:
    old = written_world(tmp_path / "old", tmp_path / "vault")
    old.services.vaults.create("offsite", "local", str(tmp_path / "offsite"))
    [copied] = old.services.copies.copy("main", "offsite", ["web"])
    assert copied.job.state.value == "completed", copied.job.message
    web_points = {p.id for p in old.services.point_listing.list_points("main", "web")}
    new = fresh(tmp_path / "new")
    first = new.services.vault_attach.attach("main", "local", str(tmp_path / "vault"))
    second = new.services.vault_attach.attach("offsite", "local", str(tmp_path / "offsite"))
    assert (first.points, first.copies) == (4, 0)
    # the offsite vault holds copies of points the catalog knows: held there too
    assert (second.vms, second.vms_new, second.points, second.copies) == (1, 0, 0, 3)
    held = new.services.point_listing.holders(sorted(web_points))
    assert {pid: h.vaults for pid, h in held.items()} == {
        pid: ["main", "offsite"] for pid in web_points
    }
    # and a restore may read from the copy
    newest = new.services.point_listing.list_points("offsite", "web")[0]
    out = tmp_path / "out"
    done = new.services.points.restore_disks(
        "web", newest.id, str(out), fmt="raw", from_vault="offsite"
    )
    assert done.job.state.value == "completed", done.job.message
    for disk in old.hv.domains[WEB].disks:
        assert (out / f"web-{disk.target}.raw").read_bytes() == bytes(disk.data)


def test_refusals_write_nothing(tmp_path: Path) -> None:
    written_world(tmp_path / "old", tmp_path / "vault")
    new = fresh(tmp_path / "new")
    api = new.client(Role.CONTRIBUTOR)

    def refused(body: dict[str, Any], status: int, code: str) -> None:
        r = api.post("/api/v1/vaults/attach", json=body)
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code, r.json()
        assert api.get("/api/v1/vaults").json() in ([], [main_doc])

    main_doc = None
    (tmp_path / "empty").mkdir()
    body = {"name": "main", "location": "local", "path": str(tmp_path / "empty")}
    refused(body, 400, "NOT_A_VAULT")
    refused(body | {"path": str(tmp_path / "nowhere")}, 400, "NOT_A_VAULT")
    refused(body | {"path": str(tmp_path / "vault"), "paper_key": "x"}, 400, "INVALID_INPUT")
    refused(body | {"path": str(tmp_path / "vault"), "extra": 1}, 400, "INVALID_INPUT")
    assert new.client(Role.OPERATOR).post("/api/v1/vaults/attach", json=body).status_code == 403
    r = api.post("/api/v1/vaults/attach", json=body | {"path": str(tmp_path / "vault")})
    assert r.status_code == 201, r.text
    assert (r.json()["vms"], r.json()["points"]) == (2, 4)
    main_doc = api.get("/api/v1/vaults").json()[0]
    assert main_doc["path"] == str(tmp_path / "vault")
    # twice: refused, whatever the name
    refused(body | {"path": str(tmp_path / "vault")}, 409, "VAULT_EXISTS")
    refused(
        body | {"name": "again", "path": str(tmp_path / "vault")}, 409, "VAULT_ALREADY_ATTACHED"
    )
    assert len(new.services.point_listing.list_points("main", None)) == 4


def test_an_encrypted_vault_is_attached_with_its_paper_key_by_the_cli(
    cli: CliRunner, home: Path, tmp_path: Path
) -> None:
    old = written_world(tmp_path / "old", tmp_path / "vault", encrypt=True)
    paper = tmp_path / "paper.txt"
    paper.write_text(paper_key.render(old.services.vault_keys.export("main")))
    keys = KeySet.generate()  # another vault's keys: a valid paper key, not this vault's
    foreign = tmp_path / "foreign.txt"
    foreign.write_text(
        paper_key.render(paper_key.PaperKey("main", keys.fingerprint(), keys.packed()))
    )
    args = ("vault", "attach", "main", "--location", "local", f"--path={tmp_path / 'vault'}")
    new_pass = {"VMVAULT_NEW_PASSPHRASE": "new battery"}

    for extra, env, code in [
        ((), new_pass, "VAULT_KEY_REQUIRED"),
        ((f"--paper-key={foreign}",), new_pass, "PAPER_KEY_MISMATCH"),
        ((f"--paper-key={paper}",), {}, "INVALID_INPUT"),  # no new passphrase
        ((f"--key-file={old.services.vaults.resolve('main').key_file}",), {"VMVAULT_PASSPHRASE": "no"},
         "WRONG_PASSPHRASE"),
    ]:  # fmt: skip
        r = cli(*args, *extra, env=env)
        assert r.code == 2 and f"error {code}" in r.stderr, (extra, r.stderr)
        assert "Traceback" not in r.stderr
        assert not (home / "keys").exists() or not any((home / "keys").iterdir())
    assert cli("vault", "list", "--json").json() == []

    stored = tree_digest(tmp_path / "vault")
    r = cli(*args, f"--paper-key={paper}", "--json", env=new_pass)
    assert r.code == 0, r.stderr
    assert tree_digest(tmp_path / "vault") == stored  # attach only reads the storage
    doc = r.json()
    assert (doc["vms"], doc["points"], doc["keys_from"]) == (2, 4, "paper-key")
    assert doc["vault"]["encrypted"] and doc["vault"]["key_file"] == str(home / "keys/main.key")
    listed = cli("points", "list", "--vault", "main", "--json", env={"VMVAULT_PASSPHRASE": "x"})
    assert [comparable(p) for p in listed.json()] == points_of(old.services)
    assert cli(*args, f"--paper-key={paper}", env=new_pass).code == 2  # twice: refused
    show = cli("vault", "show", "main", "--json").json()
    assert show["path"] == str(tmp_path / "vault") and show["storage"] == "local"

    # the new key file opens it with the new passphrase: verify every point
    r = cli("verify", "--all", "--vault", "main", env={"VMVAULT_PASSPHRASE": "new battery"})
    assert r.code == 0, r.stdout + r.stderr


def test_an_encrypted_vault_opens_with_a_copy_of_its_key_file_and_its_passphrase(
    tmp_path: Path,
) -> None:
    old = written_world(tmp_path / "old", tmp_path / "vault", encrypt=True)
    saved = tmp_path / "saved.key"  # the copy kept offline
    saved.write_bytes(Path(str(old.services.vaults.resolve("main").key_file)).read_bytes())
    new = fresh(tmp_path / "new", PASS)
    report = new.services.vault_attach.attach(
        "main", "local", str(tmp_path / "vault"), key_file=str(saved)
    )
    assert (report.keys_from, report.points) == ("key-file", 4)
    assert report.vault.key_file == str(saved)  # used where it is
    assert points_of(new.services) == points_of(old.services)
    # a key file already at VMVAULT_HOME/keys/NAME.key is found without the option
    third = fresh(tmp_path / "third", PASS)
    (tmp_path / "third" / "keys").mkdir(parents=True)
    (tmp_path / "third" / "keys" / "main.key").write_bytes(saved.read_bytes())
    assert third.services.vault_attach.attach("main", "local", str(tmp_path / "vault")).points == 4
    newest = third.services.point_listing.list_points("main", "db")[0]
    done = third.services.points.restore_disks("db", newest.id, str(tmp_path / "o"), fmt="raw")
    assert done.job.state.value == "completed", done.job.message
    for disk in old.hv.domains[DB].disks:
        assert (tmp_path / "o" / f"db-{disk.target}.raw").read_bytes() == bytes(disk.data)


def test_an_s3_vault_is_attached_from_its_bucket(
    rgw: Rgw, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = rgw.bucket("attach")
    where = s3_location(rgw.endpoint, bucket, "vaults/main")
    for key, value in rgw.env().items():
        monkeypatch.setenv(key, value)
    old = make_world(tmp_path / "old")
    old.services = real_s3(old)
    old.services.vaults.create("main", "local", None, s3=where)
    back_up(old)
    before = points_of(old.services)
    new = make_world(tmp_path / "new")
    new.services = real_s3(new)
    report = new.services.vault_attach.attach("main", "local", None, where)
    assert (report.vms, report.points) == (2, 4)
    assert points_of(new.services) == before
    show = new.services.vaults.show("main").vault
    assert show.s3 is not None and (show.s3.bucket, show.s3.prefix) == (bucket, "vaults/main/")
    other = replace(where, prefix="vaults/")
    with pytest.raises(InvalidInput, match="overlaps"):
        new.services.vault_attach.attach("two", "local", None, other)
    with pytest.raises(VaultAlreadyAttached):
        new.services.vault_attach.attach("two", "local", None, where)


def real_s3(w: World) -> Any:
    """The world's services with the real S3 backend (the RGW) instead of memory buckets."""
    return bootstrap(
        w.settings,
        hypervisor=w.hv,
        backup_driver=MemoryBackupDriver(w.hv),
        restore_driver=w.restore_driver,
        host_files=w.files,
    )
