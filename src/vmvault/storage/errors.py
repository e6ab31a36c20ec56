"""What a storage backend raises, and which failures are worth retrying.

Every failure of a :class:`~vmvault.storage.backend.StorageBackend` operation is a
:class:`StorageError` (a backend translates its own errors: ``OSError``, HTTP status codes).
The class says what the caller may do:

* **transient** (:class:`TransientStorageError`, ``is_transient(exc)`` is True): the same call
  may succeed if made again, nothing else changing — a timeout, throttling, a dropped
  connection, an HTTP 5xx, ``EAGAIN``/``ETIMEDOUT``/``ESTALE`` on a network file system.  The
  failed call changed nothing visible (a put that fails leaves the object absent or whole, a
  publish leaves the old or the new object).  Every operation of the contract is idempotent,
  so the caller may retry it (:func:`retry`); a backend that already retried internally (an S3
  client does) raises it only once its own retries are spent.
* **permanent** (everything else): retrying cannot help; fail at once.
  :class:`ObjectMissing` (the key does not exist: a *specific* error, so that callers can
  turn it into ``CHUNK_MISSING``, ``POINT_NOT_FOUND`` …), :class:`ObjectTooLarge`,
  :class:`InvalidKey`, :class:`StorageFull` (no space or quota), :class:`LockTimeout` (the
  caller's own wait is over), :class:`AccessDenied` (credentials refused),
  :class:`BucketMissing`, :class:`CredentialsUnavailable`, :class:`LeaseLost` (a lease this
  process held lapsed), :class:`PermanentStorageError` (permission, I/O error …).
* :class:`EndpointUnreachable` is transient (connection refused or reset, DNS, connect
  timeout): mid-run the endpoint may come back; at ``vault create`` it is reported as it is.

**Retrying** is :func:`retry`'s, and only once per request: exponential backoff with jitter
(each delay drawn from ``[d/2, d]``, so that many clients failing together do not retry in
lock step).  The S3 client retries nothing itself; the backend uses this one mechanism
(see :mod:`vmvault.storage.s3`).

These are not :class:`~vmvault.domain.errors.VmvaultError`: the data path, which knows what a
key *means*, turns them into the errors users see.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How often :func:`retry` calls an operation that keeps failing transiently, and its first
#: delay (doubled each time): 0.2 + 0.4 + 0.8 s.
RETRY_ATTEMPTS = 4
RETRY_DELAY = 0.2


class StorageError(Exception):
    """A storage operation failed; ``transient`` says whether retrying may help."""

    transient = False

    def __init__(self, message: str, *, key: str | None = None, location: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.location = location


class TransientStorageError(StorageError):
    """Retrying the same call may succeed (timeout, throttling, connection, 5xx)."""

    transient = True


class PermanentStorageError(StorageError):
    """Retrying cannot help (permission, I/O error, a malformed response)."""


class ObjectMissing(PermanentStorageError):
    """No object has this key."""


class ObjectTooLarge(PermanentStorageError):
    """The object does not fit the caller's buffer (:meth:`get_into`); nothing was returned."""


class InvalidKey(PermanentStorageError, ValueError):
    """The key breaks the key rules of :mod:`vmvault.storage.backend`."""


class StorageFull(PermanentStorageError):
    """No space left (or quota exceeded) where the backend stores objects."""


class LockTimeout(PermanentStorageError):
    """The lock was not granted within the caller's timeout."""


class AccessDenied(PermanentStorageError):
    """The service refused the credentials or the request (403, unknown key, bad signature)."""


class BucketMissing(PermanentStorageError):
    """The bucket does not exist."""


class CredentialsUnavailable(PermanentStorageError):
    """No usable credentials: the credentials file or the environment lacks them."""


class LeaseLost(PermanentStorageError):
    """A lease this process held (a lock hold, a writer registration) could not be renewed
    in time: acting on it could be unsafe, so the backend refuses to change anything."""


class EndpointUnreachable(TransientStorageError):
    """No connection to the endpoint (refused, reset, DNS, connect timeout)."""


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` is a storage failure that retrying the same call may cure."""
    return isinstance(exc, StorageError) and exc.transient


def retry(
    call: Callable[[], T],
    *,
    attempts: int = RETRY_ATTEMPTS,
    delay: float = RETRY_DELAY,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, called again after a transient failure (up to ``attempts`` times in all,
    backing off exponentially with jitter: the n-th delay is drawn from
    ``[delay·2ⁿ/2, delay·2ⁿ]``); a permanent failure, or the last transient one, is raised."""
    for n in range(attempts):
        try:
            return call()
        except StorageError as exc:
            if not exc.transient or n == attempts - 1:
                raise
        backoff = delay * (2**n)
        sleep(backoff / 2 + random.uniform(0, backoff / 2))
    raise AssertionError("unreachable")  # pragma: no cover
