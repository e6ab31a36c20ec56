"""The storage contract's conformance suite: every backend must pass every test here.

Modelled on restic's ``backend/test``: the tests speak only to
:class:`~vmvault.storage.backend.StorageBackend` (plus the :class:`Harness` hooks of
``conftest.py``), so a new backend is tested by adding it to ``conftest.BACKENDS``.
"""

from __future__ import annotations

import mmap
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.unit.storage.conftest import Harness
from vmvault.storage.backend import StorageBackend
from vmvault.storage.errors import (
    InvalidKey,
    LockTimeout,
    ObjectMissing,
    ObjectTooLarge,
    StorageError,
    is_transient,
    retry,
)

#: How far an mtime may lag the backend's clock (coarse ticks, whole seconds), as the contract
#: allows, plus scheduling noise.
SLACK = 1.5


def _keys(backend: StorageBackend, prefix: str = "") -> list[str]:
    return sorted(info.key for info in backend.list_objects(prefix))


# --- put-if-absent ---------------------------------------------------------------------------


def test_put_creates_once_and_never_replaces(backend: StorageBackend) -> None:
    assert backend.put("a/one", b"first") is True
    assert backend.put("a/one", b"second, longer") is False
    assert backend.get("a/one") == b"first"
    assert backend.stat("a/one").size == 5


def test_put_takes_parts_and_any_bytes_like(backend: StorageBackend) -> None:
    assert backend.put("p", [b"ab", bytearray(b"cd"), memoryview(b"xefx")[1:3]])
    assert backend.get("p") == b"abcdef"
    assert backend.put("q", memoryview(b"whole"))
    assert backend.get("q") == b"whole"


def test_empty_and_large_objects(backend: StorageBackend) -> None:
    assert backend.put("empty", b"")
    assert backend.get("empty") == b"" and backend.stat("empty").size == 0
    big = random.Random(1).randbytes(5 << 20)
    assert backend.put("big", big)
    assert backend.get("big") == big


