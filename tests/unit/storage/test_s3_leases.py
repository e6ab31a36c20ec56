"""The S3 backend's lease locks under contention, against the real Ceph RGW (``rgw``): an
exclusive request (GC) waiting for readers neither blocks other readers for long nor starves
behind a backend that keeps reusing its shared lease; the lease margin covers one request."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.unit.storage.conftest import s3_backend
from vmvault.storage.errors import LeaseLost, LockTimeout
from vmvault.storage.s3 import S3Backend
from vmvault.storage.s3_leases import LOCKS, Leases


@pytest.fixture()
def creds(rgw: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in rgw.env().items():
        monkeypatch.setenv(name, value)
    return rgw


def _exclusive_leases(rgw: Any, backend: S3Backend, name: str) -> list[str]:
    prefix = backend.session.full(f"{LOCKS}{name}/exclusive/")
    got = rgw.client().list_objects_v2(Bucket=backend.session.bucket, Prefix=prefix)
    return [o["Key"] for o in got.get("Contents", ())]


def test_a_waiting_exclusive_request_lets_new_readers_in_after_its_bounded_wait(
    creds: Any,
) -> None:
    """A GC queued behind a long restore must not stall every other reader until it times out."""
    restore = s3_backend(creds, creds.bucket("fair"))
    bucket = restore.session.bucket
    gc = s3_backend(creds, bucket)
    gc_leases = Leases(gc.session, 8.0, 1.0, exclusive_wait=1.5)
    reader = s3_backend(creds, bucket)
    got: dict[str, float] = {}

    def collect() -> None:
        with gc_leases.lock("vault", exclusive=True, timeout=40):
            got["gc"] = time.monotonic()

    with restore.lock("vault", exclusive=False, timeout=5):
        t = threading.Thread(target=collect)
        t.start()
        deadline = time.monotonic() + 10
        while not _exclusive_leases(creds, gc, "vault"):  # the GC waits, its lease out
            assert time.monotonic() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        with reader.lock("vault", exclusive=False, timeout=8):
            waited = time.monotonic() - started
        assert waited < 1.5 + 3  # one exclusive_wait, the listing, the poll
        assert "gc" not in got
        released = time.monotonic()
    t.join(timeout=30)
    assert not t.is_alive() and "gc" in got
    assert got["gc"] - released < 2 * 1.5 + 3  # its back-off (1-2 exclusive_wait) and a try


def test_a_waiting_exclusive_request_gets_in_past_a_backend_reusing_its_shared_lease(
    creds: Any,
) -> None:
    """A backup checks chunk after chunk under one reused shared lease: a GC must get in, and
    the backup's next checks wait for it (the table row of docs/vault-format.md §8)."""
    backup = s3_backend(creds, creds.bucket("starve"))
    gc = s3_backend(creds, backup.session.bucket)
    stop = threading.Event()
    holds: list[tuple[float, float]] = []
    errors: list[BaseException] = []

    def chunk_checks() -> None:
        try:
            while not stop.is_set():
                with backup.lock("vault", exclusive=False, timeout=60):
                    start = time.monotonic()
                    time.sleep(0.05)
                    holds.append((start, time.monotonic()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=chunk_checks) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        asked = time.monotonic()
        with gc.lock("vault", exclusive=True, timeout=20):
            got_in = time.monotonic()
            time.sleep(1)
            left = time.monotonic()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors
    assert got_in - asked < 10
    during = [h for h in holds if h[1] > got_in and h[0] < left]
    assert during == []  # no chunk check ran while the GC held the lock
    assert any(start > left for start, _ in holds)  # and the backup went on afterwards


def test_the_margin_covers_a_request_lifetime(creds: Any) -> None:
    backend = s3_backend(
        creds, creds.bucket("margin"), lease_seconds=20.0, connect_timeout=2.0, read_timeout=5.0
    )
    assert backend.session.request_seconds == 7.0
    with pytest.raises(ValueError, match=r"margin of 8\.0s"):
        Leases(backend.session, 8.0, 1.0)  # a 120 s lease has room: 120 - 8 > 30
    leases = Leases(backend.session, 10.0, 1.0)
    sent = time.monotonic()
    with leases.lock("m", exclusive=True, timeout=5):
        (lease,) = (v for v in leases._held.values() if "/exclusive/" in v.key)
        assert lease.margin == 8.0
        assert sent + 10.0 - 8.0 <= lease.valid_until <= time.monotonic() + 10.0 - 8.0


def test_a_change_is_never_sent_under_an_untrusted_lease_whatever_path_sends_it(
    creds: Any,
) -> None:
    """The check is made at every sending (each retry, each conditional PUT), not once."""
    bucket = creds.bucket("guard")
    backend = s3_backend(
        creds, bucket, lease_seconds=3.0, renew_seconds=0.5, connect_timeout=0.5, read_timeout=0.5
    )
    client = backend.session.client
    with backend.register_writer("p1") as info:
        creds.client().delete_object(Bucket=bucket, Key="vault/" + info.ident)
        deadline = time.monotonic() + 5
        while True:
            try:
                backend.leases.check()
            except LeaseLost:
                break
            assert time.monotonic() < deadline, "the lost lease went unnoticed"
            time.sleep(0.1)
        with pytest.raises(LeaseLost):
            client.put_object(Bucket=bucket, Key="vault/raw", Body=b"x")
        with pytest.raises(LeaseLost):
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "vault/raw"}]})
        assert list(backend.list_objects("raw")) == []  # not written; reading still works
    client.put_object(Bucket=bucket, Key="vault/raw", Body=b"x")  # registration over
    other = s3_backend(creds, bucket)
    with (  # the guard leaves the lease objects alone
        pytest.raises(LockTimeout),
        backend.lock("x", exclusive=True, timeout=5),
        other.lock("x", exclusive=True, timeout=0),
    ):
        pass
