"""The backends the conformance suite runs against, each behind a :class:`Harness`.

To add a backend, add a ``_make_<name>`` factory and its name to ``BACKENDS``: every test of
``test_conformance.py`` then runs against it.  The harness gives the suite what the contract
cannot: making an object look older, making the next call of an operation fail as the medium
fails, and leaving behind a writer or a lock holder that died.

The S3 backend runs against the real Ceph RGW of the session fixture ``rgw``
(``tests/s3lab.py``), each test in a fresh bucket under the prefix ``vault/``:

* *age*: S3 cannot set ``LastModified``; the backend's documented test seam
  ``S3Backend.age_for_tests`` makes it report the key's mtime that much earlier (until the key
  is written, touched or deleted through it).
* *inject*: a ``before-send`` hook of the client answers the next request of the operation
  with a ``503 ServiceUnavailable`` response, which then takes the client's whole path
  (parsing, error translation) — the request never reaches the gateway.
* *dead writer / holder*: a child process takes the lease (3 s) and is killed with SIGKILL;
  on object storage a holder is known dead only when its lease expires, so the harness then
  waits the lease out (the contract allows a dead holder to count as live that long).
* ``visible_early``: an object of a batch shows as soon as its upload returns (one PUT per
  object: durable and visible at once), as the contract allows object storage; the batch
  tests check that half of the contract for it instead of "invisible until commit".
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vmvault.domain.vault import S3Location
from vmvault.storage.backend import StorageBackend
from vmvault.storage.local import LocalBackend
from vmvault.storage.memory import MemoryBackend
from vmvault.storage.s3 import S3Backend, open_s3
from vmvault.storage.s3_client import Response


@dataclass
class Harness:
    backend: StorageBackend
    #: make object ``key`` look last changed ``seconds`` earlier
    age: Callable[[str, float], None]
    #: within the block, the next call of operation ``op`` fails as the medium fails transiently
    inject: Callable[[str], AbstractContextManager[None]]
    #: leave a writer registration named ``name`` whose holder has died
    dead_writer: Callable[[str], None]
    #: leave a hold of lock ``name`` (exclusive or not) whose holder has died
    dead_holder: Callable[[str, bool], None]
    #: a batch's objects may be visible before ``commit`` (each as soon as it is uploaded)
    visible_early: bool = False


# --- local directory -------------------------------------------------------------------------

#: The system call through which each operation of the local backend meets the medium first.
_LOCAL_SYSCALL = {
    "put": "open",
    "publish": "open",
    "get": "open",
    "get_into": "open",
    "stat": "stat",
    "list_objects": "scandir",
    "touch": "utime",
    "delete": "unlink",
}

_DEAD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from vmvault.storage.local import LocalBackend
    backend = LocalBackend(Path(sys.argv[1]))
    if sys.argv[2] == "writer":
        backend.register_writer(sys.argv[3]).__enter__()
    else:
        backend.lock(sys.argv[3], exclusive=sys.argv[4] == "1", timeout=5).__enter__()
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _make_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Harness:
    root = tmp_path / "vault"
    backend = LocalBackend(root)

    def age(key: str, seconds: float) -> None:
        path = backend.path(key)
        t = path.stat().st_mtime - seconds
        os.utime(path, (t, t))

    @contextmanager
    def inject(op: str) -> Iterator[None]:
        name = _LOCAL_SYSCALL[op]
        real = getattr(os, name)
        calls = 0

        def failing(*args: Any, **kw: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise OSError(errno.ETIMEDOUT, "injected: connection timed out")
            return real(*args, **kw)

        with monkeypatch.context() as m:
            m.setattr(os, name, failing)
            yield

    def dead(*argv: str) -> None:
        proc = subprocess.run(
            [sys.executable, "-c", _DEAD, str(root), *argv], capture_output=True, timeout=60
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr

    return Harness(
        backend,
        age,
        inject,
        lambda name: dead("writer", name),
        lambda name, exclusive: dead("lock", name, "1" if exclusive else "0"),
    )


# --- memory ----------------------------------------------------------------------------------


_zombies: list[AbstractContextManager[Any]] = []  # never left, never collected


def _in_a_thread_that_dies(enter: Callable[[], AbstractContextManager[Any]]) -> None:
    """Enter a hold in a thread that then ends without leaving it (its holder "dies")."""

    def run() -> None:
        cm = enter()
        cm.__enter__()
        _zombies.append(cm)  # kept, so that no finaliser releases it behind the test's back

    t = threading.Thread(target=run)
    t.start()
    t.join()


def _make_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Harness:
    backend = MemoryBackend("memory:conformance")

    @contextmanager
    def inject(op: str) -> Iterator[None]:
        backend.inject(op)
        yield

    return Harness(
        backend,
        backend.age,
        inject,
        lambda name: _in_a_thread_that_dies(lambda: backend.register_writer(name)),
        lambda name, exclusive: _in_a_thread_that_dies(
            lambda: backend.lock(name, exclusive=exclusive, timeout=5)
        ),
    )


# --- S3 on the real RGW ----------------------------------------------------------------------

#: The S3 request through which each operation of the S3 backend meets the service first.
S3_REQUEST = {
    "put": "PutObject",
    "publish": "PutObject",
    "get": "GetObject",
    "get_into": "GetObject",
    "stat": "HeadObject",
    "list_objects": "ListObjectsV2",
    "touch": "CopyObject",
    "delete": "DeleteObject",
}
S3_LEASE = 3.0  # the lease of the dead holders' child processes (s)

_S3_DEAD = textwrap.dedent(
    """
    import os, signal, sys
    from vmvault.domain.vault import S3Location
    from vmvault.storage.s3 import open_s3
    endpoint, bucket, prefix, what, name, exclusive, lease = sys.argv[1:]
    backend = open_s3(
        S3Location(endpoint, bucket, prefix), lease_seconds=float(lease), renew_seconds=0.5,
        connect_timeout=0.5, read_timeout=0.5,
    )
    if what == "writer":
        backend.register_writer(name).__enter__()
    else:
        backend.lock(name, exclusive=exclusive == "1", timeout=5).__enter__()
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@contextmanager
def inject_503(backend: S3Backend, request_name: str) -> Iterator[None]:
    """Within the block, the next ``request_name`` request gets a 503 from "the service"."""
    hooks = backend.session.client.hooks
    event = f"before-send.{request_name}"
    fired: list[bool] = []

    def fail(request: Any, **_: Any) -> Response | None:
        if fired:
            return None
        fired.append(True)
        body = b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"
        headers = {"Content-Type": "application/xml", "Content-Length": str(len(body))}
        return Response(503, headers, body)

    hooks.register(event, fail, first=True)
    try:
        yield
    finally:
        hooks.unregister(event, fail)


