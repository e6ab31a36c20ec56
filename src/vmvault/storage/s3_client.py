"""vmvault's own S3 client: the requests vmvault makes, signed (:mod:`~vmvault.storage.s3_sigv4`)
and sent over a pool of keep-alive connections (urllib3), nothing more.

* **Operations** — exactly those vmvault makes, as methods named and parametrised like
  botocore's (``put_object(Bucket=, Key=, Body=, IfNoneMatch=)``) and answering botocore's
  dicts (:mod:`~vmvault.storage.s3_xml`), so that the storage code reads as S3's API:

  ==========================  ================================================  ================
  operation                   request                                           used by
  ==========================  ================================================  ================
  HeadBucket                  ``HEAD /b``                                       the clock
  PutObject                   ``PUT /b/k`` (``If-None-Match: *``), body         put, leases
                              unsigned (``UNSIGNED-PAYLOAD``)
  GetObject                   ``GET /b/k``: a body read into the caller's       get, get_into
                              buffer (:meth:`S3Client.get_into`)
  HeadObject                  ``HEAD /b/k[?versionId=]``                        stat, Object Lock
  CopyObject                  ``PUT /b/k`` + ``x-amz-copy-source``,             touch, leases
                              ``x-amz-metadata-directive: REPLACE``
  DeleteObject                ``DELETE /b/k[?versionId=]``                      delete, leases
  DeleteObjects               ``POST /b?delete`` + ``Content-MD5``              delete_prefix
  ListObjectsV2               ``GET /b?list-type=2&prefix=&continuation-token=``  listings
  ListObjectVersions          ``GET /b?versions&prefix=&key-marker=…``          Object Lock
  ListMultipartUploads        ``GET /b?uploads&prefix=&key-marker=…``           sweep_leftovers
  AbortMultipartUpload        ``DELETE /b/k?uploadId=``                         sweep_leftovers
  CreateBucket                ``PUT /b``                                        bench/ only
  GetObjectLockConfiguration  ``GET /b?object-lock``                            vault create
  PutObjectRetention          ``PUT /b/k?retention`` + ``Content-MD5``          Object Lock
  ==========================  ================================================  ================

* **Addressing**: path style (``<endpoint>/<bucket>/<key>``): any S3-compatible service, no
  DNS name per bucket.
* **Connections**: one urllib3 pool of ``connections`` keep-alive connections (TCP
  keepalive on) per client, so that requests run concurrently; connect and read timeouts of
  a few seconds (a dead endpoint fails within seconds).  **No retries** here (urllib3's are
  off, redirects too): a request is retried by exactly one mechanism,
  :func:`vmvault.storage.errors.retry` (:mod:`~vmvault.storage.s3_session`).
* **Answers**: a status of 300 or more — or a 200 whose body is an ``<Error>`` document
  (S3's CopyObject may answer so) — raises :class:`S3ServiceError` carrying botocore's
  ``response`` shape (``Error.Code``, ``ResponseMetadata.HTTPStatusCode``), which
  :mod:`~vmvault.storage.s3_errors` translates; a HEAD's error has no body: its code is the
  status (``"404"``).  Transport failures are urllib3's own exceptions, translated there too.
* **Hooks** (:class:`Hooks`): ``before-call`` (once per call, with its parameters),
  ``before-send`` (once per request sent, with the signed :class:`Request`; a handler may
  answer instead of the service, or raise), ``after-call`` (every answer: the session's
  clock reads its ``Date``).  The leases refuse changes there; tests count requests and
  inject failures there.

Credentials stay inside the :class:`~vmvault.storage.s3_sigv4.Signer`; no request, header or
error message is logged.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from urllib3 import (
    BaseHTTPResponse,
    HTTPConnectionPool,
    HTTPHeaderDict,
    HTTPSConnectionPool,
    Timeout,
)
from urllib3.connection import HTTPConnection

from vmvault.storage.s3_credentials import Credentials
from vmvault.storage.s3_sigv4 import UNSIGNED, Signer, canonical_query, quote_path
from vmvault.storage.s3_xml import (
    content_md5,
    delete_body,
    error_of,
    parse,
    parse_time,
    retention_body,
)

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 20.0
_AMZ_LOCK = "x-amz-object-lock-"


class S3ServiceError(Exception):
    """The service refused a request: ``response`` has botocore's shape."""

    def __init__(self, op: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{op}: {status} {code}")
        self.op = op
        self.response: dict[str, Any] = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }


@dataclass
class Request:
    """One signed request, as it is sent (``url``: endpoint, path and query)."""

    op: str
    method: str
    url: str
    headers: dict[str, str]
    body: Any = None


@dataclass
class Response:
    """An answer read whole (what a ``before-send`` handler may return instead)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    data: bytes = b""


class Hooks:
    """Handlers of ``EVENT`` (every operation) or ``EVENT.Operation``; called as
    ``fn(op=…, **details)``; the first that returns something ends the emission."""

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._handlers: dict[str, list[Callable[..., Any]]] = {}

    def register(self, event: str, fn: Callable[..., Any], *, first: bool = False) -> None:
        with self._mu:
            handlers = [*self._handlers.get(event, [])]
            handlers.insert(0 if first else len(handlers), fn)
            self._handlers[event] = handlers

    def unregister(self, event: str, fn: Callable[..., Any]) -> None:
        with self._mu:
            self._handlers[event] = [h for h in self._handlers.get(event, []) if h is not fn]

    def emit(self, event: str, op: str, **details: Any) -> Any:
        if not self._handlers:
            return None
        for name in (f"{event}.{op}", event):
            for fn in self._handlers.get(name, ()):
                answer = fn(op=op, **details)
                if answer is not None:
                    return answer
        return None


class Body:
    """The body of a GetObject, read by the caller (then closed: ``with``)."""

    def __init__(self, raw: BaseHTTPResponse | Response, length: int) -> None:
        self._raw = raw
        self.length = length
        self._got = 0

    def readinto(self, view: memoryview) -> int:
        """Read into ``view`` (straight from the socket when the body is not encoded)."""
        raw = self._raw
        if isinstance(raw, Response):
            n = min(len(view), len(raw.data) - self._got)
            view[:n] = raw.data[self._got : self._got + n]
        else:
            fp = getattr(raw, "_fp", None)  # http.client's response: no copy, no allocation
            if fp is not None and not raw.headers.get("content-encoding"):
                n = int(fp.readinto(view))
            else:
                n = raw.readinto(view)
        self._got += n
        return n

    def read(self) -> bytes:
        """The rest of the body (one allocation)."""
        raw = self._raw
        data = raw.data[self._got :] if isinstance(raw, Response) else raw.read()
        self._got += len(data)
        return data

    def close(self) -> None:
        raw = self._raw
        if isinstance(raw, BaseHTTPResponse):
            if self._got < self.length:
                raw.close()  # a body not read to its end: the connection is not reused
            raw.release_conn()

    def __enter__(self) -> Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class S3Client:
    """Requests to one endpoint with one key pair (see the module docstring)."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        credentials: Credentials,
        *,
        connections: int,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"an S3 endpoint is an http(s) URL, not {endpoint!r}")
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self._base = parts.path.rstrip("/")
        self._host = parts.netloc.rpartition("@")[2]
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.connections = connections
        self._signer = Signer(
            credentials.access_key, credentials.secret_key, region, "s3", credentials.session_token
        )
        pool = HTTPSConnectionPool if parts.scheme == "https" else HTTPConnectionPool
        self._pool = pool(
            parts.hostname,
            parts.port,
            maxsize=connections,
            timeout=Timeout(connect=connect_timeout, read=read_timeout),
            retries=False,
            socket_options=[
                *HTTPConnection.default_socket_options,
                (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
            ],
        )
        self.hooks = Hooks()

    def __repr__(self) -> str:
        return f"S3Client({self.endpoint!r})"

    def close(self) -> None:
        self._pool.close()

    # --- the requests ------------------------------------------------------------------------

    def _send(
        self,
        op: str,
        method: str,
        bucket: str,
        key: str | None = None,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        stream: bool = False,
    ) -> Response | BaseHTTPResponse:
        path = f"{self._base}/{quote_path(bucket)}" + ("" if key is None else "/" + quote_path(key))
        query = query or {}
        sent = {"host": self._host, **{k.lower(): v for k, v in (headers or {}).items()}}
        if body is None and method in ("PUT", "POST"):
            body = b""
        if body is not None:
            sent["content-length"] = str(memoryview(body).nbytes)
        digest = UNSIGNED if op == "PutObject" else hashlib.sha256(body or b"").hexdigest()
        self._signer.sign(method, path, query, sent, digest)
        target = path + ("?" + canonical_query(query) if query else "")
        request = Request(op, method, self.endpoint + target, sent, body)
        injected = self.hooks.emit("before-send", op, request=request)
        answer: Response | BaseHTTPResponse
        if isinstance(injected, Response):  # a handler answered: its headers as a server's
            answer = Response(injected.status, HTTPHeaderDict(injected.headers), injected.data)
        else:
            answer = self._pool.urlopen(
                method,
                target,
                body=body,
                headers=sent,
                retries=False,
                redirect=False,
                assert_same_host=False,
                preload_content=not stream,
                decode_content=False,
            )
        self.hooks.emit("after-call", op, response=answer)
        failed = answer.status >= 300
        if not failed and op == "CopyObject":  # S3 may answer a failed copy with a 200
            failed = _data(answer).lstrip().startswith((b"<Error", b"<?xml")) and (
                error_of(_data(answer)) is not None
            )
        if failed:
            if isinstance(answer, BaseHTTPResponse) and stream:
                data = answer.read()
                answer.release_conn()
            else:
                data = _data(answer)
            code, message = error_of(data) or (str(answer.status), "")
            raise S3ServiceError(op, answer.status, code, message)
        return answer

    def _doc(self, op: str, method: str, bucket: str, **kw: Any) -> dict[str, Any]:
        key = kw.pop("key", None)
        self.hooks.emit("before-call", op, params={"Bucket": bucket, "Key": key})
        _, doc = parse(_data(self._send(op, method, bucket, key, **kw)))
        return doc

    def head_bucket(self, *, Bucket: str) -> dict[str, Any]:
        return self._doc("HeadBucket", "HEAD", Bucket)

    def create_bucket(
        self, *, Bucket: str, ObjectLockEnabledForBucket: bool = False
    ) -> dict[str, Any]:
        """(The benchmark's buckets; vmvault itself never creates one.)"""
        headers = {"x-amz-bucket-object-lock-enabled": "true"} if ObjectLockEnabledForBucket else {}
        return self._doc("CreateBucket", "PUT", Bucket, headers=headers)

    def put_object(
        self, *, Bucket: str, Key: str, Body: Any = b"", IfNoneMatch: str | None = None
    ) -> dict[str, Any]:
        self.hooks.emit("before-call", "PutObject", params={"Bucket": Bucket, "Key": Key})
        headers = {"if-none-match": IfNoneMatch} if IfNoneMatch else {}
        answer = self._send("PutObject", "PUT", Bucket, Key, headers=headers, body=Body)
        out = {"ETag": answer.headers.get("etag", "")}
        if answer.headers.get("x-amz-version-id"):
            out["VersionId"] = answer.headers["x-amz-version-id"]
        return out

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        """``Body`` (a :class:`Body`, to be closed) and ``ContentLength``."""
        self.hooks.emit("before-call", "GetObject", params={"Bucket": Bucket, "Key": Key})
        answer = self._send("GetObject", "GET", Bucket, Key, stream=True)
        if isinstance(answer, BaseHTTPResponse) and "content-length" not in answer.headers:
            whole = answer.read()  # no length announced (chunked): read it whole here
            answer.release_conn()
            answer = Response(answer.status, answer.headers, whole)
        if isinstance(answer, Response):
            length = len(answer.data)
        else:  # read lazily by the caller (.data would read the whole body here)
            length = int(answer.headers["content-length"])
        return {"Body": Body(answer, length), "ContentLength": length}

    def head_object(self, *, Bucket: str, Key: str, VersionId: str | None = None) -> dict[str, Any]:
        self.hooks.emit("before-call", "HeadObject", params={"Bucket": Bucket, "Key": Key})
        query = {"versionId": VersionId} if VersionId else None
        h = self._send("HeadObject", "HEAD", Bucket, Key, query=query).headers
        out: dict[str, Any] = {
            "ContentLength": int(h.get("content-length", 0)),
            "LastModified": parse_time(h["last-modified"]),
            "ETag": h.get("etag", ""),
        }
        if h.get("x-amz-version-id"):
            out["VersionId"] = h["x-amz-version-id"]
        if h.get(_AMZ_LOCK + "retain-until-date"):
            out["ObjectLockRetainUntilDate"] = parse_time(h[_AMZ_LOCK + "retain-until-date"])
        if h.get(_AMZ_LOCK + "mode"):
            out["ObjectLockMode"] = h[_AMZ_LOCK + "mode"]
        return out

    def copy_object(
        self,
        *,
        Bucket: str,
        Key: str,
        CopySource: Mapping[str, str] | str,
        MetadataDirective: str | None = None,
    ) -> dict[str, Any]:
        if isinstance(CopySource, str):
            source = CopySource
        else:
            source = f"{CopySource['Bucket']}/{CopySource['Key']}"
        headers = {"x-amz-copy-source": quote_path(source)}
        if MetadataDirective:
            headers["x-amz-metadata-directive"] = MetadataDirective
        return self._doc("CopyObject", "PUT", Bucket, key=Key, headers=headers)

    def delete_object(
        self, *, Bucket: str, Key: str, VersionId: str | None = None
    ) -> dict[str, Any]:
        query = {"versionId": VersionId} if VersionId else None
        return self._doc("DeleteObject", "DELETE", Bucket, key=Key, query=query)

    def delete_objects(self, *, Bucket: str, Delete: Mapping[str, Any]) -> dict[str, Any]:
        body = delete_body(Delete["Objects"], bool(Delete.get("Quiet", False)))
        return self._doc(
            "DeleteObjects",
            "POST",
            Bucket,
            query={"delete": ""},
            headers={"content-md5": content_md5(body), "content-type": "application/xml"},
            body=body,
        )

    def list_objects_v2(
        self, *, Bucket: str, Prefix: str = "", ContinuationToken: str | None = None
    ) -> dict[str, Any]:
        query = {"list-type": "2", "prefix": Prefix}
        if ContinuationToken:
            query["continuation-token"] = ContinuationToken
        return self._doc("ListObjectsV2", "GET", Bucket, query=query)

    def list_object_versions(
        self,
        *,
        Bucket: str,
        Prefix: str = "",
        KeyMarker: str | None = None,
        VersionIdMarker: str | None = None,
    ) -> dict[str, Any]:
        query = {"versions": "", "prefix": Prefix}
        query |= {"key-marker": KeyMarker} if KeyMarker else {}
        query |= {"version-id-marker": VersionIdMarker} if VersionIdMarker else {}
        return self._doc("ListObjectVersions", "GET", Bucket, query=query)

    def list_multipart_uploads(
        self,
        *,
        Bucket: str,
        Prefix: str = "",
        KeyMarker: str | None = None,
        UploadIdMarker: str | None = None,
    ) -> dict[str, Any]:
        query = {"uploads": "", "prefix": Prefix}
        query |= {"key-marker": KeyMarker} if KeyMarker else {}
        query |= {"upload-id-marker": UploadIdMarker} if UploadIdMarker else {}
        return self._doc("ListMultipartUploads", "GET", Bucket, query=query)

    def abort_multipart_upload(self, *, Bucket: str, Key: str, UploadId: str) -> dict[str, Any]:
        query = {"uploadId": UploadId}
        return self._doc("AbortMultipartUpload", "DELETE", Bucket, key=Key, query=query)

    def get_object_lock_configuration(self, *, Bucket: str) -> dict[str, Any]:
        doc = self._doc("GetObjectLockConfiguration", "GET", Bucket, query={"object-lock": ""})
        return {"ObjectLockConfiguration": doc}

    def put_object_retention(
        self,
        *,
        Bucket: str,
        Key: str,
        Retention: Mapping[str, Any],
        VersionId: str | None = None,
    ) -> dict[str, Any]:
        body = retention_body(Retention)
        query = {"retention": ""} | ({"versionId": VersionId} if VersionId else {})
        headers = {"content-md5": content_md5(body), "content-type": "application/xml"}
        return self._doc(
            "PutObjectRetention", "PUT", Bucket, key=Key, query=query, headers=headers, body=body
        )


def _data(answer: Response | BaseHTTPResponse) -> bytes:
    return answer.data if isinstance(answer, Response) else bytes(answer.data or b"")
