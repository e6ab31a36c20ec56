"""Fixtures for the data path: small vaults (64 KiB chunks) and disk images built chunk by chunk."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from vmvault.dataplane import (
    DiskBackupResult,
    DiskEntry,
    FileSource,
    Manifest,
    VaultStore,
    backup_disk,
    keys,
)
from vmvault.dataplane.index import DiskIndex
from vmvault.storage.local import LocalBackend

CS = 64 << 10  # chunk size of the test vaults


@pytest.fixture(autouse=True)
def _cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "SCRYPT_N", 2**12)


@pytest.fixture()
def store(tmp_path: Path) -> VaultStore:
    return VaultStore.create(tmp_path / "vault", chunk_size=CS)


def chunk_bytes(kind: str | bytes, length: int = CS, seed: int = 0) -> bytes:
    """``"zero"``, ``"rand"`` (seeded), ``"text"`` (compressible) or explicit bytes."""
    if isinstance(kind, bytes):
        return kind[:length].ljust(length, b"\0")
    if kind == "zero":
        return bytes(length)
    if kind == "rand":
        return random.Random(seed).randbytes(length)
    if kind == "text":
        line = f"line {seed} of a compressible chunk\n".encode()
        return (line * (length // len(line) + 1))[:length]
    raise ValueError(kind)


def make_image(path: Path, layout: Sequence[tuple[str, int]], tail: int = 0) -> bytes:
    """Write an image of ``len(layout)`` chunks (+ a partial ``tail``); zero chunks are holes.

    ``layout`` items are ``(kind, seed)``; returns the full content.
    """
    parts = [chunk_bytes(kind, CS, seed) for kind, seed in layout]
    if tail:
        parts.append(chunk_bytes("rand", tail, seed=99))
    content = b"".join(parts)
    with open(path, "wb") as fh:
        fh.truncate(len(content))
        for i, part in enumerate(parts):
            if any(part):
                fh.seek(i * CS)
                fh.write(part)
    return content


def backup_point(
    store: VaultStore,
    point_id: str,
    disks: dict[str, Path],
    *,
    previous: dict[str, DiskIndex] | None = None,
    dirty: dict[str, list[tuple[int, int]]] | None = None,
    vm: str = "vm1",
    parent: str | None = None,
    then: Callable[[], object] | None = None,
) -> dict[str, DiskBackupResult]:
    """A whole recovery point, as the backup service does it: chunks, indexes, manifest.

    ``parent``: incremental from that point as the service reads it (the GC epoch, then its
    manifest, ``VaultStore.read_parent``, then its indexes); ``previous`` alone: from these
    indexes, without an epoch (each reused chunk touched).  ``then()`` runs once the parent
    is read, before the disks are (e.g. the parent deleted mid-backup)."""
    epoch = None
    if parent is not None:
        m, epoch = store.read_parent(parent)
        previous = {target: store.read_point_index(m, target) for target in disks}
    if then is not None:
        then()
    results: dict[str, DiskBackupResult] = {}
    entries: list[DiskEntry] = []
    with store.writer(point_id):
        for target, image in disks.items():
            with FileSource(image) as src:
                r = backup_disk(
                    store,
                    src,
                    previous=(previous or {}).get(target),
                    dirty=(dirty or {}).get(target),
                    epoch=epoch,
                )
            results[target] = r
            d = store.write_index(point_id, target, r.index)
            entries.append(
                DiskEntry(target, r.index.disk_size, f"{target}.fidx", d, r.bytes_read, r.bytes_new)
            )
        store.write_manifest(
            Manifest(
                point_id=point_id,
                vm_uuid=f"uuid-{vm}",
                vm_name=vm,
                created_at="2026-11-22T10:00:00+00:00",
                domain_xml=f"<domain><name>{vm}</name></domain>",
                method="offline",
                consistency="crash-consistent",
                disks=entries,
            )
        )
    return results


def vault_dir(store: VaultStore) -> Path:
    """The directory of a vault on the local backend (these tests look at its files)."""
    assert isinstance(store.backend, LocalBackend)
    return store.backend.root


def chunk_path(store: VaultStore, cid: bytes) -> Path:
    return vault_dir(store) / store.chunks.key(cid)


def manifest_file(store: VaultStore, point_id: str) -> Path:
    return vault_dir(store) / store.manifest_key(point_id)


def index_file(store: VaultStore, point_id: str, target: str) -> Path:
    return vault_dir(store) / store.index_key(point_id, target)


def chunk_files(store: VaultStore) -> list[Path]:
    """Every file under ``chunks/``: chunk files and temporary files."""
    return [p for p in (vault_dir(store) / "chunks").rglob("*") if p.is_file()]


def age(path: Path, seconds: float = 7200) -> None:
    """Make a file look written ``seconds`` ago."""
    t = os.stat(path).st_mtime - seconds
    os.utime(path, (t, t))


def sample_manifest(point: str = "p1") -> Manifest:
    return Manifest(
        point_id=point,
        vm_uuid="u-1",
        vm_name="web-1",
        created_at="2026-11-22T10:00:00+00:00",
        domain_xml="<domain>ünïcode</domain>",
        method="guest-quiesce",
        consistency="application-consistent",
        frozen_ms=120,
        checkpoint="vmvault-1",
        disks=[DiskEntry("vdb", 10, excluded=True, reason="device='lun'")],
        extra={"set_id": "s-1", "n": [1, 2.5, None]},
    )
