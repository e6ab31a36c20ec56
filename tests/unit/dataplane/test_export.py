"""The NBD export of a point's disk: read by real clients (nbdcopy, qemu-img, qemu-io) from a
vault on disk, equal to a restore; a corrupt chunk fails the read (EIO), not the server;
a writable overlay takes writes and leaves the vault as it was."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from tests.unit.dataplane.conftest import CS, backup_point, chunk_path, make_image
from vmvault.dataplane import VaultStore, restore_disk
from vmvault.dataplane.export import ExportedDisk, Overlay
from vmvault.dataplane.nbd_server import NbdServer

LAYOUT = [("rand", 1), ("zero", 0), ("text", 2), ("rand", 3), ("rand", 1)]


def _point(store: VaultStore, tmp_path: Path) -> tuple[ExportedDisk, bytes]:
    content = make_image(tmp_path / "d.img", LAYOUT, tail=1536)
    backup_point(store, "p1", {"vda": tmp_path / "d.img"})
    m = store.read_manifest("p1")
    return ExportedDisk(store, store.read_point_index(m, "vda"), cache_bytes=2 * CS), content


def _vault_digest(store: VaultStore, tmp_path: Path) -> str:
    files = sorted(p for p in (tmp_path / "vault").rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def test_clients_read_the_point_as_restored(store: VaultStore, tmp_path: Path) -> None:
    disk, content = _point(store, tmp_path)
    restored = tmp_path / "r.raw"
    restore_disk(store, disk.index, restored)
    server = NbdServer(tmp_path / "s.sock", {"vda": disk})
    server.start()
    try:
        uri = f"nbd+unix:///vda?socket={tmp_path / 's.sock'}"
        subprocess.run(["nbdcopy", uri, str(tmp_path / "copy.raw")], check=True, timeout=60)
        assert (tmp_path / "copy.raw").read_bytes() == content == restored.read_bytes()
        same = subprocess.run(["qemu-img", "compare", "-f", "raw", str(restored), uri],
                              capture_output=True, timeout=60)  # fmt: skip
        assert same.returncode == 0, same.stdout
        # a read across chunk boundaries, then the cache: bounded to two chunks
        assert disk.pread(CS + 100, CS - 50) == content[CS - 50 : 2 * CS + 50]
        assert len(disk._cache) <= 2
        ro = subprocess.run(["qemu-io", "-f", "raw", "-c", "write 0 512", uri],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
        assert "Operation not permitted" in ro.stdout + ro.stderr or ro.returncode != 0
    finally:
        server.close()
        disk.close()
    assert not (tmp_path / "s.sock").exists()


def test_a_corrupt_chunk_fails_its_reads_only(store: VaultStore, tmp_path: Path) -> None:
    disk, _ = _point(store, tmp_path)
    bad = chunk_path(store, disk.index.ids[3])
    raw = bytearray(bad.read_bytes())
    raw[-1] ^= 0xFF
    bad.write_bytes(bytes(raw))
    errors: list[str] = []
    server = NbdServer(tmp_path / "s.sock", {"vda": disk}, on_error=errors.append)
    server.start()
    try:
        uri = f"nbd+unix:///vda?socket={tmp_path / 's.sock'}"
        failed = subprocess.run(["qemu-io", "-r", "-f", "raw", "-c", f"read {3 * CS} 4096", uri],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert "Input/output error" in failed.stdout + failed.stderr
        assert errors and "ChunkCorrupt" in errors[0], errors
        good = subprocess.run(["qemu-io", "-r", "-f", "raw", "-c", "read -P 0 65536 4096", uri],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert good.returncode == 0 and "Pattern verification failed" not in good.stdout
    finally:
        server.close()
        disk.close()


def test_the_overlay_takes_writes_and_the_vault_never_changes(
    store: VaultStore, tmp_path: Path
) -> None:
    disk, content = _point(store, tmp_path)
    before = _vault_digest(store, tmp_path)
    overlay = Overlay(disk, tmp_path / "o.overlay")
    server = NbdServer(tmp_path / "s.sock", {"vda": overlay})
    server.start()
    try:
        uri = f"nbd+unix:///vda?socket={tmp_path / 's.sock'}"
        w = subprocess.run(["qemu-io", "-f", "raw", "-c", f"write -P 0x5a {CS - 100} 300", uri],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        assert w.returncode == 0, w.stderr
        subprocess.run(["nbdcopy", uri, str(tmp_path / "copy.raw")], check=True, timeout=60)
        want = bytearray(content)
        want[CS - 100 : CS + 200] = b"\x5a" * 300
        assert (tmp_path / "copy.raw").read_bytes() == bytes(want)
    finally:
        server.close()
        overlay.close()
        disk.close()
    assert not (tmp_path / "o.overlay").exists()
    assert _vault_digest(store, tmp_path) == before
