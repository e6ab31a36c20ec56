"""What only the S3 backend has: credentials, the probe, its errors, leases that lapse,
multipart debris, a gateway killed mid-batch — all against the real Ceph RGW (``rgw``)."""

from __future__ import annotations

import os
import resource
import socket
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from tests.unit.storage.conftest import inject_503, s3_backend
from vmvault.dataplane.chunkstore import ChunkBatch, chunk_key, space_errors, user_error
from vmvault.domain.errors import (
    StorageAccessDenied,
    StorageBucketNotFound,
    StorageUnreachable,
)
from vmvault.domain.vault import S3Location
from vmvault.storage.errors import (
    AccessDenied,
    BucketMissing,
    CredentialsUnavailable,
    EndpointUnreachable,
    LeaseLost,
    LockTimeout,
    TransientStorageError,
    is_transient,
)
from vmvault.storage.s3 import open_s3
from vmvault.storage.s3_credentials import load_credentials

SECRET = "wJalrXUtnFEMI-not-a-real-secret-K7MDENG"


@pytest.fixture()
def creds(rgw: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in rgw.env().items():
        monkeypatch.setenv(name, value)
    return rgw


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- credentials -----------------------------------------------------------------------------


def test_credentials_from_a_file_or_the_environment(tmp_path: Path) -> None:
    f = tmp_path / "credentials"
    f.write_text(f"[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = {SECRET}\n")
    c = load_credentials(str(f), environ={})
    assert (c.access_key, c.secret_key, c.source) == ("AKIDFILE", SECRET, f"file {f}")
    env = {"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": SECRET}
    c = load_credentials(None, environ=env)
    assert (c.access_key, c.source) == ("AKIDENV", "environment")
    assert SECRET not in repr(c) and "AKIDENV" not in repr(c)


@pytest.mark.parametrize(
    "content",
    [
        None,  # no file
        "not an ini file\n" + SECRET,
        f"[other]\naws_access_key_id = A\naws_secret_access_key = {SECRET}\n",
        f"[default]\naws_secret_access_key = {SECRET}\n",
    ],
)
def test_a_missing_or_unreadable_credential_is_clear_and_shows_no_secret(
    tmp_path: Path, content: str | None
) -> None:
    f = tmp_path / "credentials"
    if content is not None:
        f.write_text(content)
    with pytest.raises(CredentialsUnavailable) as exc:
        load_credentials(str(f), environ={})
    assert str(f) in str(exc.value) and SECRET not in str(exc.value)
    assert not is_transient(exc.value)


def test_no_credentials_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CredentialsUnavailable, match="AWS_SECRET_ACCESS_KEY") as exc:
        load_credentials(None, environ={"AWS_ACCESS_KEY_ID": "A"})
    user = user_error(exc.value, "s3://b/v/")
    assert user is not None and user.code == "STORAGE_CREDENTIALS_MISSING"
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(CredentialsUnavailable):
        open_s3(S3Location("http://127.0.0.1:1", "b", "v/"))


# --- the probe and its errors ----------------------------------------------------------------


def test_probe_accepts_a_good_vault_and_leaves_nothing(creds: Any) -> None:
    bucket = creds.bucket("probe")
    backend = s3_backend(creds, bucket)
    backend.probe()
    assert list(backend.list_objects()) == []
    assert creds.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert backend.location == f"s3://{bucket}/vault/" and bucket in repr(backend)


def test_wrong_keys_are_refused_at_once_and_never_shown(
    rgw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = rgw.bucket("keys")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", rgw.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    backend = open_s3(S3Location(rgw.endpoint, bucket, "v/"))
    started = time.monotonic()
    with pytest.raises(AccessDenied) as exc:
        backend.probe()
    assert time.monotonic() - started < 2
    assert not is_transient(exc.value)
    for text in (str(exc.value), repr(exc.value), repr(backend)):
        assert SECRET not in text and rgw.access_key not in text
    user = StorageAccessDenied(path=backend.location, why=str(exc.value))
    assert SECRET not in user.text and user.code == "STORAGE_ACCESS_DENIED"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "NOSUCHKEY0000000000")
    with pytest.raises(AccessDenied):
        open_s3(S3Location(rgw.endpoint, bucket, "v/")).probe()


