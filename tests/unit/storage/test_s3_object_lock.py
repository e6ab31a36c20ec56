"""An immutable vault on the lab's real Ceph RGW with S3 Object Lock (docs/immutability.md):
a bucket without Object Lock is refused at ``vault create --object-lock``; a retained point's
objects get a COMPLIANCE retention; an attacker holding the vault's keys cannot delete a
retained version through the S3 API (not even with the governance bypass), and a plain
delete only hides it behind a delete marker; vmvault refuses with POINT_RETAINED and refuses
a policy's shortening; a chunk a newer point shares is extended only past the margin; once
retention has passed, GC deletes every version of the chunks no point references.

Retention runs on the server's clock: the dates here are seconds ahead (the margin is
patched down to seconds), and the test waits for them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.unit.catalog_world import catalog, write_point
from tests.unit.storage.test_conformance import _race
from tests.unit.test_soft_delete_service import WEB, Clock, World
from vmvault.bootstrap import open_storage
from vmvault.dataplane import holds as holds_module
from vmvault.domain.errors import ImmutableUnsupported, PointRetained, RetentionShortened
from vmvault.domain.retention import Retention
from vmvault.domain.vault import s3_location
from vmvault.services.immutability import ImmutabilityService
from vmvault.services.policies import PolicyService
from vmvault.storage.s3 import open_s3

CS = 64 << 10
MARGIN = timedelta(seconds=4)


@pytest.fixture()
def world(
    tmp_path: Path, rgw: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[World, Any, str]]:
    for name, value in rgw.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(holds_module, "EXTENSION_MARGIN", MARGIN)
    with catalog(tmp_path, monkeypatch, {WEB[0]: WEB[1]}) as c:
        c.vaults.storage = open_storage
        yield World(tmp_path, c.uow, c.vaults, Clock()), rgw, rgw.bucket("lock", object_lock=True)


def _versions(client: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    page = client.list_object_versions(Bucket=bucket, Prefix=key)
    return [
        v for v in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())] if v["Key"] == key
    ]


def _until(client: Any, bucket: str, key: str) -> datetime:
    return client.head_object(Bucket=bucket, Key=key)["ObjectLockRetainUntilDate"]


def test_object_lock_holds_a_retained_point_against_its_own_keys(
    world: tuple[World, Any, str],
) -> None:
    w, rgw, bucket = world
    s3 = rgw.client()
    plain = rgw.bucket("plain")
    with pytest.raises(ImmutableUnsupported) as err:  # refused before anything is written
        w.vaults.create(
            "P", "local", None, s3=s3_location(rgw.endpoint, plain, "v", object_lock=True)
        )
    assert "Object Lock" in err.value.text
    assert s3.list_objects_v2(Bucket=plain).get("KeyCount") == 0

    where = s3_location(rgw.endpoint, bucket, "v", object_lock=True, lock_mode="compliance")
    w.vaults.create("S", "local", None, chunk_size=CS, s3=where)
    w.soft().update_vault("S", mode="off")  # deleted at once when retention ends
    imm = ImmutabilityService(w.ctx)
    imm.update_vault("S", True)
    write_point(w.tmp, w.uow, w.vaults, "S", "p1", 1, w.clock.at - timedelta(hours=1), WEB)
    w.clock.at = datetime.now(UTC)
    until1 = w.clock.at + timedelta(seconds=10)
    _, held = imm.lock_point("p1", until1)
    assert held == 1 + 1 + 7  # manifest, index, 7 chunks: each got a retention
    manifest = "v/manifests/p1.manifest"
    head = s3.head_object(Bucket=bucket, Key=manifest)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert abs(head["ObjectLockRetainUntilDate"] - until1) < timedelta(seconds=1)
    chunk_keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="v/chunks/")["Contents"]
    ]
    first_chunks = set(chunk_keys)
    assert all(_until(s3, bucket, k) >= until1 + MARGIN - timedelta(seconds=1) for k in chunk_keys)

    # the attacker, with the vault's own keys: no version of a retained object goes
    for key in (manifest, chunk_keys[0]):
        [version] = _versions(s3, bucket, key)
        for bypass in (False, True):
            with pytest.raises(ClientError) as denied:
                s3.delete_object(
                    Bucket=bucket,
                    Key=key,
                    VersionId=version["VersionId"],
                    BypassGovernanceRetention=bypass,
                )
            assert denied.value.response["Error"]["Code"] == "AccessDenied"
    # a plain delete only adds a delete marker: the retained version stays, and removing
    # the marker brings the object back as it was
    marker = s3.delete_object(Bucket=bucket, Key=manifest)["VersionId"]
    assert w.vaults.open_store(w.vaults.resolve("S")).list_manifests() == []
    s3.delete_object(Bucket=bucket, Key=manifest, VersionId=marker)
    assert w.vaults.open_store(w.vaults.resolve("S")).list_manifests() == ["p1"]

    # through vmvault: refused with its code; a policy only lengthens
    with pytest.raises(PointRetained):
        w.points().delete_point("p1")
    policies = PolicyService(w.ctx)
    policies.create("S", "gold", "daily@02:00", "UTC", Retention(daily=7))
    with pytest.raises(RetentionShortened):
        policies.update("gold", counts={"daily": 6})

    # a newer point sharing p1's 4 common chunks: retained until before p1's chunks' date
    # (p1's + the margin): they are not extended; its 3 own chunks, manifest, index are held
    write_point(w.tmp, w.uow, w.vaults, "S", "p2", 2, w.clock.at, WEB)
    for k in sorted(first_chunks)[:7]:
        print(
            "DBG",
            k[-6:],
            [(v["LastModified"], "Size" in v, v.get("IsLatest")) for v in _versions(s3, bucket, k)],
        )
    _, held = imm.lock_point("p2", until1 + MARGIN / 2)
    assert held == 2 + 3
    # a third, retained past that date: the shared chunks are extended, once each
    write_point(w.tmp, w.uow, w.vaults, "S", "p3", 3, w.clock.at, WEB)
    until3 = until1 + MARGIN + timedelta(seconds=2)
    _, held = imm.lock_point("p3", until3)
    assert held == 2 + 3 + 4
    shared = [k for k in first_chunks if _until(s3, bucket, k) >= until3]
    assert len(shared) == 4

    # retention over (server clock): p1 and p2 go; GC deletes every version of what only
    # they referenced, and keeps p3's
    wait = (until1 + MARGIN / 2 + MARGIN - datetime.now(UTC)).total_seconds() + 1.5
    time.sleep(max(0.0, wait))
    w.clock.at = datetime.now(UTC)
    w.points().delete_point("p1")
    w.points().delete_point("p2")
    assert _versions(s3, bucket, manifest) == []
    gc = w.points().gc("S", grace=0)
    assert gc.result is not None
    assert gc.result.chunks_removed == 3 + 3  # p1's and p2's own chunks
    assert gc.result.chunks_kept_retained == 0
    left = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="v/chunks/")["Contents"]}
    assert len(left) == 4 + 3
    for key in first_chunks - left:
        assert _versions(s3, bucket, key) == []  # gone for good, not behind a marker


def test_put_if_absent_on_a_versioned_bucket_has_one_winner(
    rgw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RGW ignores ``If-None-Match: *`` once a bucket is versioned (Object Lock turns
    versioning on): the backend decides by the versions — a put of a key that exists loses
    and leaves the first object alone, once; of racing puts at least one wins (never none:
    the key always keeps an object)."""
    for name, value in rgw.env().items():
        monkeypatch.setenv(name, value)
    bucket = rgw.bucket("race", object_lock=True)
    where = s3_location(rgw.endpoint, bucket, "v", object_lock=True)
    backend = open_s3(where, connect_timeout=2.0, read_timeout=5.0, retry_delay=0.02)
    assert backend.put("k", b"first")
    time.sleep(2.5)  # past the race window: a sequential second put
    assert not backend.put("k", b"second")
    assert backend.get("k") == b"first" and len(_versions(rgw.client(), bucket, "v/k")) == 1
    for round_ in range(3):
        won, _ = _race(backend, f"race/{round_}", 6)
        assert len(won) >= 1, round_
        assert backend.get(f"race/{round_}") in {bytes([n]) * (1000 + 100 * n) for n in range(6)}
