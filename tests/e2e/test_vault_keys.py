"""``vmvault vault key``: paper key export (text + QR), import after the key file is lost,
passphrase change; every refusal leaves the key file as it was (real CLI, real vault)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CliRunner
from tests.unit.dataplane.conftest import backup_point, make_image
from vmvault.dataplane import VaultStore, restore_disk
from vmvault.domain import paper_key
from vmvault.domain.errors import WrongPassphrase

OLD, NEW = {"VMVAULT_PASSPHRASE": "old horse"}, {"VMVAULT_NEW_PASSPHRASE": "new battery"}


def tree_digest(root: Path) -> str:
    """What the vault holds (names and bytes): key operations must never change it."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture()
def vault(cli: CliRunner, tmp_path: Path) -> tuple[Path, Path, bytes]:
    """An encrypted vault ``v`` with one point; returns (vault dir, key file, disk content)."""
    where, key = tmp_path / "vault", tmp_path / "keys" / "v.key"
    r = cli("vault", "create", "v", "--location", "local", "--encrypt", f"--path={where}",
            f"--key-file={key}", env=OLD)  # fmt: skip
    assert r.code == 0, r.stderr
    store = VaultStore.open(where, passphrase=OLD["VMVAULT_PASSPHRASE"], key_file=key)
    image = tmp_path / "d.img"
    content = make_image(image, [("text", 1), ("rand", 2)], tail=5)
    backup_point(store, "p1", {"vda": image})
    return where, key, content


def restored(where: Path, key: Path, passphrase: str, out: Path) -> bytes:
    store = VaultStore.open(where, passphrase=passphrase, key_file=key)
    m = store.read_manifest("p1")
    restore_disk(store, store.read_point_index(m, "vda"), out)
    return out.read_bytes()


def test_lost_key_file_is_recovered_from_the_paper_key_and_its_qr_code(
    cli: CliRunner, home: Path, vault: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    assert shutil.which("zbarimg"), "zbar-tools: installed by scripts/install-system.sh"
    where, key, content = vault
    before = tree_digest(where)
    qr = tmp_path / "key.png"
    r = cli("vault", "key", "export", "v", f"--qr={qr}", env=OLD)
    assert r.code == 0, r.stderr
    assert r.stdout.startswith(paper_key.HEADER) and "keep it offline" in r.stderr
    assert qr.stat().st_mode & 0o077 == 0
    decoded = subprocess.run(["zbarimg", "-q", "--raw", str(qr)], capture_output=True, text=True)
    assert decoded.returncode == 0, decoded.stderr
    from_qr, from_text = paper_key.parse(decoded.stdout), paper_key.parse(r.stdout)
    assert from_qr.secret == from_text.secret and from_text.vault == "v"
    (tmp_path / "paper.txt").write_text(r.stdout)
    (tmp_path / "qr.txt").write_text(decoded.stdout)

    key.unlink()  # the key file is lost
    r = cli("vault", "key", "import", "v", f"--from={tmp_path / 'paper.txt'}", env=NEW)
    assert r.code == 0, r.stderr
    assert restored(where, key, "new battery", tmp_path / "o1") == content
    with pytest.raises(WrongPassphrase):
        VaultStore.open(where, passphrase="old horse", key_file=key)

    # the QR code's text works as well (here: stdin), with yet another passphrase
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env |= {"VMVAULT_HOME": str(home), "VMVAULT_NEW_PASSPHRASE": "third"}
    p = subprocess.run(
        [sys.executable, "-m", "vmvault", "vault", "key", "import", "v"],
        input=(tmp_path / "qr.txt").read_text(), capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert restored(where, key, "third", tmp_path / "o2") == content
    assert tree_digest(where) == before  # not one object of the vault changed
    assert not key.with_name("v.key.new").exists()


def test_a_mistyped_or_foreign_paper_key_is_refused_and_nothing_is_written(
    cli: CliRunner, vault: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    _, key, _ = vault
    text = cli("vault", "key", "export", "v", env=OLD).stdout
    lines = text.splitlines()
    row = next(i for i, ln in enumerate(lines) if ln.strip().startswith("3 "))
    pos = lines[row].index("-") - 1
    swap = "A" if lines[row][pos] != "A" else "B"
    lines[row] = lines[row][:pos] + swap + lines[row][pos + 1 :]
    (tmp_path / "typo.txt").write_text("\n".join(lines))
    key_bytes = key.read_bytes()
    r = cli("vault", "key", "import", "v", f"--from={tmp_path / 'typo.txt'}", env=NEW)
    assert r.code == 2 and "error PAPER_KEY_INVALID" in r.stderr and "line 3" in r.stderr
    assert "Traceback" not in r.stderr

    other = tmp_path / "other"
    r = cli("vault", "create", "w", "--location", "local", "--encrypt", f"--path={other}",
            f"--key-file={tmp_path / 'w.key'}", env=OLD)  # fmt: skip
    assert r.code == 0, r.stderr
    (tmp_path / "w.txt").write_text(cli("vault", "key", "export", "w", env=OLD).stdout)
    r = cli("vault", "key", "import", "v", f"--from={tmp_path / 'w.txt'}", env=NEW)
    assert r.code == 2 and "error PAPER_KEY_MISMATCH" in r.stderr

    (tmp_path / "good.txt").write_text(text)
    r = cli("vault", "key", "import", "v", f"--from={tmp_path / 'good.txt'}")  # no new one
    assert r.code == 2 and "the new passphrase" in r.stderr
    assert key.read_bytes() == key_bytes  # none of the three wrote anything


def test_change_passphrase_rewraps_only_with_the_current_one(
    cli: CliRunner, vault: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    where, key, content = vault
    before, key_bytes = tree_digest(where), key.read_bytes()
    wrong = {"VMVAULT_PASSPHRASE": "not it", **NEW}
    r = cli("vault", "key", "change-passphrase", "v", env=wrong)
    assert r.code == 2 and "error WRONG_PASSPHRASE" in r.stderr
    assert key.read_bytes() == key_bytes

    r = cli("vault", "key", "change-passphrase", "v", env={**OLD, **NEW})
    assert r.code == 0, r.stderr
    assert restored(where, key, "new battery", tmp_path / "o") == content
    with pytest.raises(WrongPassphrase):
        VaultStore.open(where, passphrase="old horse", key_file=key)
    assert tree_digest(where) == before and key.stat().st_mode & 0o077 == 0


def test_an_unencrypted_vault_has_no_key_to_export(cli: CliRunner, tmp_path: Path) -> None:
    r = cli("vault", "create", "plain", "--location", "local", f"--path={tmp_path / 'p'}")
    assert r.code == 0, r.stderr
    for args in (["export", "plain"], ["change-passphrase", "plain"]):
        r = cli("vault", "key", *args, env={**OLD, **NEW})
        assert r.code == 2 and "error VAULT_NOT_ENCRYPTED" in r.stderr
