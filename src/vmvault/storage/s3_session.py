"""One S3 connection of a backend: the client, the bucket and prefix, the server's clock, and
the single retry mechanism.

* **Client** (:class:`~vmvault.storage.s3_client.S3Client`, vmvault's own): path-style
  addressing, a pool of ``connections`` keep-alive connections so that requests run
  concurrently, connect and read timeouts of a few seconds (a dead endpoint fails within
  seconds), and **no retries of its own**: a request is retried by exactly one mechanism,
  :func:`vmvault.storage.errors.retry` (backoff with jitter) — by the caller for
  single-object operations (the contract lets it: every operation is idempotent), by
  :meth:`S3Session.call` with ``retried=True`` inside the backend's compound operations
  (batch uploads, listing pages, deletes of many, leases).  Two stacked mechanisms would
  multiply the attempts and hide transient failures from the conformance suite.  Both use
  one policy: ``RETRY_ATTEMPTS`` attempts from ``RETRY_DELAY`` of
  :mod:`vmvault.storage.errors` (the session's ``retry_attempts``/``retry_delay`` default to
  them; only tests shorten the delay).
* **Lean**: the client is SigV4 (``hmac``/``hashlib``) over urllib3 and ``xml.etree``: no
  service model to load, no checksum of every body (PUT bodies are sent
  ``UNSIGNED-PAYLOAD``: chunks, indexes and manifests are authenticated by vmvault itself).
  Measured after the CLI's imports (docs/vault-format.md §7, "Memory on S3"): urllib3
  +1.4 MiB, then the backend and one client +1.8 MiB — botocore's modules and client with
  vmvault's cut-down S3 model cost +9.7 MiB there.
* **Clock** (:class:`ServerClock`): the server's ``Date`` header of every response is a
  sample of its clock.  ``Date`` has whole seconds and arrives after it was stamped, so
  ``Date − monotonic()`` at arrival is never more than the true offset; the largest sample
  of the last :data:`CLOCK_WINDOW` seconds is the estimate, so ``now()`` never runs ahead of
  the server (the direction that keeps leases and garbage collection safe) and lags it by
  less than a second.  The local reference is ``time.monotonic`` (a local wall-clock step
  changes nothing); with no sample in the window, ``now()`` asks the server (a HEAD).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from vmvault.storage.errors import RETRY_ATTEMPTS, RETRY_DELAY, retry
from vmvault.storage.s3_client import Body, S3Client
from vmvault.storage.s3_errors import translated

T = TypeVar("T")

#: How long a clock sample is trusted (drift of the two clocks is ppm: 60 ms per 10 min).
CLOCK_WINDOW = 600.0


class ServerClock:
    """The server's clock, estimated from the ``Date`` headers of responses."""

    def __init__(self, ask: Callable[[], None]) -> None:
        self._ask = ask  # a cheap request whose response carries a Date
        self._mu = threading.Lock()
        self._offset = 0.0
        self._taken = -float("inf")  # monotonic time of the current estimate

    def sample(self, headers: Mapping[str, str]) -> None:
        arrived = time.monotonic()
        date = headers.get("date") or headers.get("Date")
        if not date:
            return
        try:
            server = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return
        offset = server - arrived
        with self._mu:
            if offset > self._offset or arrived - self._taken > CLOCK_WINDOW:
                self._offset, self._taken = offset, arrived

    def now(self) -> float:
        with self._mu:
            fresh = time.monotonic() - self._taken <= CLOCK_WINDOW
        if not fresh:
            self._ask()
        with self._mu:
            return time.monotonic() + self._offset


class S3Session:
    """The client, the bucket, the vault's key prefix, its clock and its retry policy."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str,
        *,
        retry_attempts: int = RETRY_ATTEMPTS,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.location = f"s3://{bucket}/{prefix}"
        self.retry_attempts = retry_attempts
        self.retry_delay = retry_delay
        #: The longest one request lives once sent: its connect plus its read timeout.
        self.request_seconds = float(client.connect_timeout) + float(client.read_timeout)
        self.clock = ServerClock(self._ask_time)
        client.hooks.register("after-call", self._after_call)

    def _after_call(self, response: Any = None, **_: Any) -> None:
        if response is not None:
            self.clock.sample(response.headers)

    def _ask_time(self) -> None:
        self.call("HeadBucket", None, retried=True)

    def full(self, key: str) -> str:
        """The bucket key of a vault key."""
        return self.prefix + key

    def call(self, op: str, key: str | None, *, retried: bool = False, **params: Any) -> Any:
        """Make S3 request ``op`` (``"PutObject"``…) on vault key ``key`` (or none): the client's
        failures become storage errors; with ``retried``, transient ones are retried here."""
        method = getattr(self.client, _snake(op))
        if key is not None:
            params.setdefault("Key", self.full(key))
        params.setdefault("Bucket", self.bucket)

        def once() -> Any:
            with translated(op, key, self.location):
                return method(**params)

        return self.retry(once) if retried else once()

    def pages(self, prefix: str, *, retried: bool) -> Iterator[list[dict[str, Any]]]:
        """The objects under vault prefix ``prefix``, one ListObjectsV2 page at a time (with
        ``retried``, each page retried on its own)."""
        params: dict[str, Any] = {"Prefix": self.full(prefix)}
        while True:
            page = self.call("ListObjectsV2", None, retried=retried, **params)
            yield list(page.get("Contents", ()))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            params["ContinuationToken"] = token

    def get_bytes(self, key: str, *, retried: bool = True) -> bytes:
        """The whole object (with ``retried``, retried here: the backend's own objects)."""

        def once() -> bytes:
            with translated("GetObject", key, self.location):
                body: Body = self.client.get_object(Bucket=self.bucket, Key=self.full(key))["Body"]
                with body:
                    return body.read()

        return self.retry(once) if retried else once()

    def retry(self, call: Callable[[], T]) -> T:
        return retry(call, attempts=self.retry_attempts, delay=self.retry_delay)


def _snake(op: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in op).lstrip("_")