def _race(backend: StorageBackend, key: str, threads_n: int) -> tuple[list[bytes], list[bytes]]:
    """``threads_n`` threads put ``key`` at once, each its own content: (winners, seen)."""
    barrier = threading.Barrier(threads_n)
    won: list[bytes] = []
    seen: list[bytes] = []
    mu = threading.Lock()

    def put(n: int) -> None:
        data = bytes([n]) * (1000 + 100 * n)
        barrier.wait()
        created = backend.put(key, data)
        after = backend.get(key)
        with mu:
            if created:
                won.append(data)
            seen.append(after)

    threads = [threading.Thread(target=put, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won, seen


def test_racing_puts_exactly_one_wins(backend: StorageBackend) -> None:
    for round_ in range(10):
        won, seen = _race(backend, f"race/{round_}", 8)
        assert len(won) == 1, round_
        assert seen == [won[0]] * 8  # everyone sees the winner's whole object


# --- get, get_into, stat ---------------------------------------------------------------------


def test_missing_object_is_a_specific_permanent_error(backend: StorageBackend) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: backend.get("no/such"),
        lambda: backend.get_into("no/such", memoryview(bytearray(10))),
        lambda: backend.stat("no/such"),
    ]
    for call in calls:
        with pytest.raises(ObjectMissing) as exc:
            call()
        assert not is_transient(exc.value) and exc.value.key == "no/such"
    assert backend.exists("no/such") is False
    backend.put("no/such/deeper", b"x")  # a "directory" is not an object
    with pytest.raises(ObjectMissing):
        backend.get("no/such")
    assert not backend.exists("no/such")


def test_get_into_a_callers_buffer(backend: StorageBackend) -> None:
    data = random.Random(2).randbytes(70_000)
    backend.put("obj", data)
    buf = bytearray(100_000)
    assert backend.get_into("obj", memoryview(buf)) == len(data)
    assert bytes(buf[: len(data)]) == data
    page = mmap.mmap(-1, 1 << 17)
    with memoryview(page) as view:
        assert backend.get_into("obj", view[100:]) == len(data)
        assert bytes(view[100 : 100 + len(data)]) == data
    page.close()
    with pytest.raises(ObjectTooLarge) as exc:
        backend.get_into("obj", memoryview(bytearray(len(data) - 1)))
    assert not is_transient(exc.value)


def test_stat_exists_and_the_clock(backend: StorageBackend) -> None:
    t0 = backend.now()
    backend.put("s/obj", b"12345")
    info = backend.stat("s/obj")
    assert info.key == "s/obj" and info.size == 5
    assert t0 - SLACK <= info.mtime <= backend.now() + SLACK
    assert backend.exists("s/obj") and not backend.exists("s/other")
    assert abs(backend.now() - time.time()) < 3600  # epoch seconds


# --- list by prefix --------------------------------------------------------------------------


def test_list_by_prefix(backend: StorageBackend) -> None:
    for key in ("a/1", "a/2", "a/b/3", "ab/4", "b/5", "top"):
        backend.put(key, key.encode())
    assert _keys(backend) == ["a/1", "a/2", "a/b/3", "ab/4", "b/5", "top"]
    assert _keys(backend, "a/") == ["a/1", "a/2", "a/b/3"]
    assert _keys(backend, "a") == ["a/1", "a/2", "a/b/3", "ab/4"]
    assert _keys(backend, "a/b/") == ["a/b/3"]
    assert _keys(backend, "a/b") == ["a/b/3"]
    assert _keys(backend, "to") == ["top"]
    assert _keys(backend, "nothing/") == [] and _keys(backend, "a/b/3/") == []
    sizes = {info.key: info.size for info in backend.list_objects("a/")}
    assert sizes == {"a/1": 3, "a/2": 3, "a/b/3": 5}


def test_list_of_an_empty_backend(backend: StorageBackend) -> None:
    assert _keys(backend) == [] and _keys(backend, "chunks/") == []
    backend.create_layout(["chunks/00/", "chunks/ff/", "indexes/"])  # prepares, creates nothing
    backend.create_layout(["chunks/00/"])  # idempotent
    assert _keys(backend) == [] and backend.usage().objects == 0
    assert backend.put("chunks/00/x", b"x") and backend.put("elsewhere/y", b"y")


def test_list_many_objects_each_once(backend: StorageBackend) -> None:
    keys = {f"chunks/{n % 16:02x}/{n:064x}" for n in range(700)}
    batch = backend.begin_batch()
    for key in keys:
        batch.add(key, key.encode()[-8:])
    batch.commit()
    listed = [info.key for info in backend.list_objects("chunks/")]
    assert len(listed) == len(keys) and set(listed) == keys
    assert {i.size for i in backend.list_objects("chunks/0a/")} == {8}


def test_no_temporary_or_in_flight_object_is_listed(harness: Harness) -> None:
    backend = harness.backend
    backend.put("k/done", b"x")
    batch = backend.begin_batch()
    batch.add("k/staged", b"not yet")
    crashed = backend.begin_batch()  # a writer that dies: never committed nor aborted
    crashed.add("k/crashed", b"never")
    if harness.visible_early:  # each object whole once uploaded, never a temporary
        _only_whole(backend, {"k/done": b"x", "k/staged": b"not yet", "k/crashed": b"never"})
    else:
        assert _keys(backend) == ["k/done"]
        assert not backend.exists("k/staged")
    batch.commit()
    assert {"k/done", "k/staged"} <= set(_keys(backend))
    if not harness.visible_early:
        assert _keys(backend) == ["k/done", "k/staged"]
        assert backend.usage().objects == 2


def _only_whole(backend: StorageBackend, allowed: dict[str, bytes]) -> None:
    """Every listed object is one of ``allowed``, with its whole content."""
    for key in _keys(backend):
        assert key in allowed, key
        assert backend.get(key) == allowed[key], key


# --- atomic publish --------------------------------------------------------------------------


def test_publish_creates_and_replaces(backend: StorageBackend) -> None:
    backend.publish("m/p1", b"v1")
    assert backend.get("m/p1") == b"v1"
    backend.publish("m/p1", [b"v", b"2, longer"])
    assert backend.get("m/p1") == b"v2, longer"
    assert _keys(backend) == ["m/p1"]


def test_a_reader_never_sees_a_partial_publish(backend: StorageBackend) -> None:
    versions = [bytes([65 + n]) * (100_000 + 37_000 * n) for n in range(6)]
    backend.publish("m/manifest", versions[0])
    stop = threading.Event()
    bad: list[str] = []

    def read() -> None:
        while not stop.is_set():
            try:
                data = backend.get("m/manifest")
            except ObjectMissing:
                bad.append("missing while replaced")
                continue
            if data not in versions:
                bad.append(f"{len(data)} bytes, starting {data[:1]!r}")
            if _keys(backend, "m/") != ["m/manifest"]:
                bad.append("a temporary object was listed")

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for n in range(60):
            backend.publish("m/manifest", versions[n % len(versions)])
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert bad == []


# --- delete, touch, usage --------------------------------------------------------------------


def test_delete_is_idempotent(backend: StorageBackend) -> None:
    backend.put("d/x/1", b"1")
    backend.put("d/x/2", b"2")
    backend.delete("d/x/1")
    assert not backend.exists("d/x/1") and _keys(backend) == ["d/x/2"]
    backend.delete("d/x/1")
    backend.delete("never/was")
    backend.delete("d/x/2", sync=False)
    assert _keys(backend) == []
    assert backend.put("d/x/1", b"again") is True  # a deleted key can be put again
    assert backend.get("d/x/1") == b"again"


def test_delete_prefix(backend: StorageBackend) -> None:
    for key in ("i/p1/vda", "i/p1/vdb", "i/p10/vda", "i/p2/vda", "j"):
        backend.put(key, b"x")
    assert backend.delete_prefix("i/p1/") == 2
    assert _keys(backend) == ["i/p10/vda", "i/p2/vda", "j"]
    assert backend.delete_prefix("i/p1/") == 0  # idempotent
    assert backend.put("i/p1/vda", b"again") is True
    with pytest.raises(InvalidKey):
        backend.delete_prefix("i/p")  # a prefix to delete ends with "/"


def test_touch_refreshes_the_mtime_only(harness: Harness) -> None:
    backend = harness.backend
    assert backend.touch("t/missing") is False and not backend.exists("t/missing")
    backend.put("t/chunk", b"content")
    harness.age("t/chunk", 7200)
    assert backend.stat("t/chunk").mtime < backend.now() - 7000
    before = backend.now()
    assert backend.touch("t/chunk") is True
    info = backend.stat("t/chunk")
    assert info.mtime >= before - SLACK and info.size == 7
    assert backend.get("t/chunk") == b"content"


def test_usage_counts_the_objects_under_a_prefix(backend: StorageBackend) -> None:
    assert (backend.usage().bytes, backend.usage().objects) == (0, 0)
    backend.put("u/a", b"x" * 100)
    backend.put("u/b/c", b"y" * 50)
    backend.put("v", b"z")
    assert (backend.usage("u/").bytes, backend.usage("u/").objects) == (150, 2)
    assert (backend.usage().bytes, backend.usage().objects) == (151, 3)


# --- batches ---------------------------------------------------------------------------------


def test_batch_objects_appear_on_commit(harness: Harness) -> None:
    backend = harness.backend
    batch = backend.begin_batch()
    assert batch.add("b/1", [b"he", b"llo"]) == 5
    buf = mmap.mmap(-1, 8192)
    buf[:6] = b"world!"
    assert batch.add_buffer("b/2", buf, 6) == 6
    buf[:6] = b"reused"  # the buffer is the caller's again once add_buffer returns
    assert len(batch) == 2
    if harness.visible_early:
        _only_whole(backend, {"b/1": b"hello", "b/2": b"world!"})
    else:
        assert _keys(backend) == []
    batch.commit()
    assert backend.get("b/1") == b"hello" and backend.get("b/2") == b"world!"
    assert len(batch) == 0
    buf.close()


def test_a_batch_gives_a_released_buffer_back_once_it_is_done_with_it(
    backend: StorageBackend,
) -> None:
    """``add_buffer(..., release=)``: the batch may keep the caller's buffer (object storage
    sends it as the body) and gives it back exactly once, by commit at the latest; what it
    stored is the buffer's content at the add, also for a key found present."""
    backend.put("r/present", b"present!")
    data = random.Random(3).randbytes(1 << 20)  # large enough to be sent as a mapped body
    bufs = [mmap.mmap(-1, len(data)) for _ in range(3)]
    released: list[int] = []
    mu = threading.Lock()

    def release(n: int) -> Callable[[], None]:
        def back() -> None:
            with mu:
                released.append(n)

        return back

    batch = backend.begin_batch()
    for n, (buf, key) in enumerate(zip(bufs, ("r/a", "r/b", "r/present"), strict=True)):
        body = data if key != "r/present" else b"present!"
        buf[: len(body)] = body
        batch.add_buffer(key, buf, len(body), release=release(n))
    assert batch.commit() == frozenset({"r/present"})
    assert sorted(released) == [0, 1, 2]  # each once, all before commit returned
    assert backend.get("r/a") == data and backend.get("r/b") == data
    assert backend.get("r/present") == b"present!"
    for buf in bufs:
        buf.close()


def test_an_aborted_batch_gives_every_released_buffer_back(backend: StorageBackend) -> None:
    buf = mmap.mmap(-1, 8192)
    buf[:5] = b"abort"
    released: list[bool] = []
    batch = backend.begin_batch()
    batch.add_buffer("r/x", buf, 5, release=lambda: released.append(True))
    batch.abort()
    assert released == [True]
    buf.close()


def test_batch_puts_are_puts_if_absent(backend: StorageBackend) -> None:
    backend.put("b/x", b"original")
    batch = backend.begin_batch()
    batch.add("b/x", b"other")
    batch.add("b/y", b"new")
    batch.commit()
    assert backend.get("b/x") == b"original" and backend.get("b/y") == b"new"


def test_a_batch_add_of_a_present_key_touches_it_inside_the_guard(harness: Harness) -> None:
    backend = harness.backend
    backend.put("b/old", b"stored long ago")
    harness.age("b/old", 3600)
    aged = backend.stat("b/old").mtime
    guarded: list[str] = []

    @contextmanager
    def guard() -> Iterator[None]:
        guarded.append(threading.current_thread().name)
        yield

    batch = backend.begin_batch(guard)
    batch.add("b/old", b"stored long ago")
    batch.add("b/new", b"fresh")
    started = backend.now()
    present = batch.commit()
    assert present == frozenset({"b/old"})  # found present: its bytes were not stored
    assert backend.get("b/old") == b"stored long ago" and backend.get("b/new") == b"fresh"
    touched = backend.stat("b/old").mtime
    assert touched >= started - 2 and touched > aged + 3000  # the mtime was refreshed
    assert len(guarded) == 1  # the touch ran inside the guard; the new object needed none


def test_a_batch_add_of_a_large_present_object_touches_it(backend: StorageBackend) -> None:
    big = random.Random(7).randbytes(3 << 20)  # a chunk's size: mapped, sent in parts
    backend.put("b/big", big)
    buf = mmap.mmap(-1, len(big))
    buf[:] = big
    for _ in range(2):
        batch = backend.begin_batch()
        batch.add_buffer("b/big", buf, len(big))
        batch.add_buffer("b/big2", buf, len(big))
        assert batch.commit() == frozenset({"b/big"})
        backend.delete("b/big2")
    buf.close()
    assert backend.get("b/big") == big


def test_a_batch_add_whose_present_object_vanishes_puts_it_again(harness: Harness) -> None:
    backend = harness.backend
    backend.put("b/k", b"old bytes")
    harness.age("b/k", 3600)
    deleted: list[bool] = []

    @contextmanager
    def guard() -> Iterator[None]:  # a GC deletes it between the put's refusal and the touch
        if not deleted:
            backend.delete("b/k")
            deleted.append(True)
        yield

    batch = backend.begin_batch(guard)
    batch.add("b/k", b"old bytes")
    started = backend.now()
    assert batch.commit() == frozenset()  # stored again by this batch: not "present"
    assert deleted and backend.get("b/k") == b"old bytes"
    assert backend.stat("b/k").mtime >= started - 2


def test_batches_from_many_threads(backend: StorageBackend) -> None:
    batch = backend.begin_batch()

    def add(n: int) -> None:
        for k in range(20):
            batch.add(f"c/{n}/{k}", f"{n}-{k}".encode())

    threads = [threading.Thread(target=add, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batch.commit()
    assert len(_keys(backend, "c/")) == 80 and backend.get("c/3/19") == b"3-19"


def test_an_aborted_batch_leaves_nothing(harness: Harness) -> None:
    backend = harness.backend
    batch = backend.begin_batch()
    batch.add("b/1", b"x")
    batch.abort()
    if harness.visible_early:  # what was uploaded stays whole, for GC; nothing in flight
        _only_whole(backend, {"b/1": b"x"})
        listed = _keys(backend)
        time.sleep(0.5)
        assert _keys(backend) == listed  # abort returned: no upload lands afterwards
    else:
        assert _keys(backend) == []
    assert backend.sweep_leftovers(backend.now() + 60, dry_run=True) == 0


def test_a_crashed_writers_debris_is_swept_by_age(harness: Harness) -> None:
    backend = harness.backend
    crashed = backend.begin_batch()
    for n in range(3):
        crashed.add(f"chunks/0{n}/debris", b"x" * 100)
    del crashed  # neither committed nor aborted
    if harness.visible_early:
        # no debris: each upload lands whole or not at all (an unreferenced object, for GC)
        _only_whole(backend, {f"chunks/0{n}/debris": b"x" * 100 for n in range(3)})
        assert backend.sweep_leftovers(backend.now() + 60) == 0
        return
    assert _keys(backend) == []
    assert backend.sweep_leftovers(backend.now() - 3600) == 0  # too recent: could be live
    assert backend.sweep_leftovers(backend.now() + 60, dry_run=True) == 3
    assert backend.sweep_leftovers(backend.now() + 60) == 3
    assert backend.sweep_leftovers(backend.now() + 60) == 0
    assert backend.put("chunks/00/debris", b"fine") is True


# --- keys and errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["", "/a", "a/", "a//b", "../x", "a/../b", ".hidden", "a/.tmp", "locks/vault", "a b"]
)
def test_invalid_keys_are_refused(backend: StorageBackend, key: str) -> None:
    for call in (
        lambda: backend.put(key, b"x"),
        lambda: backend.publish(key, b"x"),
        lambda: backend.get(key),
    ):
        with pytest.raises(InvalidKey) as exc:
            call()
        assert not is_transient(exc.value)


def test_every_allowed_character(backend: StorageBackend) -> None:
    key = "Az09/x.y_z:w-v/" + "k" * 100
    assert backend.put(key, b"ok") and _keys(backend, "Az09/") == [key]


_OPS: dict[str, Callable[[StorageBackend], Any]] = {
    "put": lambda b: b.put("e/new", b"new"),
    "publish": lambda b: b.publish("e/old", b"replaced"),
    "get": lambda b: b.get("e/old"),
    "get_into": lambda b: b.get_into("e/old", memoryview(bytearray(100))),
    "stat": lambda b: b.stat("e/old"),
    "list_objects": lambda b: list(b.list_objects("e/")),
    "touch": lambda b: b.touch("e/old"),
    "delete": lambda b: b.delete("e/old"),
}


@pytest.mark.parametrize("op", sorted(_OPS))
def test_a_transient_failure_changes_nothing_and_a_retry_succeeds(
    harness: Harness, op: str
) -> None:
    backend = harness.backend
    backend.put("e/old", b"old")
    with harness.inject(op), pytest.raises(StorageError) as exc:
        _OPS[op](backend)
    assert is_transient(exc.value), exc.value
    assert _keys(backend) == ["e/old"] and backend.get("e/old") == b"old"  # nothing changed
    sleeps: list[float] = []
    with harness.inject(op):
        retry(lambda: _OPS[op](backend), sleep=sleeps.append)
    assert len(sleeps) == 1
    if op == "put":
        assert backend.get("e/new") == b"new"
    elif op == "publish":
        assert backend.get("e/old") == b"replaced"
    elif op == "delete":
        assert not backend.exists("e/old")


# --- locks -----------------------------------------------------------------------------------


def _try_lock(backend: StorageBackend, name: str, exclusive: bool, timeout: float = 0) -> bool:
    """In another thread: could it take the lock?"""
    got: list[bool] = []

    def run() -> None:
        try:
            with backend.lock(name, exclusive=exclusive, timeout=timeout):
                got.append(True)
        except LockTimeout:
            got.append(False)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return got[0]


def test_an_exclusive_hold_excludes_everyone(backend: StorageBackend) -> None:
    with backend.lock("vault", exclusive=True, timeout=0):
        assert not _try_lock(backend, "vault", exclusive=False, timeout=0.1)
        assert not _try_lock(backend, "vault", exclusive=True)
        assert _try_lock(backend, "gc", exclusive=True)  # another name: another lock
    assert _try_lock(backend, "vault", exclusive=True)


def test_shared_holds_share_and_keep_exclusive_out(backend: StorageBackend) -> None:
    with backend.lock("vault", exclusive=False, timeout=0):
        assert _try_lock(backend, "vault", exclusive=False)
        with backend.lock("vault", exclusive=False, timeout=0):
            assert not _try_lock(backend, "vault", exclusive=True, timeout=0.1)
    assert _try_lock(backend, "vault", exclusive=True)


def test_holds_are_independent_even_in_one_thread(backend: StorageBackend) -> None:
    with (
        backend.lock("vault", exclusive=False, timeout=0),
        pytest.raises(LockTimeout) as exc,
        backend.lock("vault", exclusive=True, timeout=0.05),
    ):
        pass
    assert not is_transient(exc.value)


def test_a_waiter_gets_the_lock_when_it_is_released(backend: StorageBackend) -> None:
    taken = threading.Event()

    def hold() -> None:
        with backend.lock("vault", exclusive=True, timeout=0):
            taken.set()
            time.sleep(0.3)

    t = threading.Thread(target=hold)
    t.start()
    taken.wait()
    started = time.monotonic()
    with backend.lock("vault", exclusive=False, timeout=10):
        waited = time.monotonic() - started
    t.join()
    assert 0.2 <= waited < 5


def test_a_timeout_raises_lock_timeout_in_time(backend: StorageBackend) -> None:
    with backend.lock("gc", exclusive=True, timeout=None):
        started = time.monotonic()
        assert not _try_lock(backend, "gc", exclusive=True, timeout=0.3)
        assert 0.25 <= time.monotonic() - started < 3


@pytest.mark.parametrize("exclusive", [True, False])
def test_a_dead_holders_lock_is_free(harness: Harness, exclusive: bool) -> None:
    harness.dead_holder("vault", exclusive)
    with harness.backend.lock("vault", exclusive=True, timeout=5):
        pass


# --- writer registry -------------------------------------------------------------------------


def test_a_registration_is_live_while_held(backend: StorageBackend) -> None:
    t0 = backend.now()
    assert backend.live_writers() == []
    with backend.register_writer("point-1") as info:
        assert info.name == "point-1" and t0 - SLACK <= info.started_at <= backend.now()
        live = backend.live_writers()
        assert [(w.name, w.ident) for w in live] == [("point-1", info.ident)]
        assert live[0].started_at == pytest.approx(info.started_at)
    assert backend.live_writers() == []


def test_a_writers_objects_are_not_older_than_its_registration(backend: StorageBackend) -> None:
    with backend.register_writer("w") as info:
        backend.put("w/1", b"x")
        batch = backend.begin_batch()
        batch.add("w/2", b"y")
        batch.commit()
        backend.put("w/3", b"z")
        backend.touch("w/3")
    for key in ("w/1", "w/2", "w/3"):
        assert backend.stat(key).mtime >= info.started_at - SLACK


def test_many_writers_at_once(backend: StorageBackend) -> None:
    ready = threading.Barrier(7)
    done = threading.Event()

    def write(n: int) -> None:
        with backend.register_writer(f"vm-{n}"):
            ready.wait()
            done.wait()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    ready.wait()
    try:
        assert sorted(w.name for w in backend.live_writers()) == [f"vm-{n}" for n in range(6)]
        assert len({w.ident for w in backend.live_writers()}) == 6
    finally:
        done.set()
        for t in threads:
            t.join()
    assert backend.live_writers() == []


def test_a_dead_writer_is_not_live(harness: Harness) -> None:
    backend = harness.backend
    harness.dead_writer("ghost")
    with backend.register_writer("alive"):
        assert [w.name for w in backend.live_writers()] == ["alive"]
    assert backend.live_writers() == []