def s3_backend(rgw: Any, bucket: str, prefix: str = "vault/", **options: Any) -> S3Backend:
    """An S3 backend on the session's RGW (credentials from the environment)."""
    # short leases need short timeouts: trust ends margin = connect + read + 1 s early
    options.setdefault("lease_seconds", 8.0)
    options.setdefault("renew_seconds", 1.0)
    options.setdefault("connect_timeout", 1.0)
    options.setdefault("read_timeout", 3.0)
    options.setdefault("retry_delay", 0.02)
    return open_s3(S3Location(rgw.endpoint, bucket, prefix, rgw.region), **options)


def _make_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Harness:
    rgw = request.getfixturevalue("rgw")
    for name, value in rgw.env().items():
        monkeypatch.setenv(name, value)
    bucket = rgw.bucket("conf")
    backend = s3_backend(rgw, bucket)

    def dead(what: str, name: str, exclusive: bool = False) -> None:
        argv = [rgw.endpoint, bucket, "vault/", what, name, "1" if exclusive else "0"]
        proc = subprocess.run(
            [sys.executable, "-c", _S3_DEAD, *argv, str(S3_LEASE)],
            capture_output=True,
            timeout=60,
            env=os.environ | rgw.env(),
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        time.sleep(S3_LEASE + 2.5)  # known dead once the lease (+ LastModified's second) expired

    return Harness(
        backend,
        backend.age_for_tests,
        lambda op: inject_503(backend, S3_REQUEST[op]),
        lambda name: dead("writer", name),
        lambda name, exclusive: dead("lock", name, exclusive),
        visible_early=True,
    )


Factory = Callable[[Path, pytest.MonkeyPatch, pytest.FixtureRequest], Harness]
BACKENDS: dict[str, Factory] = {
    "local": _make_local,
    "memory": _make_memory,
    "s3": _make_s3,
}


@pytest.fixture(params=sorted(BACKENDS))
def harness(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Harness:
    return BACKENDS[request.param](tmp_path, monkeypatch, request)


@pytest.fixture()
def backend(harness: Harness) -> StorageBackend:
    return harness.backend
