"""The S3 client's failures as storage errors (:mod:`vmvault.storage.s3_errors`): the
mapping table, fed by the client's own answers (a ``before-send`` hook answers in place of
the service: no request leaves the process) and by urllib3's and http.client's exceptions."""

from __future__ import annotations

import http.client
from typing import Any

import pytest
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
from vmvault.storage.s3_client import Response, S3Client, S3ServiceError
from vmvault.storage.s3_credentials import Credentials
from vmvault.storage.s3_errors import translate, translated

SECRET = "wJalrXUtnFEMI-not-a-real-secret"


def _client(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> S3Client:
    client = S3Client(
        "http://127.0.0.1:9", "us-east-1", Credentials("AKIDTEST", SECRET), connections=2
    )

    def answer(**_: Any) -> Response:
        return Response(status, headers or {}, body)

    client.hooks.register("before-send", answer)
    return client


def _error(code: str, message: str = "m") -> bytes:
    return f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()


def _raised(client: S3Client, call: str, **params: Any) -> StorageError:
    with pytest.raises(StorageError) as exc, translated(call, "k", "s3://b/v/"):
        getattr(client, call)(Bucket="b", **params)
    return exc.value


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (404, "NoSuchKey", ObjectMissing),
        (404, "NoSuchBucket", BucketMissing),
        (403, "AccessDenied", AccessDenied),
        (403, "SignatureDoesNotMatch", AccessDenied),
        (400, "RequestTimeTooSkewed", AccessDenied),
        (507, "InsufficientStorage", StorageFull),
        (403, "QuotaExceeded", AccessDenied),  # a 403 is a refusal first
        (400, "QuotaExceeded", StorageFull),
        (503, "SlowDown", TransientStorageError),
        (500, "InternalError", TransientStorageError),
        (409, "ConditionalRequestConflict", TransientStorageError),
        (429, "TooManyRequests", TransientStorageError),
        (400, "InvalidArgument", PermanentStorageError),
    ],
)
def test_a_refusal_is_mapped_by_its_code_and_status(
    status: int, code: str, expected: type[StorageError]
) -> None:
    err = _raised(_client(status, _error(code)), "list_objects_v2", Prefix="v/")
    assert type(err) is expected
    assert code in str(err) or type(err) in (ObjectMissing, BucketMissing)


def test_a_head_s_refusal_has_no_body_its_status_is_its_code() -> None:
    assert type(_raised(_client(404), "head_object", Key="v/k")) is ObjectMissing
    assert type(_raised(_client(403), "head_object", Key="v/k")) is AccessDenied


def test_a_copy_answering_200_with_an_error_document_failed() -> None:
    err = _raised(
        _client(200, _error("InternalError")), "copy_object", Key="v/k", CopySource="b/v/k"
    )
    assert type(err) is TransientStorageError and "InternalError" in str(err)


def test_an_authentication_refusal_does_not_echo_the_service_s_message() -> None:
    body = _error("SignatureDoesNotMatch", f"the string to sign AKIDTEST {SECRET}")
    err = _raised(_client(403, body), "list_objects_v2", Prefix="v/")
    assert SECRET not in str(err) and "AKIDTEST" not in str(err)


def test_answers_are_parsed_into_botocore_s_shapes() -> None:
    page = (
        b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<IsTruncated>true</IsTruncated><NextContinuationToken>t1</NextContinuationToken>"
        b"<Contents><Key>v/a</Key><LastModified>2026-12-02T19:00:01.500Z</LastModified>"
        b"<Size>7</Size></Contents></ListBucketResult>"
    )
    got = _client(200, page).list_objects_v2(Bucket="b", Prefix="v/")
    assert got["IsTruncated"] is True and got["NextContinuationToken"] == "t1"
    [obj] = got["Contents"]  # one object: still a list
    assert obj["Key"] == "v/a" and obj["Size"] == 7
    assert obj["LastModified"].timestamp() == 1796238001.5
    head = _client(
        200,
        headers={
            "Content-Length": "12",
            "Last-Modified": "Wed, 02 Dec 2026 19:00:01 GMT",
            "x-amz-object-lock-retain-until-date": "2027-01-01T00:00:00.000Z",
            "x-amz-object-lock-mode": "GOVERNANCE",
        },
    ).head_object(Bucket="b", Key="v/a")
    assert head["ContentLength"] == 12 and head["LastModified"].timestamp() == 1796238001
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"].year == 2027


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ux.NewConnectionError(None, "refused"), EndpointUnreachable),
        (ux.NameResolutionError("h", None, OSError()), EndpointUnreachable),
        (ux.ConnectTimeoutError("slow"), EndpointUnreachable),
        (ux.ReadTimeoutError(None, "/", "read timed out"), TransientStorageError),
        (ux.ProtocolError("Connection aborted."), TransientStorageError),
        (http.client.IncompleteRead(b"", 10), TransientStorageError),
        (ConnectionResetError(), TransientStorageError),
        (TimeoutError(), TransientStorageError),
    ],
)
def test_transport_failures(exc: BaseException, expected: type[StorageError]) -> None:
    err = translate(exc, "PutObject", "chunks/aa/x", "s3://b/v/")
    assert type(err) is expected and err.transient
    assert "s3://b/v/chunks/aa/x" in str(err)


def test_anything_else_is_not_swallowed() -> None:
    with pytest.raises(KeyError):
        translate(KeyError("x"), "GetObject", None, "s3://b/")
    assert isinstance(S3ServiceError("GetObject", 500, "X", ""), Exception)
