"""Encrypted vaults: keys in a passphrase-protected key file outside the vault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.dataplane.conftest import (
    CS,
    backup_point,
    chunk_bytes,
    chunk_path,
    make_image,
    manifest_file,
    sample_manifest,
    vault_dir,
)
from vmvault.dataplane import VaultStore, restore_disk, verify_point
from vmvault.dataplane.chunk import FLAG_ENCRYPTED
from vmvault.domain.errors import (
    ChunkCorrupt,
    InvalidInput,
    KeyFileInvalid,
    KeyFileMismatch,
    KeyFileMissing,
    ManifestCorrupt,
    PassphraseRequired,
    WrongPassphrase,
)


@pytest.fixture()
def enc(tmp_path: Path) -> VaultStore:
    return VaultStore.create(
        tmp_path / "vault", chunk_size=CS, passphrase="correct horse", key_file=tmp_path / "k.key"
    )


def test_encrypted_round_trip(enc: VaultStore, tmp_path: Path) -> None:
    assert enc.encrypted
    config = json.loads((vault_dir(enc) / "config").read_text())
    assert "keys" not in config and config["encryption"]["algorithm"] == "aes-256-gcm"
    key_doc = json.loads((tmp_path / "k.key").read_text())
    assert key_doc["kdf"]["name"] == "scrypt" and (tmp_path / "k.key").stat().st_mode & 0o077 == 0
    image = tmp_path / "d.img"
    content = make_image(image, [("text", 1), ("zero", 0), ("rand", 2)], tail=77)
    backup_point(enc, "p1", {"vda": image})
    for cid in enc.iter_chunk_ids():
        blob = chunk_path(enc, cid).read_bytes()
        assert blob[5] & FLAG_ENCRYPTED
        assert b"compressible chunk" not in blob
    manifest_text = manifest_file(enc, "p1").read_text()
    assert "vm1" not in manifest_text and "domain" not in manifest_text
    again = VaultStore.open(vault_dir(enc), passphrase="correct horse", key_file=tmp_path / "k.key")
    m = again.read_manifest("p1")
    assert m.vm_name == "vm1"
    out = tmp_path / "out.raw"
    restore_disk(again, again.read_point_index(m, "vda"), out)
    assert out.read_bytes() == content
    assert verify_point(again, "p1").ok


def test_wrong_passphrase_is_refused_cleanly(enc: VaultStore, tmp_path: Path) -> None:
    with pytest.raises(WrongPassphrase) as exc:
        VaultStore.open(vault_dir(enc), passphrase="Correct horse", key_file=tmp_path / "k.key")
    assert exc.value.code == "WRONG_PASSPHRASE" and exc.value.kind == "usage"
    assert str(tmp_path / "k.key") in exc.value.text
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_missing_or_foreign_key_file_and_no_passphrase(enc: VaultStore, tmp_path: Path) -> None:
    with pytest.raises(KeyFileMissing):
        VaultStore.open(vault_dir(enc), passphrase="correct horse", key_file=tmp_path / "nope.key")
    with pytest.raises(KeyFileMissing):
        VaultStore.open(vault_dir(enc), passphrase="correct horse")
    with pytest.raises(PassphraseRequired):
        VaultStore.open(vault_dir(enc), key_file=tmp_path / "k.key")
    VaultStore.create(
        tmp_path / "other", chunk_size=CS, passphrase="x", key_file=tmp_path / "o.key"
    )
    with pytest.raises(KeyFileMismatch):
        VaultStore.open(vault_dir(enc), passphrase="x", key_file=tmp_path / "o.key")
    (tmp_path / "bad.key").write_text("{}")
    with pytest.raises(KeyFileInvalid):
        VaultStore.open(vault_dir(enc), passphrase="x", key_file=tmp_path / "bad.key")


def test_create_needs_a_new_key_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        VaultStore.create(tmp_path / "v", chunk_size=CS, passphrase="x")
    (tmp_path / "k.key").write_text("old")
    with pytest.raises(InvalidInput):
        VaultStore.create(
            tmp_path / "v", chunk_size=CS, passphrase="x", key_file=tmp_path / "k.key"
        )
    assert (tmp_path / "k.key").read_text() == "old"
    assert not (tmp_path / "v" / "config").exists()


def test_encrypted_chunk_and_manifest_tampering(enc: VaultStore) -> None:
    cid, _ = enc.put_chunk(chunk_bytes("text", CS))
    path = chunk_path(enc, cid)
    blob = bytearray(path.read_bytes())
    blob[20] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(ChunkCorrupt):
        enc.get_chunk(cid)
    enc.write_manifest(sample_manifest("p1"))
    mpath = manifest_file(enc, "p1")
    doc = json.loads(mpath.read_text())
    doc["ciphertext"] = doc["ciphertext"][:-8] + "AAAAAAA="
    mpath.write_text(json.dumps(doc))
    with pytest.raises(ManifestCorrupt):
        enc.read_manifest("p1")


def test_replacing_a_key_file_leaves_the_old_one_when_the_rename_fails(
    enc: VaultStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from vmvault.dataplane import keys

    path = tmp_path / "k.key"
    before = path.read_bytes()

    real = os.replace

    def fail(src: object, dst: object) -> None:  # only the final rename over the key file
        if Path(str(dst)) == path:
            raise OSError(5, "Input/output error")
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(keys.os, "replace", fail)
    with pytest.raises(OSError):
        keys.replace_key_file(path, enc.keys, "new one", n=2**14)
    assert path.read_bytes() == before and not path.with_name("k.key.new").exists()
    monkeypatch.setattr(keys.os, "replace", real)
    keys.replace_key_file(path, enc.keys, "new one", n=2**14)
    assert keys.read_key_file(path, "new one").fingerprint() == enc.keys.fingerprint()
    with pytest.raises(WrongPassphrase):
        keys.read_key_file(path, "correct horse")
