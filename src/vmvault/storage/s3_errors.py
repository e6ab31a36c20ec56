"""The S3 client's failures as the storage contract's errors (:mod:`vmvault.storage.errors`).

The service's refusals are :class:`~vmvault.storage.s3_client.S3ServiceError` (its error code
and HTTP status, in botocore's ``response`` shape); transport failures are urllib3's and the
standard library's own exceptions (:mod:`~vmvault.storage.s3_client` reads bodies straight
from ``http.client``).

=======================================================  ====================================
S3 error code / HTTP status / transport                  storage error
=======================================================  ====================================
404, ``NoSuchKey``, ``NotFound``                          :class:`ObjectMissing`
``NoSuchBucket``                                          :class:`BucketMissing`
403, ``AccessDenied``, ``InvalidAccessKeyId``,            :class:`AccessDenied`
``SignatureDoesNotMatch``, ``RequestTimeTooSkewed``
``QuotaExceeded``, 507                                    :class:`StorageFull`
5xx, 429, ``SlowDown``, ``RequestTimeout``,               :class:`TransientStorageError`
``ServiceUnavailable``, ``InternalError``,
409 ``ConditionalRequestConflict`` (a racing
conditional write: try again)
connection refused/reset, DNS, connect timeout            :class:`EndpointUnreachable`
                                                          (transient)
read timeout, a body cut short, a dropped connection      :class:`TransientStorageError`
anything else                                             :class:`PermanentStorageError`
=======================================================  ====================================

Messages name the operation, the key and the vault's location, and the service's error code;
never a credential (the service's message is left out of authentication errors, whose
responses may echo the access key id or the string that was signed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from http.client import HTTPException
from xml.etree.ElementTree import ParseError

from urllib3 import exceptions as ux

from vmvault.storage.errors import (
    AccessDenied,
    BucketMissing,
    EndpointUnreachable,
    ObjectMissing,
    PermanentStorageError,
    StorageError,
    StorageFull,
    TransientStorageError,
)
from vmvault.storage.s3_client import S3ServiceError

_MISSING = {"404", "NoSuchKey", "NotFound"}
_DENIED = {
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "RequestTimeTooSkewed",
    "InvalidToken",
    "ExpiredToken",
}
_FULL = {"QuotaExceeded", "InsufficientStorage", "507"}
_TRANSIENT = {
    "SlowDown",
    "RequestTimeout",
    "ServiceUnavailable",
    "InternalError",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
    "ConditionalRequestConflict",
    "OperationAborted",
}
_UNREACHABLE = (
    ux.NewConnectionError,  # refused, DNS (NameResolutionError)
    ux.ConnectTimeoutError,
    ux.ProxyError,
)
_DROPPED = (
    ux.ReadTimeoutError,
    ux.ProtocolError,  # a connection reset or closed mid-request
    ux.HTTPError,
    HTTPException,  # http.client: a body cut short (IncompleteRead)
    ConnectionError,
    TimeoutError,
)


def error_code(exc: S3ServiceError) -> tuple[str, int]:
    """The service's error code and the HTTP status of a refusal."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def translate(exc: BaseException, op: str, key: str | None, location: str) -> StorageError:
    """The storage error for ``exc``, raised by the S3 request ``op`` on ``key``."""
    where = f"{location.rstrip('/')}/{key}" if key else location
    if isinstance(exc, S3ServiceError):
        code, status = error_code(exc)
        label = f"{status} {code}".strip()
        if code in _MISSING or (status == 404 and code not in {"NoSuchBucket"}):
            return ObjectMissing(f"no object {where}", key=key, location=location)
        if code == "NoSuchBucket":
            return BucketMissing(
                f"{op}: the bucket of {location} does not exist", key=key, location=location
            )
        if code in _DENIED or status == 403:
            return AccessDenied(
                f"{op} of {where} was refused ({label}): the credentials are wrong or lack "
                "the permission",
                key=key,
                location=location,
            )
        message = str(exc.response.get("Error", {}).get("Message", ""))[:200]
        text = f"{op} of {where} failed: {label}" + (f" ({message})" if message else "")
        if code in _FULL or status == 507:
            return StorageFull(text, key=key, location=location)
        if code in _TRANSIENT or status >= 500 or status in (409, 429):
            return TransientStorageError(text, key=key, location=location)
        return PermanentStorageError(text, key=key, location=location)
    if isinstance(exc, _UNREACHABLE):
        return EndpointUnreachable(
            f"{op} of {where}: the endpoint cannot be reached ({type(exc).__name__})",
            key=key,
            location=location,
        )
    if isinstance(exc, _DROPPED):
        return TransientStorageError(
            f"{op} of {where}: the connection failed ({type(exc).__name__})",
            key=key,
            location=location,
        )
    if isinstance(exc, ParseError):  # an answer that is not what S3 answers
        return PermanentStorageError(
            f"{op} of {where}: {type(exc).__name__}", key=key, location=location
        )
    raise exc


@contextmanager
def translated(op: str, key: str | None, location: str) -> Iterator[None]:
    """Raise the client's (urllib3's, http.client's) errors inside the block as storage
    errors."""
    try:
        yield
    except StorageError:
        raise
    except (
        S3ServiceError,
        ux.HTTPError,
        HTTPException,
        ParseError,
        ConnectionError,
        TimeoutError,
    ) as exc:
        raise translate(exc, op, key, location) from None
