"""What the S3 backend costs around its data: the client's imports, the checksums it sends,
and how its leases end when the process does — against the real Ceph RGW (``rgw``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from tests.unit.storage.conftest import s3_backend
from vmvault.storage.s3_batch import ByteBudget, MappedBody
from vmvault.storage.s3_leases import LOCKS


@pytest.fixture()
def creds(rgw: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in rgw.env().items():
        monkeypatch.setenv(name, value)
    return rgw


_IMPORTS = textwrap.dedent(
    """
    import json, sys
    from vmvault.domain.vault import S3Location
    from vmvault.storage.s3 import open_s3
    open_s3(S3Location("http://127.0.0.1:9", "b", "p/"))
    print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
    """
)


def test_the_client_loads_no_sdk_and_no_tls_shim() -> None:
    """vmvault's S3 client is its own: no botocore or boto3 (their service models cost
    8-20 MiB), and no pyOpenSSL / ``cryptography`` (~9 MiB) pulled in for TLS."""
    env = os.environ | {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "not-a-secret"}
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORTS], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout))
    assert "urllib3" in loaded
    assert not loaded & {"botocore", "boto3", "s3transfer", "cryptography", "OpenSSL"}


def test_a_put_sends_no_checksum_of_its_body(creds: Any) -> None:
    """The client computes no checksum of each body (PUTs are ``UNSIGNED-PAYLOAD``): only an
    operation that S3 requires one for (DeleteObjects) carries one (``Content-MD5``)."""
    backend = s3_backend(creds, creds.bucket("sum"))
    headers: dict[str, dict[str, str]] = {}

    def seen(op: str, request: Any, **_: Any) -> None:
        headers.setdefault(op, {}).update(
            {
                k.lower(): v.decode() if isinstance(v, bytes) else str(v)
                for k, v in request.headers.items()
            }
        )

    backend.session.client.hooks.register("before-send", seen)
    big = os.urandom(3 << 20)
    assert backend.put("chunks/aa/one", big)
    batch = backend.begin_batch()
    batch.add("chunks/aa/two", big)
    batch.commit()
    backend.publish("manifests/p.manifest", b"m")
    backend.delete_prefix("chunks/")
    put = headers["PutObject"]
    assert put["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert not [k for k in put if "checksum" in k or k == "content-md5"], put
    required = headers["DeleteObjects"]
    assert [k for k in required if "checksum" in k or k == "content-md5"], required


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from vmvault.domain.vault import S3Location
    from vmvault.storage.s3 import open_s3
    endpoint, bucket = sys.argv[1:]
    backend = open_s3(S3Location(endpoint, bucket, "vault/"))
    with backend.lock("vault", exclusive=False, timeout=10):
        pass
    print(time.monotonic(), flush=True)
    """
)


def test_exit_deletes_the_idle_shared_lease_at_once_and_is_not_held_up(creds: Any) -> None:
    """A shared lease outlives its last hold by a second (the next hold reuses it) — but not
    the process: at exit it is deleted then, not a whole lease later (a GC would wait for
    it), and the exit does not wait for the linger."""
    bucket = creds.bucket("exit")
    proc = subprocess.run(
        [sys.executable, "-c", _HOLDER, creds.endpoint, bucket],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | creds.env(),
    )
    ended = time.monotonic()
    assert proc.returncode == 0, proc.stderr
    released = float(proc.stdout.split()[0])
    assert ended - released < 1.0  # the linger (1 s) is not waited for
    left = creds.client().list_objects_v2(Bucket=bucket, Prefix=f"vault/{LOCKS}")
    assert left.get("KeyCount") == 0, left.get("Contents")


def test_upload_bodies_reuse_their_mappings_within_the_budget() -> None:
    """A large body is a view of ``size`` bytes of a mapping; once sent, the mapping carries
    the next body (no fresh pages per chunk), and the spare ones never exceed the budget."""
    budget = ByteBudget(3 * (1 << 20))
    data = os.urandom(700_000)
    body = budget.copy([data[:300_000], data[300_000:]], len(data))
    assert isinstance(body, MappedBody) and len(body) == len(data)
    assert body.read(100) == data[:100] and body.read() == data[100:] and body.read() == b""
    body.seek(0)
    assert body.read() == data
    mapping = body.mapping
    budget.recycle(body)
    again = budget.copy([data[:500_000]], 500_000)
    assert isinstance(again, MappedBody) and again.mapping is mapping  # reused
    assert again.read() == data[:500_000]
    bodies = [budget.copy([os.urandom(1 << 20)], 1 << 20) for _ in range(5)]
    for b in [again, *bodies]:
        budget.recycle(b)
    mappings = {id(b.mapping): b.mapping for b in [again, *bodies] if isinstance(b, MappedBody)}
    assert sum(len(m) for m in mappings.values() if not m.closed) <= budget.limit  # spare ones
    assert budget.copy([b"small"], 5) == b"small"  # small bodies stay bytes
