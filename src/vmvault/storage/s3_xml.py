"""The XML of S3's requests and answers, as the plain dicts vmvault reads (botocore's shapes:
``Contents``, ``IsTruncated``, ``LastModified`` as an aware ``datetime`` …).

Only what vmvault asks and reads is here (:mod:`~vmvault.storage.s3_client` lists the
operations).  Answers are parsed by :mod:`xml.etree.ElementTree`; element names are matched
without their namespace (RGW and AWS use S3's; some services none).  Lists are lists even
with one member; numbers are ``int``, flags ``bool``, times ``datetime``.
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from xml.sax.saxutils import escape

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_INTS = frozenset({"Size", "KeyCount", "MaxKeys", "MaxUploads"})
_BOOLS = frozenset({"IsTruncated", "IsLatest", "Quiet"})
_TIMES = frozenset({"LastModified", "Initiated", "RetainUntilDate"})
#: Elements that repeat: always a list under this name (a page of one object is a list).
_LISTS = {
    "Contents": "Contents",
    "Version": "Versions",
    "DeleteMarker": "DeleteMarkers",
    "Upload": "Uploads",
    "Deleted": "Deleted",
    "Error": "Errors",
    "CommonPrefixes": "CommonPrefixes",
}


def parse_time(text: str) -> datetime:
    """An S3 time: ISO 8601 in bodies (``2026-12-02T19:00:00.123Z``), RFC 1123 in headers."""
    text = text.strip()
    if text[:4].isdigit():
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    return parsedate_to_datetime(text).astimezone(UTC)


def iso(when: datetime) -> str:
    """``when`` as S3 writes times in request bodies (UTC, milliseconds, ``Z``)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _value(el: ET.Element) -> Any:
    if len(el):
        return _members(el)
    name, text = _local(el.tag), el.text or ""
    if name in _INTS:
        return int(text)
    if name in _BOOLS:
        return text.strip().lower() == "true"
    if name in _TIMES:
        return parse_time(text)
    return text


def _members(el: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in el:
        name = _local(child.tag)
        if name in _LISTS:
            out.setdefault(_LISTS[name], []).append(_value(child))
        else:
            out[name] = _value(child)
    return out


def parse(body: bytes) -> tuple[str, dict[str, Any]]:
    """The root element's name and its members (``{}`` for an empty body)."""
    if not body.strip():
        return "", {}
    root = ET.fromstring(body)
    return _local(root.tag), _members(root)


def error_of(body: bytes) -> tuple[str, str] | None:
    """``(Code, Message)`` of an ``<Error>`` document; None when ``body`` is not one."""
    try:
        name, doc = parse(body)
    except ET.ParseError:
        return None
    if name != "Error":
        return None
    return str(doc.get("Code", "")), str(doc.get("Message", ""))


def delete_body(objects: Iterable[Mapping[str, str]], quiet: bool) -> bytes:
    """The ``<Delete>`` document of DeleteObjects."""
    parts = [f'<Delete xmlns="{NS}">', f"<Quiet>{'true' if quiet else 'false'}</Quiet>"]
    for obj in objects:
        version = obj.get("VersionId")
        parts.append(
            f"<Object><Key>{escape(obj['Key'])}</Key>"
            + (f"<VersionId>{escape(version)}</VersionId>" if version else "")
            + "</Object>"
        )
    parts.append("</Delete>")
    return "".join(parts).encode()


def retention_body(retention: Mapping[str, Any]) -> bytes:
    """The ``<Retention>`` document of PutObjectRetention (``Mode``, ``RetainUntilDate``)."""
    until = retention["RetainUntilDate"]
    text = iso(until) if isinstance(until, datetime) else str(until)
    return (
        f'<Retention xmlns="{NS}"><Mode>{escape(str(retention["Mode"]))}</Mode>'
        f"<RetainUntilDate>{escape(text)}</RetainUntilDate></Retention>"
    ).encode()


def content_md5(body: bytes) -> str:
    """The ``Content-MD5`` header S3 requires on DeleteObjects and PutObjectRetention."""
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