def test_an_unknown_bucket_is_refused_at_once(creds: Any) -> None:
    backend = s3_backend(creds, "no-such-bucket-4711")
    started = time.monotonic()
    with pytest.raises(BucketMissing) as exc:
        backend.probe()
    assert time.monotonic() - started < 2 and not is_transient(exc.value)
    with pytest.raises(StorageBucketNotFound), space_errors(backend.location):
        backend.put("x", b"x")


def test_an_unreachable_endpoint_fails_within_seconds(creds: Any) -> None:
    location = S3Location(f"http://127.0.0.1:{_closed_port()}", "b", "v/")
    backend = open_s3(location, retry_delay=0.05)
    started = time.monotonic()
    with pytest.raises(EndpointUnreachable) as exc:
        backend.probe()
    assert time.monotonic() - started < 5 and is_transient(exc.value)
    with pytest.raises(StorageUnreachable), space_errors(backend.location):
        backend.exists("x")
    dns = open_s3(S3Location("http://no-such-host.invalid:7480", "b", ""), retry_delay=0.05)
    with pytest.raises(EndpointUnreachable):
        dns.probe()
    assert time.monotonic() - started < 15


# --- transient failures ----------------------------------------------------------------------


def test_a_batch_retries_a_503_by_itself(creds: Any) -> None:
    backend = s3_backend(creds, creds.bucket("retry"))
    with inject_503(backend, "PutObject"):
        batch = backend.begin_batch()
        batch.add("c/1", b"one")
        batch.commit()
    assert backend.get("c/1") == b"one"


class _Inline:
    """An executor that runs each upload at once, in the caller's thread: the upload (and
    the unmapping of its body) is over before ``submit`` returns."""

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait: bool = True) -> None:
        pass


def test_an_upload_that_ends_before_its_add_returns(creds: Any) -> None:
    """A 412 comes back in microseconds: the add must not look at its (then unmapped) body
    after handing it over (it did: ``ValueError: mmap closed or invalid``)."""
    backend = s3_backend(creds, creds.bucket("fast"))
    big = os.urandom(1 << 20)  # mapped: large enough
    backend.put("c/present", big)
    batch = backend.begin_batch()
    batch._pool = _Inline()  # type: ignore[assignment]
    assert batch.add("c/present", big) == len(big)
    assert batch.add("c/new", big) == len(big)
    assert batch.commit() == frozenset({"c/present"})
    assert backend.get("c/new") == big


def test_the_gateway_killed_mid_batch(creds: Any) -> None:
    """Uploads fail as transient (STORAGE_UNREACHABLE for users); what is visible afterwards
    is whole; the next batch works once the gateway is back."""
    backend = s3_backend(creds, creds.bucket("kill"), retry_delay=0.05)
    data = {n.to_bytes(32, "big"): os.urandom(1 << 20) for n in range(1, 41)}
    batch = ChunkBatch(backend)
    failed: BaseException | None = None
    try:
        for n, (cid, blob) in enumerate(data.items()):
            if n == 10:
                creds.kill_rgw()
            batch.add(cid, [blob])
        batch.commit()
    except StorageUnreachable as exc:
        failed = exc
    finally:
        batch.abort()
    assert isinstance(failed, StorageUnreachable), failed
    assert isinstance(failed.__cause__, TransientStorageError)
    creds.restart_rgw()
    by_key = {chunk_key(cid): blob for cid, blob in data.items()}
    listed = list(backend.list_objects("chunks/"))
    assert len(listed) < len(data)
    for info in listed:
        assert backend.get(info.key) == by_key[info.key]  # whole, or absent
    again = ChunkBatch(backend)
    for cid, blob in data.items():
        again.add(cid, [blob])
    again.commit()
    assert backend.usage("chunks/").objects == len(data)


