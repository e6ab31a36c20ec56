"""The qcow2 writer: images QEMU accepts (qemu-img check) with the same content."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from tests.unit.dataplane.conftest import backup_point
from vmvault.dataplane import VaultStore, restore_disk

GiB = 1 << 30


def _qemu_img(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True)


def _write_at(path: Path, size: int, writes: list[tuple[int, bytes]]) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)
        for offset, data in writes:
            fh.seek(offset)
            fh.write(data)


@pytest.mark.parametrize("chunk_size", [64 << 10, 1 << 20])
def test_qcow2_across_l2_tables_with_sparse_clusters(tmp_path: Path, chunk_size: int) -> None:
    rng = random.Random(chunk_size)
    size = GiB + GiB // 2 + 3 * 4096  # three L2 tables, a partial last chunk
    writes = [
        (0, rng.randbytes(5000)),
        (512 * (1 << 20) - 100, rng.randbytes(300)),  # straddles the first L2 boundary
        (700 * (1 << 20) + 70_000, b"\1" * 10),  # one cluster of a 1 MiB chunk, rest zero
        (size - 3000, rng.randbytes(3000)),  # the end of the partial last chunk
    ]
    image = tmp_path / "d.img"
    _write_at(image, size, writes)
    store = VaultStore.create(tmp_path / "v", chunk_size=chunk_size)
    r = backup_point(store, "p1", {"vda": image})["vda"]
    out = tmp_path / "out.qcow2"
    restore_disk(store, r.index, out, fmt="qcow2")
    check = _qemu_img("check", "--output=json", str(out))
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    assert report.get("leaks", 0) == 0 and report.get("corruptions", 0) == 0
    cmp = _qemu_img("compare", "-f", "raw", "-F", "qcow2", str(image), str(out))
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    mapped = json.loads(_qemu_img("map", "--output=json", str(out)).stdout)
    data = sum(e["length"] for e in mapped if e["data"])
    assert data <= 6 * (64 << 10)  # only the clusters that hold data are allocated
    assert out.stat().st_blocks * 512 < 2 << 20


def test_qcow2_of_an_odd_size_disk_rounds_to_sectors(tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    image.write_bytes(b"\x07" * 1000)
    store = VaultStore.create(tmp_path / "v", chunk_size=64 << 10)
    r = backup_point(store, "p1", {"vda": image})["vda"]
    out = tmp_path / "out.qcow2"
    restore_disk(store, r.index, out, fmt="qcow2")
    info = json.loads(_qemu_img("info", "--output=json", str(out)).stdout)
    assert info["virtual-size"] == 1024
    raw = tmp_path / "back.raw"
    conv = _qemu_img("convert", "-f", "qcow2", "-O", "raw", str(out), str(raw))
    assert conv.returncode == 0, conv.stderr
    assert raw.read_bytes() == b"\x07" * 1000 + bytes(24)
    assert _qemu_img("check", str(out)).returncode == 0


def test_qcow2_of_an_empty_disk(tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    _write_at(image, 10 << 20, [])
    store = VaultStore.create(tmp_path / "v", chunk_size=64 << 10)
    r = backup_point(store, "p1", {"vda": image})["vda"]
    out = tmp_path / "out.qcow2"
    restore_disk(store, r.index, out, fmt="qcow2")
    assert _qemu_img("check", str(out)).returncode == 0
    assert _qemu_img("compare", "-f", "raw", "-F", "qcow2", str(image), str(out)).returncode == 0
