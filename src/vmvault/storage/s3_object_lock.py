"""Holding an S3 vault's objects: S3 Object Lock (docs/immutability.md, "S3 Object Lock").

:class:`S3ObjectLock` is the S3 backend's :class:`~vmvault.storage.backend.ObjectHold` when
its vault was created with ``--object-lock`` (a bucket created with
``ObjectLockEnabledForBucket``, which turns versioning on for good):

* :meth:`~S3ObjectLock.hold` — per object, ``HeadObject`` (its current retain-until) and,
  only when that is earlier than asked, ``PutObjectRetention`` (mode GOVERNANCE or
  COMPLIANCE) to the asked date plus the caller's margin; a bounded pool of requests.  A
  version under retention cannot be deleted or overwritten *as a version* by anyone (in
  COMPLIANCE mode; GOVERNANCE yields to ``x-amz-bypass-governance-retention`` with its
  permission), and its retention cannot be shortened.
* :meth:`~S3ObjectLock.release` — nothing: a retention ends by itself at its date.
* :meth:`~S3ObjectLock.purge` — deletes every *version* of a key (and its delete markers)
  once none is retained: in a versioned bucket a plain ``DeleteObject`` only adds a delete
  marker and keeps the bytes, so this is how GC reclaims space.  A key still retained is left
  alone (False): GC never asks the storage to delete what it would refuse.

Requests go through the backend's :class:`~vmvault.storage.s3_session.S3Session` (its
retries and error translation, :mod:`~vmvault.storage.s3_errors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from vmvault.domain.immutability import LockMode, extension
from vmvault.storage.errors import ObjectMissing, PermanentStorageError
from vmvault.storage.s3_session import S3Session

#: Requests of one hold in flight (HeadObject / PutObjectRetention are small).
PARALLEL = 8
#: Two versions of a key closer than this may be racing puts (:meth:`first_version`):
#: racing uploads of one chunk land within milliseconds of each other.
RACE_WINDOW = timedelta(seconds=0.5)


class S3ObjectLock:
    """The Object Lock of one vault's bucket (module docstring)."""

    def __init__(self, session: S3Session, clock: Any = None) -> None:
        self.session = session
        self.clock = clock  # the server's clock: () -> epoch seconds (None: this host's)

    def check(self) -> str | None:
        """None when the bucket has Object Lock enabled; else why not."""
        try:
            conf = self.session.call("GetObjectLockConfiguration", None, retried=True)
        except (ObjectMissing, PermanentStorageError):
            conf = {}
        enabled = conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            return (
                f"bucket {self.session.bucket} has no S3 Object Lock (create it with "
                "ObjectLockEnabledForBucket: 'aws s3api create-bucket --object-lock-enabled-"
                "for-bucket')"
            )
        return None

    def retained_until(self, key: str) -> datetime | None:
        """The current version's retain-until (None: not retained); ObjectMissing."""
        head = self.session.call("HeadObject", key, retried=True)
        until = head.get("ObjectLockRetainUntilDate")
        return until.astimezone(UTC) if until is not None else None

    def first_version(self, key: str, ours: str | None) -> bool:
        """Put-if-absent in a versioned bucket, after the PUT: RGW does not honour
        ``If-None-Match: *`` once versioning is on (measured: the PUT of an existing key
        succeeds and adds a version), so the put that made version ``ours`` won only if no
        older version is listed below it, or a delete marker is (the key was absent).  A
        loser answers False, and deletes its own version (it has no retention yet) when the
        older one is older by more than :data:`RACE_WINDOW`: the sequential case (a backup
        re-putting a chunk that exists), after which the key holds the first object, once.
        Racing puts (within the window) keep their versions, and two may both win: a
        listing does not order concurrent versions as their puts ended (measured: racing
        puts that each deleted their own version whenever an older one was listed left the
        key with none).  A version deletes itself only below one older by more than the window, so
        the oldest never does: no race leaves the key without an object
        (tests/unit/storage/test_s3_object_lock.py); racing puts of a chunk carry the same
        bytes."""
        if ours is None:  # not versioned after all: the PUT was conditional
            return True
        entries = self._versions(key)
        # the store's own order of a key's versions, newest first (LastModified has
        # milliseconds: racing puts tie); delete markers are listed apart
        versions = [v for v in entries if "Size" in v]
        ids = [v["VersionId"] for v in versions]
        if ours not in ids:
            return True  # purged meanwhile: nothing to compare with (ours was the put)
        older = versions[ids.index(ours) + 1 :]
        if not older:
            return True
        deleted_since = any(
            "Size" not in m and m["LastModified"] > older[0]["LastModified"] for m in entries
        )
        if deleted_since:  # a delete marker above the older version: the key was absent
            return True
        mine = versions[ids.index(ours)]["LastModified"]
        if mine - older[0]["LastModified"] > RACE_WINDOW:
            self.session.call("DeleteObject", key, retried=True, VersionId=ours)
        return False

    def retention_of(self, key: str) -> dict[str, Any] | None:
        """The current version's retention (``{"Mode", "RetainUntilDate"}``), None if none.
        The backend's touch (a ``CopyObject`` onto itself: a new version, which gets no
        retention of its own — RGW ignores the copy's Object Lock headers) reads it before
        and puts it on the new version after (:meth:`retain`): otherwise the next hold
        would pay a request to retain it again, and the current version would be deletable
        (the retained one then becomes current again: nothing is lost either way)."""
        head = self.session.call("HeadObject", key, retried=True)
        if head.get("ObjectLockRetainUntilDate") is None:
            return None
        return {
            "Mode": head["ObjectLockMode"],
            "RetainUntilDate": head["ObjectLockRetainUntilDate"],
        }

    def retain(self, key: str, retention: dict[str, Any]) -> None:
        """``PutObjectRetention`` of the current version."""
        self.session.call("PutObjectRetention", key, retried=True, Retention=retention)

    def hold(
        self,
        keys: Sequence[str],
        until: datetime,
        mode: LockMode = LockMode.GOVERNANCE,
        margin: timedelta = timedelta(0),
    ) -> int:
        """Retain each object's current version until at least ``until`` (extended to
        ``until + margin`` when it must be extended at all); returns the extensions made."""

        def one(key: str) -> int:
            try:
                current = self.retained_until(key)
            except ObjectMissing:
                return 0
            new = extension(current, until, margin)
            if new is None:
                return 0
            self.retain(key, {"Mode": mode.value.upper(), "RetainUntilDate": new})
            return 1

        if len(keys) <= 1:
            return sum(one(k) for k in keys)
        with ThreadPoolExecutor(PARALLEL, thread_name_prefix="vmvault-lock") as pool:
            return sum(pool.map(one, keys))

    def release(self, keys: Sequence[str]) -> int:
        return 0  # dated: a retention ends by itself

    def purge(self, key: str) -> bool:
        """Delete every version and delete marker of ``key`` unless one is still retained
        (then nothing is deleted: False).  True when nothing of it is left."""
        versions = self._versions(key)
        now = self._now()
        for v in versions:
            if "Size" in v:  # a version (a delete marker holds nothing)
                head = self.session.call("HeadObject", key, retried=True, VersionId=v["VersionId"])
                until = head.get("ObjectLockRetainUntilDate")
                if until is not None and until.timestamp() > now:
                    return False
        for v in versions:
            self.session.call("DeleteObject", key, retried=True, VersionId=v["VersionId"])
        return True

    def _versions(self, key: str) -> list[dict[str, Any]]:
        full = self.session.full(key)
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"Prefix": full}
        while True:
            page = self.session.call("ListObjectVersions", None, retried=True, **params)
            for entry in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]:
                if entry["Key"] == full:
                    found.append(entry)
            if not page.get("IsTruncated"):
                return found
            params["KeyMarker"] = page.get("NextKeyMarker")
            params["VersionIdMarker"] = page.get("NextVersionIdMarker")

    def _now(self) -> float:
        return self.clock() if self.clock is not None else datetime.now(UTC).timestamp()
