"""The backends the conformance suite runs against, each behind a :class:`Harness`.

To add a backend (S3 next), add a ``_make_<name>`` factory and its name to ``BACKENDS``: every
test of ``test_conformance.py`` then runs against it.  The harness gives the suite what the
contract cannot: making an object look older, making the next call of an operation fail as
the medium fails, and leaving behind a writer or a lock holder that died.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vmvault.storage.backend import StorageBackend
from vmvault.storage.local import LocalBackend
from vmvault.storage.memory import MemoryBackend


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


def _make_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
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


def _make_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
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


BACKENDS: dict[str, Callable[[Path, pytest.MonkeyPatch], Harness]] = {
    "local": _make_local,
    "memory": _make_memory,
}


@pytest.fixture(params=sorted(BACKENDS))
def harness(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Harness:
    return BACKENDS[request.param](tmp_path, monkeypatch)


@pytest.fixture()
def backend(harness: Harness) -> StorageBackend:
    return harness.backend
