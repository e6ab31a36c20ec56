"""The vault's storage contract: :class:`StorageBackend`.

A vault is a flat set of **objects**: immutable byte strings named by **keys**, plus named
**locks** and a **writer registry**.  The data path (:mod:`vmvault.dataplane`) speaks only to
this contract; a backend implements it on a medium.  The contract is written for object
storage (S3 and the like) as much as for a local directory, so it offers **no rename, no
append, no partial write, no flock** to its callers: an object is written whole, in one
operation, or not at all.  Backends: :mod:`vmvault.storage.local` (a directory),
:mod:`vmvault.storage.s3` (S3-compatible object storage), :mod:`vmvault.storage.memory`
(in memory: tests and the fake composition root).  Every backend
passes the conformance suite in ``tests/unit/storage/``.

**Keys.**  ``/``-separated segments; each segment is 1–128 characters of
``A-Z a-z 0-9 . _ : -`` and starts with a letter or digit (so never ``.`` or ``..``, and a
backend is free to use dot-names for its own temporaries); at most 512 characters; the first
segment ``locks`` is reserved for the backend's locks and writer registry.  :func:`check_key`.

**Objects.**

* :meth:`~StorageBackend.put` — *put-if-absent*: creates the object if no object has the key
  and returns True; otherwise changes nothing and returns False.  Of two racing puts of one
  key exactly one returns True, and both callers then see the winner's object.  When ``put``
  returns, the object is durable (it survives a crash of the process and of the machine).
* :meth:`~StorageBackend.publish` — *atomic publish*: creates or replaces the object.  A reader
  sees the whole old object or the whole new one, never a mix, never a prefix; durable when it
  returns.  (Manifests, indexes: what makes a recovery point exist.)
* **Batches** (:meth:`~StorageBackend.begin_batch`, :class:`WriteBatch`) amortise durability:
  many puts made durable by one :meth:`WriteBatch.commit` (the local backend: temporary files
  written with O_DIRECT, then one fsync each in parallel and one per directory).  An object
  added to a batch becomes visible no earlier than its content is durable, and at the latest
  when ``commit`` returns; each is a put-if-absent.  **An add whose key already exists
  refreshes that object's mtime** (a :meth:`~StorageBackend.touch`, run inside the batch's
  ``guard()`` when ``begin_batch`` was given one: the caller's lock that orders it against a
  garbage collector's delete), and if the object is gone by then (deleted meanwhile) the add
  puts it again: once ``commit`` returns, every added key is present with an mtime at or after
  the add began.  ``commit`` returns the keys that were found already present (their bytes were
  not stored).  ``abort`` (or a crash) discards what was not yet visible; what was (object
  storage may show an object as soon as it is uploaded) stays, as an unreferenced object for
  garbage collection.
* :meth:`~StorageBackend.get` / :meth:`~StorageBackend.get_into` — the whole object, as
  ``bytes`` or into the caller's buffer (the hot path: no allocation per object).  A missing
  key raises :class:`~vmvault.storage.errors.ObjectMissing`.
* :meth:`~StorageBackend.stat` / :meth:`~StorageBackend.exists` — size and **mtime**.
* :meth:`~StorageBackend.list_objects` — the objects whose key starts with a prefix (a string prefix,
  as in S3: ``"indexes/p1/"``, ``"chunks/"``), with size and mtime, in no particular order.
  Temporary or in-flight objects (a write not yet complete, a batch not yet committed) are
  never listed.  An object present for the whole listing is listed once; one created or deleted
  meanwhile may or may not be.
* :meth:`~StorageBackend.delete` — idempotent: deleting a missing key is not an error.
  Durable when it returns (``sync=False``: may come back after a crash, for garbage).
  :meth:`~StorageBackend.delete_prefix` deletes every object under a prefix (a point's
  indexes), like ``delete(sync=False)`` for each.
* :meth:`~StorageBackend.create_layout` — prepares new storage for the prefixes a vault will
  use (a directory makes its sub-directories, as restic's ``Create`` does; object storage has
  nothing to prepare).
* :meth:`~StorageBackend.touch` — sets an existing object's mtime to now (content unchanged);
  False when the object does not exist.  Garbage collection keeps what was touched recently.
* :meth:`~StorageBackend.usage` — bytes and number of the objects under a prefix.
* :meth:`~StorageBackend.sweep_leftovers` — removes the debris of crashed writers that is not
  an object (temporary files, incomplete multipart uploads) older than a time.

**Cost.**  :attr:`~StorageBackend.remote` is True when each request is a network round trip
(object storage: tens of milliseconds, whatever the size), False for a local medium (µs).  A
caller then overlaps requests (read-ahead, concurrent touches) and skips an existence check
that a batch's put-if-absent answers anyway.

**Time.**  :meth:`~StorageBackend.now` is the clock that stamps mtimes (the kernel's for a
directory, the server's for S3).  An mtime may lag ``now()`` by up to a second (coarse kernel
ticks; S3 keeps whole seconds); the garbage collector's slack covers that.

**Locks** (:meth:`~StorageBackend.lock`) are named reader/writer locks: any number of shared
holds, or one exclusive.  Each call is an independent hold, even within one thread (a thread
that holds a shared hold and asks for an exclusive one waits for itself).  ``timeout`` None
waits forever, 0 tries once; when it runs out, :class:`~vmvault.storage.errors.LockTimeout`.
A hold ends when its ``with`` block ends **or when its holder dies** (a killed process, a lease
that is no longer renewed): a crash never leaves a vault locked for good.

**Writer registry** (:meth:`~StorageBackend.register_writer`,
:meth:`~StorageBackend.live_writers`).  A registration is visible to ``live_writers`` before
``register_writer``'s ``with`` block starts, and its ``started_at`` (on the :meth:`now` clock)
is at or before every mtime the writer sets afterwards.  It stays live until the block ends or
its holder dies; ``live_writers`` never reports a dead holder's registration (it removes it).
A backend may report a dead writer as live for a bounded time (a lease not yet expired): that
is the safe direction.

**Holds** (optional capability, :attr:`~StorageBackend.holds`): a medium that can refuse
to delete an object until a date, whoever asks — the local directory's immutable attribute,
S3 Object Lock — offers an :class:`ObjectHold`; None when it cannot (the memory backend).
Callers ask the capability, never the backend's class (docs/immutability.md).

How each of these maps onto object storage is in ``docs/vault-format.md`` §8.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeAlias

from vmvault.domain.immutability import LockMode
from vmvault.storage.errors import InvalidKey

#: A context factory a batch holds while it touches an object it found present.
Guard: TypeAlias = Callable[[], AbstractContextManager[None]]
BytesLike: TypeAlias = bytes | bytearray | memoryview
#: Objects are given as one buffer or as parts written back to back (one ``writev``).
Data: TypeAlias = BytesLike | Sequence[BytesLike]

RESERVED = "locks"
MAX_KEY = 512
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def check_key(key: str) -> str:
    """``key`` if it follows the key rules, else :class:`InvalidKey`."""
    if len(key) > MAX_KEY or not key:
        raise InvalidKey(f"key of {len(key)} characters", key=key)
    segments = key.split("/")
    if segments[0] == RESERVED:
        raise InvalidKey("the 'locks' prefix is the backend's", key=key)
    for segment in segments:
        if not _SEGMENT.fullmatch(segment) or segment == "..":
            raise InvalidKey(f"segment {segment!r} of key {key!r}", key=key)
    return key


def parts_of(data: Data) -> Sequence[BytesLike]:
    return [data] if isinstance(data, bytes | bytearray | memoryview) else data


def put_or_touch(put: Callable[[], bool], touch: Callable[[], bool], guard: Guard) -> bool:
    """A batch's add made visible (module docstring, "Batches"): ``put()`` (put-if-absent);
    a key found present is ``touch()``-ed inside ``guard()``, and put again if it vanished
    meanwhile.  True when this call created the object, False when it found it present."""
    while True:
        if put():
            return True
        with guard():
            if touch():
                return False


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int  # bytes
    mtime: float  # epoch seconds, on the backend's clock (StorageBackend.now)


@dataclass(frozen=True)
class Usage:
    bytes: int
    objects: int


def usage_of(objects: Iterable[ObjectInfo]) -> Usage:
    """Bytes and number of ``objects`` (``StorageBackend.usage`` of a listing)."""
    total = count = 0
    for info in objects:
        total += info.size
        count += 1
    return Usage(total, count)


@dataclass(frozen=True)
class WriterInfo:
    name: str  # what the writer registered as (the data path: a recovery point id)
    pid: int  # its process on its host (0 when unknown)
    started_at: float  # on the backend's clock, at or before anything the writer stores
    ident: str  # the registration's own name in the backend


class WriteBatch(Protocol):
    """Objects made durable together (see "Batches" in the module docstring).

    Thread-safe: many threads may :meth:`add` at once; ``commit``/``abort`` once, at the end.
    """

    def add(self, key: str, data: Data) -> int:
        """Stage a put-if-absent of ``key``; returns the bytes written."""
        ...

    def add_buffer(
        self, key: str, buf: mmap.mmap, size: int, *, release: Callable[[], None] | None = None
    ) -> int:
        """:meth:`add` of ``buf[:size]``, a page-aligned buffer (written without a copy where
        the medium allows, e.g. O_DIRECT).  Without ``release``, ``buf`` may be reused once
        this returns.  With it, the batch may keep ``buf`` (object storage sends it as the
        body, no copy) and calls ``release()`` exactly once when done with it — the object
        sent, failed or aborted, or this call failing; the caller leaves ``buf[:size]``
        alone until then."""
        ...

    def commit(self) -> frozenset[str]:
        """Make every staged object durable, then visible; returns the keys that were already
        present (each touched instead, see "Batches").  On failure nothing more of the batch
        becomes visible and the staged data is discarded."""
        ...

    def abort(self) -> None:
        """Discard what was staged and is not yet visible."""
        ...

    def __len__(self) -> int:
        """Objects staged and not yet committed."""
        ...


class ObjectHold(Protocol):
    """The storage's own refusal to delete objects before a date (module docstring, "Holds").

    A held object cannot be deleted, replaced or changed through the storage's ordinary
    interface by anyone, vmvault included, until its hold ends: a dated hold ends by itself
    (S3 Object Lock); an undated one (the immutable attribute) ends only by :meth:`release`,
    which vmvault calls once the catalog says retention has ended, just before it deletes."""

    def check(self) -> str | None:
        """None when this storage can hold objects; else why not, for people."""
        ...

    def hold(self, keys: Sequence[str], until: datetime, mode: LockMode, margin: timedelta) -> int:
        """Hold each existing object of ``keys`` until at least ``until`` — a dated hold that
        must be extended at all is extended to ``until + margin`` (``mode``: S3 Object Lock's
        mode; an undated hold ignores both); returns how many got a hold or a longer one (the
        cost: a request each on object storage)."""
        ...

    def release(self, keys: Sequence[str]) -> int:
        """End the undated holds of ``keys`` so they can be deleted (a dated hold is left to
        end by itself); returns how many were released."""
        ...

    def purge(self, key: str) -> bool:
        """Delete the object for good — every version of it where the storage keeps versions
        (a plain delete in a versioned bucket only hides it) — unless it is still held:
        then nothing is done and False is returned.  A missing object: True."""
        ...


class StorageBackend(Protocol):
    """Objects, locks and writer registrations of one vault (module docstring: the contract).

    Thread-safe: every method may be called from many threads at once.
    """

    #: Where the objects are, for people: a directory, ``s3://bucket/prefix``, ``memory:…``.
    location: str
    #: Each request is a network round trip (see "Cost" in the module docstring).
    remote: bool
    #: How this storage holds objects against deletion; None: it cannot ("Holds").
    holds: ObjectHold | None

    # --- objects -----------------------------------------------------------------------------

    def put(self, key: str, data: Data) -> bool:
        """Create ``key`` if absent (True), durably; else change nothing (False)."""
        ...

    def publish(self, key: str, data: Data) -> None:
        """Create or replace ``key`` atomically and durably (readers: old or new, whole)."""
        ...

    def begin_batch(self, guard: Guard | None = None) -> WriteBatch:
        """A batch of puts made durable by one commit; ``guard()`` is held around each touch
        of an added key found present (module docstring, "Batches")."""
        ...

    def get(self, key: str) -> bytes:
        """The whole object; :class:`ObjectMissing`."""
        ...

    def get_into(self, key: str, buf: memoryview) -> int:
        """Read the whole object into ``buf[:size]``; returns its size.
        :class:`ObjectMissing`; :class:`ObjectTooLarge` when it does not fit."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Size and mtime; :class:`ObjectMissing`."""
        ...

    def exists(self, key: str) -> bool: ...

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """The objects whose key starts with ``prefix``, any order, never a temporary one."""
        ...

    def delete(self, key: str, *, sync: bool = True) -> None:
        """Remove ``key``; a missing key is not an error.  Durable when it returns, unless
        ``sync`` is False: then a crash may bring the object back (whole) — for garbage."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix`` (ending in ``/``), not durably
        (as ``delete(sync=False)``); returns how many.  Objects put meanwhile may stay."""
        ...

    def touch(self, key: str) -> bool:
        """Set the mtime of an existing object to now; False when it does not exist."""
        ...

    def usage(self, prefix: str = "") -> Usage:
        """Bytes and number of the objects under ``prefix``."""
        ...

    def sweep_leftovers(self, older_than: float, *, dry_run: bool = False) -> int:
        """Remove (or, dry run, count) crashed writers' debris that is not an object
        (temporaries, incomplete uploads) last changed before ``older_than``; returns how
        many.  Debris of a live writer is never older than its registration."""
        ...

    def now(self) -> float:
        """The current time on the clock that stamps mtimes."""
        ...

    def create_layout(self, prefixes: Sequence[str]) -> None:
        """Prepare new storage for objects under ``prefixes`` (each ends with ``/``), durably;
        idempotent.  Nothing else may depend on it: every operation works without it."""
        ...

    # --- locks and writers -------------------------------------------------------------------

    def lock(
        self, name: str, *, exclusive: bool, timeout: float | None
    ) -> AbstractContextManager[None]:
        """Hold the reader/writer lock ``name``; :class:`LockTimeout` after ``timeout`` s."""
        ...

    def register_writer(self, name: str) -> AbstractContextManager[WriterInfo]:
        """Register a running writer for the duration of the ``with`` block."""
        ...

    def live_writers(self) -> list[WriterInfo]:
        """The registered writers whose holders are alive; dead ones are removed."""
        ...
