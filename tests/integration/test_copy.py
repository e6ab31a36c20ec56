"""Copies on the real lab: a guest backed up into vault ``main``, ``vmvault copy`` into an
encrypted second vault (re-encoded in memory with its own keys), a disks-only restore
``--from-vault`` the copy whose files match what the guest wrote; a second copy sends only
what changed; the copy vault's files hold none of the guest's data in clear."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CliRunner
from tests.integration.guests import image_file, md5_in_image, write_file
from tests.integration.test_backup import N, backup, setup

pytestmark = pytest.mark.lab

ENV = {"VMVAULT_PASSPHRASE": "copy test passphrase", "VMVAULT_VAULT": "main"}


def restore_from(cli: CliRunner, vm: str, point: str, target: Path, vault: str) -> list[Path]:
    r = cli("restore", vm, "--point", point, "--disks-only", "--dir", str(target), "--format",
            "raw", "--from-vault", vault, "--json", env=ENV, timeout=600)  # fmt: skip
    assert r.code == 0, r.stdout + r.stderr
    assert r.json()["vault"] == vault
    return [Path(f) for f in r.json()["files"]]


def test_copy_to_a_second_vault_and_restore_from_it(
    lab: dict, cli: CliRunner, tmp_path: Path, home: Path
) -> None:
    vm = N["standard"]
    setup(cli, vm, env=ENV)
    a = write_file(vm, "/data/copy-a.bin", 6)
    p1 = backup(cli, vm, env=ENV)["point"]
    offsite = tmp_path / "offsite"
    r = cli("vault", "create", "offsite", "--location", "far", "--path", str(offsite),
            "--encrypt", env=ENV)  # fmt: skip
    assert r.code == 0, r.stderr

    r = cli("copy", "--from", "main", "--to", "offsite", vm, "--json", env=ENV, timeout=600)
    assert r.code == 0, r.stdout + r.stderr
    [job] = r.json()
    assert job["type"] == "copy" and job["state"] == "completed"
    first = job["copy"]
    assert first["points"] == [p1["id"]] and first["mode"] == "re-encoded"
    assert first["chunks_sent"] > 0 and first["bytes_sent"] > 0

    listed = cli("points", "list", vm, "--vault", "offsite", "--json", env=ENV).json()
    assert [p["id"] for p in listed] == [p1["id"]]
    assert listed[0]["vaults"] == ["main", "offsite"]

    files = restore_from(cli, vm, p1["id"], tmp_path / "r1", "offsite")
    vda = next(f for f in files if f.name.endswith("vda.raw"))
    assert md5_in_image(vda, "/copy-a.bin") == a

    # a second point: only what changed travels
    b = write_file(vm, "/data2/copy-b.bin", 3)
    p2 = backup(cli, vm, env=ENV)["point"]
    r = cli("copy", "--from", "main", "--to", "offsite", "--all", "--json", env=ENV, timeout=600)
    assert r.code == 0, r.stdout + r.stderr
    second = r.json()[0]["copy"]
    assert second["points"] == [p2["id"]]
    assert 0 < second["chunks_sent"] < first["chunks_sent"]
    assert second["chunks_present"] > second["chunks_sent"]
    files = restore_from(cli, vm, p2["id"], tmp_path / "r2", "offsite")
    vdb = next(f for f in files if f.name.endswith("vdb.raw"))
    assert md5_in_image(vdb, "/copy-b.bin") == b

    # nothing of the guest's files in clear in the encrypted copy vault (random data: in an
    # unencrypted vault it would be stored as it is)
    marker = image_file(vda, "/copy-a.bin")[4096:4160]
    assert len(marker) == 64
    for f in offsite.rglob("*"):
        if f.is_file():
            assert marker not in f.read_bytes()

    r = cli("restore", vm, "--point", p2["id"], "--disks-only", "--dir", str(tmp_path / "r3"),
            "--from-vault", "nowhere", env=ENV)  # fmt: skip
    assert r.code == 2 and "POINT_NOT_IN_VAULT" in r.stderr
