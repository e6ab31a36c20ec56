"""What a copy between two vaults costs: the data path of ``vmvault copy`` (dataplane/copy.py).

    .venv/bin/python bench/copy_point.py [--mib 512] [--dir /var/tmp] [--workers 4]

Backs up a synthetic image (``--mib`` MiB: a third random, a third text, a third zero) into a
local vault A (4 MiB chunks), then copies its point into local vaults B and prints one
Markdown row per case: as-stored (B shares A's key set), re-encoded (B has its own keys),
re-encoded into an encrypted B, and a copy whose chunks are half present in B already (chunks
sent must be half).  Columns: case, seconds, MiB/s of the point's stored chunks, chunks sent /
present, MiB sent, peak RSS of the process so far.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

from vmvault.dataplane import DiskEntry, FileSource, Manifest, VaultStore, backup_disk, keys
from vmvault.dataplane.copy import copy_point

CHUNK = 4 << 20


def make_image(path: Path, mib: int, seed: int) -> None:
    rnd = random.Random(seed)
    text = b"".join(f"row {i} of a table of numbers {i * 7}\n".encode() for i in range(200_000))
    with open(path, "wb") as fh:
        for i in range(mib // 4):
            kind = i % 3
            if kind == 0:
                fh.write(rnd.randbytes(CHUNK))
            elif kind == 1:
                at = rnd.randrange(len(text) - CHUNK)
                fh.write(text[at : at + CHUNK])
            else:
                fh.seek(CHUNK, 1)
        fh.truncate()


def point(store: VaultStore, point_id: str, image: Path) -> None:
    with store.writer(point_id):
        with FileSource(image) as src:
            r = backup_disk(store, src, workers=2)
        digest = store.write_index(point_id, "vda", r.index)
        store.write_manifest(
            Manifest(point_id, "u", "bench", "2026-12-02T00:00:00+00:00", "<domain/>",
                     "offline", "crash-consistent",
                     disks=[DiskEntry("vda", r.index.disk_size, "vda.fidx", digest)])
        )  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    keys.SCRYPT_N = 2**14
    root = Path(tempfile.mkdtemp(prefix="copy-bench-", dir=args.dir))
    try:
        image = root / "disk.img"
        make_image(image, args.mib, 1)
        a = VaultStore.create(root / "A", chunk_size=CHUNK)
        point(a, "p1", image)
        stored = a.chunk_usage().bytes
        print(f"point: {args.mib} MiB disk, {stored / 2**20:.0f} MiB of stored chunks")
        print("| case | s | MiB/s (stored) | chunks sent / present | MiB sent | peak RSS MiB |")
        print("|---|---|---|---|---|---|")

        twin = root / "B-twin"
        twin.mkdir()
        shutil.copy(root / "A" / "config", twin / "config")
        for sub in ("chunks", "indexes", "manifests", "locks"):
            (twin / sub).mkdir()
        cases = [
            ("as-stored (same keys)", VaultStore.open(twin)),
            ("re-encoded (own keys)", VaultStore.create(root / "B", chunk_size=CHUNK)),
            (
                "re-encoded into encrypted",
                VaultStore.create(
                    root / "C", chunk_size=CHUNK, passphrase="x", key_file=root / "c.key"
                ),
            ),
        ]
        half = VaultStore.create(root / "D", chunk_size=CHUNK)
        half_image = root / "half.img"
        shutil.copyfile(image, half_image)
        os.truncate(half_image, args.mib // 2 << 20)
        point(half, "h", half_image)
        cases.append(("re-encoded, half present", half))
        for label, dst in cases:
            t = time.monotonic()
            r = copy_point(a, dst, "p1", workers=args.workers)
            s = time.monotonic() - t
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"| {label} | {s:.2f} | {stored / 2**20 / s:.0f} | {r.chunks_sent} / "
                f"{r.chunks_present} | {r.bytes_sent / 2**20:.0f} | {rss:.0f} |"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
