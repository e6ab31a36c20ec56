"""One S3 connection of a backend: the botocore client, the bucket and prefix, the server's
clock, and the single retry mechanism.

* **Client**: path-style addressing (any S3-compatible service, no DNS per bucket), a pool
  of ``max_pool_connections`` keep-alive connections so that requests run concurrently,
  connect and read timeouts of a few seconds (a dead endpoint fails within seconds), and
  **botocore's retries off** (``total_max_attempts=1``): a request is retried by exactly one
  mechanism, :func:`vmvault.storage.errors.retry` (backoff with jitter) — by the caller for
  single-object operations (the contract lets it: every operation is idempotent), by
  :meth:`S3Session.call` with ``retried=True`` inside the backend's compound operations
  (batch uploads, listing pages, deletes of many, leases).  Two stacked mechanisms would
  multiply the attempts and hide transient failures from the conformance suite.  Both use
  one policy: ``RETRY_ATTEMPTS`` attempts from ``RETRY_DELAY`` of
  :mod:`vmvault.storage.errors` (the session's ``retry_attempts``/``retry_delay`` default to
  them; only tests shorten the delay).
* **Lean**: a botocore session, not boto3's; no ``cryptography`` import (botocore's probe of
  urllib3's pyOpenSSL shim is made to fail at once); a data loader that knows S3 alone and
  reads vmvault's cut-down S3 model first (:mod:`~vmvault.storage.s3_model`); no
  CRC32 of every body (``request_checksum_calculation="when_required"``: only operations
  that require a checksum get one; chunks, indexes and manifests are authenticated by
  vmvault itself).  Measured in a bare process: +28.7 MiB and ~0.17 s for the imports and
  one client with botocore's whole model, against +44 MiB through boto3; the client itself
  +15.0 → +7.8 MiB with the cut model (docs/vault-format.md §7, "Memory on S3").
* **Clock** (:class:`ServerClock`): the server's ``Date`` header of every response is a
  sample of its clock.  ``Date`` has whole seconds and arrives after it was stamped, so
  ``Date − monotonic()`` at arrival is never more than the true offset; the largest sample
  of the last :data:`CLOCK_WINDOW` seconds is the estimate, so ``now()`` never runs ahead of
  the server (the direction that keeps leases and garbage collection safe) and lags it by
  less than a second.  The local reference is ``time.monotonic`` (a local wall-clock step
  changes nothing); with no sample in the window, ``now()`` asks the server (a HEAD).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from vmvault.storage.errors import RETRY_ATTEMPTS, RETRY_DELAY, retry
from vmvault.storage.s3_credentials import Credentials
from vmvault.storage.s3_errors import translated
from vmvault.storage.s3_model import API_DIR

T = TypeVar("T")

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 20.0
_SESSION: Any = None
_SESSION_MU = threading.Lock()
#: How long a clock sample is trusted (drift of the two clocks is ppm: 60 ms per 10 min).
CLOCK_WINDOW = 600.0


def make_client(
    endpoint: str,
    region: str,
    credentials: Credentials,
    *,
    connections: int,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
) -> Any:
    """A botocore S3 client (see the module docstring); every client of the process shares
    one botocore session, so the S3 model is loaded once."""
    session = botocore_session()
    from botocore.config import Config

    config = Config(
        region_name=region,
        s3={"addressing_style": "path", "payload_signing_enabled": False},
        max_pool_connections=connections,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},
        tcp_keepalive=True,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return session.create_client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.session_token,
        config=config,
    )


def botocore_session() -> Any:
    """The process's botocore session (its loader reads the S3 model once: 13 MiB each)."""
    global _SESSION
    with _SESSION_MU:
        if _SESSION is None:
            # botocore imports urllib3's pyOpenSSL shim only to take the stdlib's original
            # SSLContext from it, and falls back to the stdlib's own when that import fails
            # (here it does: Debian's pyOpenSSL does not match the venv's cryptography) —
            # but the shim has imported ``cryptography`` by then (~9 MiB resident, measured),
            # kept for nothing.  Make that import fail at once: the same SSLContext.
            shim = "urllib3.contrib.pyopenssl"
            blocked = shim not in sys.modules
            if blocked:
                sys.modules[shim] = None  # type: ignore[assignment]
            try:
                import botocore.httpsession
                import botocore.session
            finally:
                if blocked and sys.modules.get(shim, 0) is None:
                    del sys.modules[shim]
            _SESSION = botocore.session.get_session()
            _SESSION.register_component("data_loader", _s3_loader(_SESSION))
        return _SESSION


def _s3_loader(session: Any) -> Any:
    """botocore's data loader, for S3 clients only: it looks first in vmvault's cut-down
    model (:mod:`vmvault.storage.s3_model`: the operations vmvault makes, S3's endpoints;
    measured: a client +15.0 → +6.9 MiB), then in botocore's data for the rest."""
    from botocore.loaders import Loader

    class S3Loader(Loader):  # type: ignore[misc]
        """It does not list the ~900 services' directories (2,700 ``stat`` calls) to check
        that ``s3`` is one."""

        def list_available_services(self, type_name: str) -> list[str]:
            return ["s3"]

    paths = session.get_config_variable("data_path")
    extra = [os.path.expanduser(p) for p in paths.split(os.pathsep)] if paths else []
    return S3Loader(extra_search_paths=[str(API_DIR), *extra])


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
        client: Any,
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
        config = client.meta.config
        #: The longest one request lives once sent: its connect plus its read timeout.
        self.request_seconds = float(config.connect_timeout) + float(config.read_timeout)
        self.clock = ServerClock(self._ask_time)
        client.meta.events.register("after-call.s3", self._after_call)

    def _after_call(self, http_response: Any = None, **_: Any) -> None:
        if http_response is not None:
            self.clock.sample(http_response.headers)

    def _ask_time(self) -> None:
        self.call("HeadBucket", None, retried=True)

    def full(self, key: str) -> str:
        """The bucket key of a vault key."""
        return self.prefix + key

    def call(self, op: str, key: str | None, *, retried: bool = False, **params: Any) -> Any:
        """Make S3 request ``op`` (``"PutObject"``…) on vault key ``key`` (or none): botocore's
        errors become storage errors; with ``retried``, transient ones are retried here."""
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

    def get_bytes(self, key: str) -> bytes:
        """The whole object (retried): for the backend's own small objects."""

        def once() -> bytes:
            with translated("GetObject", key, self.location):
                body = self.client.get_object(Bucket=self.bucket, Key=self.full(key))["Body"]
                with body:
                    return bytes(body.read())

        return self.retry(once)

    def retry(self, call: Callable[[], T]) -> T:
        return retry(call, attempts=self.retry_attempts, delay=self.retry_delay)


def _snake(op: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in op).lstrip("_")