# --- leases ----------------------------------------------------------------------------------


def test_a_lapsed_lease_stops_every_change(creds: Any) -> None:
    bucket = creds.bucket("lapse")
    backend = s3_backend(
        creds, bucket, lease_seconds=3.0, renew_seconds=0.5, connect_timeout=0.5, read_timeout=0.5
    )
    with backend.register_writer("p1") as info:
        backend.put("a", b"1")
        # someone found it expired and deleted it (or the admin did): the renewal finds it gone
        creds.client().delete_object(Bucket=bucket, Key="vault/" + info.ident)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                backend.put("b", b"2")
            except LeaseLost as exc:
                assert "lapsed" in str(exc) and not is_transient(exc)
                break
            time.sleep(0.2)
        else:
            pytest.fail("the lost lease went unnoticed")
        with pytest.raises(LeaseLost):
            backend.publish("m", b"manifest")
        with pytest.raises(StorageUnreachable), space_errors(backend.location):
            backend.touch("a")
        assert backend.get("a") == b"1"  # reading is still allowed
    backend.put("c", b"3")  # the registration ended: changes are allowed again


def test_a_lease_is_renewed_while_held(creds: Any) -> None:
    short = {
        "lease_seconds": 3.0,
        "renew_seconds": 0.4,
        "connect_timeout": 0.5,
        "read_timeout": 0.5,
    }
    backend = s3_backend(creds, creds.bucket("renew"), **short)
    other = s3_backend(creds, backend.session.bucket, **short)
    with backend.lock("gc", exclusive=True, timeout=0):
        time.sleep(6)  # two leases long: only renewals keep it
        with pytest.raises(LockTimeout), other.lock("gc", exclusive=True, timeout=0):
            pass
        backend.put("still/allowed", b"x")
    with other.lock("gc", exclusive=True, timeout=0):
        pass


def test_the_clock_is_the_servers(creds: Any) -> None:
    backend = s3_backend(creds, creds.bucket("clock"))
    backend.put("x", b"x")
    head = creds.client().head_object(Bucket=backend.session.bucket, Key="vault/x")
    assert abs(backend.now() - head["LastModified"].timestamp()) < 2.5
    assert backend.now() <= time.time() + 2  # the RGW runs on this host's clock


# --- debris, large deletes, memory -----------------------------------------------------------


def test_incomplete_multipart_uploads_are_swept_by_age(creds: Any) -> None:
    bucket = creds.bucket("mpu")
    backend = s3_backend(creds, bucket)
    client = creds.client()
    client.create_multipart_upload(Bucket=bucket, Key="vault/chunks/00/partial")
    client.create_multipart_upload(Bucket=bucket, Key="elsewhere/not-ours")
    assert backend.sweep_leftovers(backend.now() - 3600) == 0  # too recent
    assert backend.sweep_leftovers(backend.now() + 60, dry_run=True) == 1
    assert backend.sweep_leftovers(backend.now() + 60) == 1
    assert backend.sweep_leftovers(backend.now() + 60) == 0
    assert len(client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1


def test_delete_prefix_of_more_than_one_request(creds: Any) -> None:
    backend = s3_backend(creds, creds.bucket("many"))
    batch = backend.begin_batch()
    for n in range(1005):
        batch.add(f"i/p1/{n}", b"x")
    batch.add("i/p2/0", b"y")
    batch.commit()
    assert backend.delete_prefix("i/p1/") == 1005
    assert [i.key for i in backend.list_objects()] == ["i/p2/0"]


def test_a_batch_holds_bounded_memory(creds: Any) -> None:
    backend = s3_backend(creds, creds.bucket("rss"), inflight_bytes=16 << 20)
    chunk = os.urandom(4 << 20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    batch = backend.begin_batch()
    for n in range(48):  # 192 MiB through a 16 MiB budget
        batch.add(f"chunks/{n:02x}/big", chunk)
    batch.commit()
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 64, grown_mib
    assert backend.usage("chunks/").bytes == 48 * len(chunk)
