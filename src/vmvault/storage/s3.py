"""A vault in S3-compatible object storage: :class:`S3Backend`, :func:`open_s3`.

Works with any S3-compatible service (Ceph RGW, AWS, MinIO …): path-style addressing and
only the core API in the data path (Put/Get/Head/Copy/DeleteObject(s), ListObjectsV2,
conditional PUT).  Object ``k`` of the contract is ``<prefix>k`` in the bucket; the
backend's lease objects are under ``<prefix>locks/`` and are never listed
(:mod:`~vmvault.storage.s3_leases`).  How each operation maps onto S3 is the table of
``docs/vault-format.md`` §1:

* ``put`` — ``PutObject`` with ``If-None-Match: *``: 412 → False (another object has the
  key; RGW and AWS both refuse atomically, which the conformance race test checks), 409
  ``ConditionalRequestConflict`` (a racing conditional write still in progress) → asked again.
* ``publish`` — plain ``PutObject`` (a single PUT is atomic: readers see old or new, whole).
* batches — conditional PUTs on a bounded pool (:mod:`~vmvault.storage.s3_batch`); a 412
  is followed by a touch (the contract: an add whose key exists refreshes its mtime).
* ``get_into`` — ``GetObject`` streamed straight into the caller's buffer.
* ``stat``/``exists`` — ``HeadObject``; ``touch`` — ``CopyObject`` onto itself with
  ``MetadataDirective=REPLACE`` (a new ``LastModified``; 404 → False).
* ``delete_prefix`` — listing + ``DeleteObjects`` of 1,000 keys at a time.
* ``sweep_leftovers`` — aborts incomplete multipart uploads under the prefix (this backend
  starts none; another client's might be left there).
* ``now`` — the server's clock (:class:`~vmvault.storage.s3_session.ServerClock`).

Errors are translated by :mod:`~vmvault.storage.s3_errors`; retries are
:func:`~vmvault.storage.errors.retry`'s only (:mod:`~vmvault.storage.s3_session`).  Every
change is refused once a lease held by this backend has lapsed
(:class:`~vmvault.storage.errors.LeaseLost`).

**Test seam**: S3 cannot set an object's ``LastModified``.  :meth:`S3Backend.age_for_tests`
makes this backend *report* one key's mtime ``seconds`` earlier (in ``stat`` and
``list_objects``) until the key is touched, written or deleted through it — only the
conformance harness calls it; nothing in vmvault does.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from vmvault.domain.vault import S3Location
from vmvault.storage.backend import (
    Data,
    Guard,
    ObjectHold,
    ObjectInfo,
    Usage,
    WriterInfo,
    check_key,
    parts_of,
    usage_of,
)
from vmvault.storage.errors import (
    RETRY_ATTEMPTS,
    RETRY_DELAY,
    InvalidKey,
    ObjectMissing,
    ObjectTooLarge,
    PermanentStorageError,
    TransientStorageError,
)
from vmvault.storage.s3_batch import Body as UploadBody
from vmvault.storage.s3_batch import ByteBudget, S3Batch
from vmvault.storage.s3_client import Body, S3Client, S3ServiceError
from vmvault.storage.s3_credentials import load_credentials
from vmvault.storage.s3_errors import error_code, translated
from vmvault.storage.s3_leases import LOCKS, Leases
from vmvault.storage.s3_object_lock import S3ObjectLock
from vmvault.storage.s3_session import S3Session

#: Uploads of one batch in flight, and the bytes all batches of a backend may hold meanwhile:
#: room for ``UPLOADS`` chunk files of a 4 MiB chunk (a chunk file is its data plus a header
#: and, encrypted, a tag: with exactly 12 MiB only two incompressible chunks fitted, so only
#: two uploads ran — measured: the backup's workers waited 8.6 s on the budget).
UPLOADS = 3
INFLIGHT_BYTES = UPLOADS * ((4 << 20) + (64 << 10))
LEASE_SECONDS = 120.0
RENEW_SECONDS = 30.0
_DELETE_MAX = 1000
_CONFLICT_TRIES = 8


def open_s3(location: S3Location, **options: Any) -> S3Backend:
    """The backend of ``location``, credentials from its file or the environment.

    Makes no request (:meth:`S3Backend.probe` checks the endpoint, keys and bucket);
    :class:`~vmvault.storage.errors.CredentialsUnavailable` when no credential is found.
    ``options`` go to :class:`S3Backend` (lease length, uploads, timeouts …).
    """
    credentials = load_credentials(location.credentials_file)
    uploads = int(options.pop("uploads", UPLOADS))
    timeouts = {k: options.pop(k) for k in ("connect_timeout", "read_timeout") if k in options}
    client = S3Client(
        location.endpoint,
        location.region,
        credentials,
        connections=uploads + 8,
        **timeouts,
    )
    backend = S3Backend(client, location.bucket, location.prefix, uploads=uploads, **options)
    if location.object_lock:
        backend.object_lock = S3ObjectLock(backend.session, backend.now)
        backend.holds = backend.object_lock
    return backend


class S3Backend:
    """Objects of one vault in one bucket under one prefix (see the module docstring)."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str = "",
        *,
        uploads: int = UPLOADS,
        inflight_bytes: int = INFLIGHT_BYTES,
        lease_seconds: float = LEASE_SECONDS,
        renew_seconds: float = RENEW_SECONDS,
        retry_attempts: int = RETRY_ATTEMPTS,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        self.session = S3Session(
            client, bucket, prefix, retry_attempts=retry_attempts, retry_delay=retry_delay
        )
        self.location = self.session.location
        self.remote = True
        #: S3 Object Lock when the vault has it (:func:`open_s3`; docs/immutability.md)
        self.holds: ObjectHold | None = None
        self.object_lock: S3ObjectLock | None = None
        self.uploads = uploads
        self.budget = ByteBudget(inflight_bytes)
        self.leases = Leases(self.session, lease_seconds, renew_seconds)
        self._aged: dict[str, float] = {}
        self._aged_mu = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Backend({self.location!r})"

    # --- probe -------------------------------------------------------------------------------

    def probe(self) -> None:
        """Check, in two requests, that the endpoint answers, the credentials are accepted and
        the bucket exists and takes writes: PUT then DELETE ``<prefix>locks/probe-<uuid>``.
        Raises :class:`EndpointUnreachable`, :class:`AccessDenied`, :class:`BucketMissing`
        (or another :class:`StorageError`)."""
        key = f"{LOCKS}probe-{uuid.uuid4().hex}"
        self.session.call("PutObject", key, Body=b"vmvault probe")
        self.session.call("DeleteObject", key, retried=True)

    # --- objects -----------------------------------------------------------------------------

    def put(self, key: str, data: Data) -> bool:
        check_key(key)
        return self.put_once(key, _body(data))

    def put_once(self, key: str, body: UploadBody) -> bool:
        """One conditional PUT (a 409 conflict is asked again: it is not a failure)."""
        self.leases.check()
        self._forget_age(key)
        for _ in range(_CONFLICT_TRIES):
            with translated("PutObject", key, self.location):
                created = self._put_if_absent(key, body)
            if created is not None:
                return created
        raise TransientStorageError(
            f"PutObject of {self.location}{key}: conditional writes kept conflicting",
            key=key,
            location=self.location,
        )

    def _put_if_absent(self, key: str, body: UploadBody) -> bool | None:
        """True: created; False: the key exists (412); None: a racing write (409)."""
        try:
            with _sendable(body) as data:
                made = self.session.client.put_object(
                    Bucket=self.session.bucket,
                    Key=self.session.full(key),
                    Body=data,
                    IfNoneMatch="*",
                )
        except S3ServiceError as exc:
            code, status = error_code(exc)
            if status == 412 or code == "PreconditionFailed":
                return False
            if status == 409 and code == "ConditionalRequestConflict":
                return None
            raise
        if self.object_lock is not None:  # a versioned bucket: RGW ignores If-None-Match
            return self.object_lock.first_version(key, made.get("VersionId"))
        return True

    def publish(self, key: str, data: Data) -> None:
        check_key(key)
        self.leases.check()
        self._forget_age(key)
        self.session.call("PutObject", key, Body=_body(data))

    def begin_batch(self, guard: Guard | None = None) -> S3Batch:
        return S3Batch(self, self.uploads, guard)

    def get(self, key: str) -> bytes:
        check_key(key)
        return self.session.get_bytes(key, retried=False)

    def get_into(self, key: str, buf: memoryview) -> int:
        check_key(key)
        with translated("GetObject", key, self.location):
            response = self.session.client.get_object(
                Bucket=self.session.bucket, Key=self.session.full(key)
            )
            body: Body = response["Body"]
            with body:
                size = body.length
                if size > len(buf):
                    raise ObjectTooLarge(
                        f"{self.location}{key} has {size} bytes, the buffer {len(buf)}",
                        key=key,
                        location=self.location,
                    )
                got = 0
                while got < size:
                    n = body.readinto(buf[got:size])
                    if not n:
                        raise TransientStorageError(
                            f"GetObject of {self.location}{key}: the body ended after {got} "
                            f"of {size} bytes",
                            key=key,
                            location=self.location,
                        )
                    got += n
                return size

    def stat(self, key: str) -> ObjectInfo:
        check_key(key)
        head = self.session.call("HeadObject", key)
        mtime = head["LastModified"].timestamp() - self._age_of(key)
        return ObjectInfo(key, int(head["ContentLength"]), mtime)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectMissing:
            return False
        return True

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        _check_prefix(prefix)
        cut = len(self.session.prefix)
        for page in self.session.pages(prefix, retried=False):
            for obj in page:
                key = obj["Key"][cut:]
                if key.startswith(LOCKS):
                    continue
                mtime = obj["LastModified"].timestamp() - self._age_of(key)
                yield ObjectInfo(key, int(obj["Size"]), mtime)

    def delete(self, key: str, *, sync: bool = True) -> None:
        check_key(key)
        self.leases.check()
        self._forget_age(key)
        self.session.call("DeleteObject", key)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/") or not prefix.strip("/"):
            raise InvalidKey("a prefix to delete names a directory: 'a/b/'", key=prefix)
        check_key(prefix[:-1])
        self.leases.check()
        keys = [info.key for info in self.list_objects(prefix)]
        for start in range(0, len(keys), _DELETE_MAX):
            some = keys[start : start + _DELETE_MAX]
            objects = [{"Key": self.session.full(k)} for k in some]
            answer = self.session.call(
                "DeleteObjects", None, retried=True, Delete={"Objects": objects, "Quiet": True}
            )
            errors = answer.get("Errors") or []
            if errors:
                first = errors[0]
                raise PermanentStorageError(
                    f"DeleteObjects under {self.location}{prefix}: {len(errors)} not deleted "
                    f"({first.get('Code')} on {first.get('Key')})",
                    key=prefix,
                    location=self.location,
                )
            for k in some:
                self._forget_age(k)
        return len(keys)

    def touch(self, key: str) -> bool:
        check_key(key)
        self.leases.check()
        full = self.session.full(key)
        try:  # Object Lock: the new version keeps the retention (docs/immutability.md)
            kept = self.object_lock.retention_of(key) if self.object_lock is not None else None
            self.session.call(
                "CopyObject",
                key,
                CopySource={"Bucket": self.session.bucket, "Key": full},
                MetadataDirective="REPLACE",
            )
            if kept is not None and self.object_lock is not None:
                self.object_lock.retain(key, kept)
        except ObjectMissing:
            return False
        self._forget_age(key)
        return True

    def usage(self, prefix: str = "") -> Usage:
        return usage_of(self.list_objects(prefix))

    def sweep_leftovers(self, older_than: float, *, dry_run: bool = False) -> int:
        params: dict[str, Any] = {"Prefix": self.session.prefix}
        swept = 0
        while True:
            page = self.session.call("ListMultipartUploads", None, retried=True, **params)
            for upload in page.get("Uploads", ()):
                if upload["Initiated"].timestamp() >= older_than:
                    continue
                swept += 1
                if not dry_run:
                    self.session.call(
                        "AbortMultipartUpload",
                        None,
                        retried=True,
                        Key=upload["Key"],
                        UploadId=upload["UploadId"],
                    )
            if not page.get("IsTruncated"):
                return swept
            params["KeyMarker"] = page.get("NextKeyMarker", "")
            params["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    def now(self) -> float:
        return self.session.clock.now()

    def create_layout(self, prefixes: Sequence[str]) -> None:
        """Nothing to prepare: object storage has no directories."""

    # --- locks and writers -------------------------------------------------------------------

    def lock(
        self, name: str, *, exclusive: bool, timeout: float | None
    ) -> AbstractContextManager[None]:
        return self.leases.lock(name, exclusive=exclusive, timeout=timeout)

    def register_writer(self, name: str) -> AbstractContextManager[WriterInfo]:
        return self.leases.register_writer(name)

    def live_writers(self) -> list[WriterInfo]:
        return self.leases.live_writers()

    # --- the test seam -----------------------------------------------------------------------

    def age_for_tests(self, key: str, seconds: float) -> None:
        """Report ``key``'s mtime ``seconds`` earlier (see the module docstring)."""
        check_key(key)
        with self._aged_mu:
            self._aged[key] = self._aged.get(key, 0.0) + seconds

    def _age_of(self, key: str) -> float:
        if not self._aged:
            return 0.0
        with self._aged_mu:
            return self._aged.get(key, 0.0)

    def _forget_age(self, key: str) -> None:
        if self._aged:
            with self._aged_mu:
                self._aged.pop(key, None)


@contextmanager
def _sendable(body: UploadBody) -> Iterator[bytes | memoryview]:
    """What the client sends of ``body``: a mapped body's view, no copy."""
    if isinstance(body, bytes):
        yield body
        return
    with memoryview(body.mapping) as view, view[: body.size] as part:
        yield part


def _body(data: Data) -> bytes:
    parts = parts_of(data)
    if len(parts) == 1:
        return bytes(parts[0])
    return b"".join(parts)


def _check_prefix(prefix: str) -> None:
    if prefix.startswith("/") or "//" in prefix or len(prefix) > 512:
        raise InvalidKey(f"prefix {prefix!r}", key=prefix)
