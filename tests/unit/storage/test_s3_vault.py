"""The data path on the S3 backend and the real RGW: a vault is created, backed up (full and
incremental), restored, verified and garbage-collected through the storage contract only; an
endpoint that vanishes mid-backup fails with STORAGE_UNREACHABLE; a backup's memory stays
bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.unit.dataplane.conftest import CS, backup_point, chunk_bytes, make_image
from tests.unit.storage.conftest import s3_backend
from vmvault.dataplane import VaultStore, collect_garbage, restore_disk, verify_point
from vmvault.dataplane.backup import backup_disk
from vmvault.dataplane.source import FileSource
from vmvault.domain.errors import InvalidInput, StorageUnreachable
from vmvault.storage.s3 import S3Backend


@pytest.fixture()
def s3(rgw: Any, monkeypatch: pytest.MonkeyPatch) -> S3Backend:
    for name, value in rgw.env().items():
        monkeypatch.setenv(name, value)
    return s3_backend(rgw, rgw.bucket("vault"))


def _age_chunks(backend: S3Backend, seconds: float = 7200) -> None:
    for info in list(backend.list_objects("chunks/")):
        backend.age_for_tests(info.key, seconds)


def test_backup_restore_verify_and_gc(s3: S3Backend, tmp_path: Path) -> None:
    store = VaultStore.create(s3, chunk_size=CS)
    with pytest.raises(InvalidInput):  # the config object is the vault's identity
        VaultStore.create(s3_backend_like(s3), chunk_size=CS)
    image = tmp_path / "d.img"
    content = make_image(image, [("rand", 1), ("zero", 0), ("text", 2), ("rand", 3)], tail=99)
    p1 = backup_point(store, "p1", {"vda": image})["vda"]
    out = tmp_path / "out.raw"
    again = VaultStore.open(s3_backend_like(s3))
    restore_disk(again, again.read_point_index(again.read_manifest("p1"), "vda"), out)
    assert out.read_bytes() == content and verify_point(again, "p1").ok
    assert {i.key.split("/")[0] for i in s3.list_objects()} == {
        "config",
        "chunks",
        "indexes",
        "manifests",
        "gc-epoch",
    }
    make_image(image, [("rand", 1), ("rand", 5)])  # the second chunk changed
    p2 = backup_point(
        store, "p2", {"vda": image}, previous={"vda": p1.index}, dirty={"vda": [(CS, CS)]}
    )["vda"]
    assert p2.chunks_reused == 1 and p2.chunks_new == 1
    stray, _ = store.put_chunk(chunk_bytes("rand", CS, seed=9))
    _age_chunks(s3)
    with store.writer("running") as w:  # a backup running during GC keeps what it touches
        assert store.touch_chunk(stray)
        report = collect_garbage(store, grace_seconds=0)
        assert report.writers == ["running"] and report.cutoff <= w.started_at
        assert report.chunks_removed == 0 and store.has_chunk(stray)
    _age_chunks(s3)
    report = collect_garbage(store, grace_seconds=0)
    assert report.chunks_removed == 1 and not store.has_chunk(stray)
    store.delete_point("p1")
    _age_chunks(s3)
    assert collect_garbage(store, grace_seconds=0).chunks_removed >= 1
    assert verify_point(store, "p2").ok


@contextmanager
def _requests(backend: S3Backend, *ops: str) -> Iterator[list[tuple[str, str]]]:
    """The (operation, key below the vault's prefix) of each ``ops`` request the backend
    sends meanwhile (the client's ``before-call`` hook: once per call, not per retry)."""
    seen: list[tuple[str, str]] = []
    hooks = backend.session.client.hooks
    prefix = backend.session.prefix

    def record(op: str, params: dict[str, Any], **_: Any) -> None:
        seen.append((op, str(params.get("Key") or "").removeprefix(prefix)))

    for op in ops:
        hooks.register(f"before-call.{op}", record)
    try:
        yield seen
    finally:
        for op in ops:
            hooks.unregister(f"before-call.{op}", record)


def test_a_no_change_incremental_sends_no_copy_object_for_its_reused_chunks(
    s3: S3Backend, tmp_path: Path
) -> None:
    """Its reused chunks cost one reuse list and two reads of the GC epoch, not one
    CopyObject each; GC keeps them through the list once the parent is gone; a GC delete step
    between the two epoch reads sends the next incremental back to one touch per chunk."""
    store = VaultStore.create(s3, chunk_size=CS)
    image = tmp_path / "d.img"
    content = make_image(image, [("rand", s) for s in range(8)])
    p1 = backup_point(store, "p1", {"vda": image})["vda"]
    chunks = {f"chunks/{cid.hex()[:2]}/{cid.hex()}" for cid in p1.index.ids}
    with _requests(s3, "CopyObject", "PutObject", "GetObject") as sent:
        p2 = backup_point(store, "p2", {"vda": image}, parent="p1", dirty={"vda": []})["vda"]
    assert p2.chunks_reused == 8 and p2.bytes_read == 0
    assert [key for op, key in sent if op == "CopyObject" and key.startswith("chunks/")] == []
    assert [op for op, key in sent if key.startswith("reuse/")] == ["PutObject"]
    assert [op for op, key in sent if key == "gc-epoch"] == ["GetObject", "GetObject"]
    store.delete_point("p1")  # the parent goes; its chunks look old; the list keeps them
    _age_chunks(s3)
    report = collect_garbage(store, grace_seconds=0)
    assert report.chunks_removed == 0 and report.chunks_kept_recent == 0  # p2 marks them
    out = tmp_path / "out.raw"
    restore_disk(store, store.read_point_index(store.read_manifest("p2"), "vda"), out)
    assert out.read_bytes() == content and verify_point(store, "p2").ok
    m, epoch = store.read_parent("p2")
    previous = store.read_point_index(m, "vda")
    store.delete_point("p2")
    _age_chunks(s3)
    for info in list(s3.list_objects("reuse/")):  # the list is old too: its writer ended
        s3.age_for_tests(info.key, 7200)  # long before this GC, which needs it no more
    report = collect_garbage(store, grace_seconds=0)
    assert report.reuse_lists_removed == 1 and report.chunks_removed == 8
    with _requests(s3, "CopyObject") as sent, store.writer("p3"), FileSource(image) as src:
        p3 = backup_disk(store, src, previous=previous, dirty=[], epoch=epoch)
    assert {key for _, key in sent if key.startswith("chunks/")} == chunks  # the fallback
    assert p3.chunks_reused == 0 and p3.chunks_new == 8  # found gone: read again


def s3_backend_like(backend: S3Backend) -> S3Backend:
    """Another backend (another "process") on the same bucket and prefix."""
    return S3Backend(
        backend.session.client,
        backend.session.bucket,
        backend.session.prefix,
        lease_seconds=8.0,
        renew_seconds=1.0,
        retry_delay=0.02,
    )


def test_the_endpoint_vanishing_mid_backup_is_storage_unreachable(
    rgw: Any, s3: S3Backend, tmp_path: Path
) -> None:
    store = VaultStore.create(s3, chunk_size=CS)
    image = tmp_path / "d.img"
    make_image(image, [("rand", 400)])
    killed: list[bool] = []

    def kill_midway(done: int, total: int) -> None:
        if done >= total // 4 and not killed:
            killed.append(True)
            rgw.kill_rgw()

    try:
        with (
            pytest.raises(StorageUnreachable) as exc,
            store.writer("p1"),
            FileSource(image) as src,
        ):
            backup_disk(store, src, progress=kill_midway)
        assert killed and exc.value.code == "STORAGE_UNREACHABLE"
        assert rgw.secret_key not in str(exc.value) and rgw.access_key not in str(exc.value)
    finally:
        rgw.restart_rgw()
    assert not store.has_manifest("p1") and store.list_index_dirs() == []
    backup_point(store, "p1", {"vda": image})  # the next backup works
    assert verify_point(store, "p1").ok


_RSS = textwrap.dedent(
    """
    import json, sys
    def hwm():  # VmHWM: this process's own peak (ru_maxrss keeps the forking parent's)
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    from vmvault.dataplane import VaultStore
    from vmvault.dataplane.backup import backup_disk
    from vmvault.dataplane.source import FileSource
    from vmvault.domain.vault import S3Location
    from vmvault.storage.s3 import open_s3
    endpoint, bucket, image = sys.argv[1:]
    store = VaultStore.create(open_s3(S3Location(endpoint, bucket, "v/")))
    before = hwm()
    with store.writer("p1"), FileSource(image) as src:
        r = backup_disk(store, src)
    peak = hwm()
    print(json.dumps({"before_mib": before, "peak_mib": peak, "new": r.chunks_new}))
    """
)


def test_a_backup_to_s3_stays_within_100_mib(rgw: Any, tmp_path: Path) -> None:
    image = tmp_path / "big.img"
    with image.open("wb") as f:
        for _ in range(48):  # 192 MiB of incompressible data: 48 chunks of 4 MiB
            f.write(os.urandom(4 << 20))
    proc = subprocess.run(
        [sys.executable, "-c", _RSS, rgw.endpoint, rgw.bucket("rss"), str(image)],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | rgw.env(),
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["new"] == 48
    assert result["peak_mib"] <= 100, result


def test_chunks_shared_between_disks_and_points_are_stored_once_on_s3(
    s3: S3Backend, tmp_path: Path
) -> None:
    """On S3 the pipeline does not ask before storing: the batch's conditional PUT finds a
    chunk present (412) and touches it; chunks large enough to be sent from a mapping."""
    cs = 1 << 20
    store = VaultStore.create(s3, chunk_size=cs)
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    blocks = [chunk_bytes("rand", cs, seed=n) for n in range(6)]
    a.write_bytes(b"".join(blocks))
    b.write_bytes(b"".join(blocks[3:] + blocks[:3] + [blocks[0]]))
    first = backup_point(store, "p1", {"vda": a, "vdb": b})
    assert (first["vda"].chunks_new, first["vdb"].chunks_new) == (6, 0)
    assert first["vdb"].chunks_dedup == 7 and first["vdb"].bytes_new == 0
    _age_chunks(s3)
    second = backup_point(store, "p2", {"vda": a})["vda"]
    assert (second.chunks_new, second.chunks_dedup, second.bytes_new) == (0, 6, 0)
    assert store.chunk_usage().objects == 6
    assert all(i.mtime > s3.now() - 60 for i in s3.list_objects("chunks/"))
    out = tmp_path / "out.raw"
    restore_disk(store, second.index, out)
    assert out.read_bytes() == a.read_bytes()
