"""Vaults and hosts.

A *vault* is where recovery points live (a chunk store + the catalog rows that describe
them); it serves the VMs of one *location* only (free text, like a cloud region).  A *host* is
a libvirt connection URI that belongs to one location.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vmvault.domain.approval import ApprovalSetting
from vmvault.domain.errors import InvalidInput
from vmvault.domain.immutability import ImmutableMode, LockMode, parse_lock_mode
from vmvault.domain.inputs import check_printable, check_text, quoted
from vmvault.domain.soft_delete import SoftDelete

DEFAULT_LOCATION = "local"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def validate_name(value: str, what: str = "name") -> str:
    """Names of vaults and policies: 1–63 of ``[A-Za-z0-9._-]``, starting alnum."""
    return check_text(
        value,
        _NAME,
        what,
        "use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit",
    )


def validate_location(value: str) -> str:
    value = check_printable(value.strip(), "location")
    if len(value) > 64 or any(c.isspace() for c in value):
        raise InvalidInput("use 1-64 characters without spaces", what=f"location {quoted(value)}")
    return value


#: ``http(s)://host[:port]`` with nothing after (path-style addressing adds the bucket).
_ENDPOINT = re.compile(r"https?://[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?/?", re.ASCII)
#: S3 bucket names: 3–63 of lower-case letters, digits, '.', '-', starting and ending alnum.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.ASCII)
#: A key prefix: segments as the storage contract's keys, each followed by '/'.
_PREFIX = re.compile(r"([A-Za-z0-9][A-Za-z0-9._:-]{0,127}/){0,8}", re.ASCII)
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,31}", re.ASCII)


def s3_location(
    endpoint: str,
    bucket: str,
    prefix: str | None = None,
    region: str | None = None,
    credentials_file: str | None = None,
    object_lock: bool = False,
    lock_mode: str | None = None,
) -> S3Location:
    """The one parser of an S3 vault's coordinates (``vault create --storage s3``): refuses
    what cannot be an endpoint, a bucket name, a key prefix or a region, before anything
    changes.  The prefix is normalised to end with ``/`` (or is empty)."""
    endpoint = check_printable(endpoint.strip(), "--endpoint", max_length=300)
    check_text(
        endpoint, _ENDPOINT, "--endpoint", "use http(s)://HOST[:PORT], e.g. http://127.0.0.1:7480"
    )
    port = endpoint.rstrip("/").rpartition(":")[2]
    if port.isdigit() and not 0 < int(port) < 65536:
        raise InvalidInput("the port must be 1-65535", what=f"--endpoint {quoted(endpoint)}")
    check_text(
        bucket,
        _BUCKET,
        "--bucket",
        "S3 bucket names are 3-63 lower-case letters, digits, '.' or '-', "
        "starting and ending with a letter or digit",
    )
    if ".." in bucket:
        raise InvalidInput("no '..' in a bucket name", what=f"--bucket {quoted(bucket)}")
    norm = (prefix or "").strip("/")
    norm = norm + "/" if norm else ""
    check_text(
        norm,
        _PREFIX,
        "--prefix",
        "use up to 8 '/'-separated segments of A-Z a-z 0-9 . _ : -, each starting with a "
        "letter or digit",
    )
    region = check_text(
        region or "us-east-1", _REGION, "--region", "use lower-case letters, digits and '-'"
    )
    if lock_mode is not None and not object_lock:
        raise InvalidInput("it goes with --object-lock", what="--lock-mode")
    mode = parse_lock_mode(lock_mode) if lock_mode is not None else None
    return S3Location(
        endpoint.rstrip("/"), bucket, norm, region, credentials_file, object_lock, mode
    )


@dataclass(frozen=True)
class S3Location:
    """Where an S3 vault's objects are: ``bucket`` at ``endpoint``, keys under ``prefix``.

    Credentials are never stored here: ``credentials_file`` names a file that holds them (an
    INI file with ``aws_access_key_id`` / ``aws_secret_access_key``, as the AWS tools write),
    or None for the environment (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``).
    """

    endpoint: str  # http(s)://host[:port]
    bucket: str
    prefix: str = ""  # "" or ends with "/"
    region: str = "us-east-1"
    credentials_file: str | None = None
    #: the bucket has S3 Object Lock: retained points' objects get a retention
    #: (docs/immutability.md)
    object_lock: bool = False
    #: its mode, chosen at ``vault create --lock-mode``; None: by the vault's immutability
    #: (compliance once locked, governance before)
    lock_mode: LockMode | None = None

    @property
    def url(self) -> str:
        """For people: ``s3://bucket/prefix`` (the endpoint is shown apart)."""
        return f"s3://{self.bucket}/{self.prefix}"

    def to_json(self) -> dict[str, str | bool | None]:
        return {
            "kind": "s3",
            "endpoint": self.endpoint,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "region": self.region,
            "credentials_file": self.credentials_file,
            "object_lock": self.object_lock,
            "lock_mode": self.lock_mode.value if self.lock_mode else None,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> S3Location:
        return cls(
            endpoint=str(doc["endpoint"]),
            bucket=str(doc["bucket"]),
            prefix=str(doc.get("prefix") or ""),
            region=str(doc.get("region") or "us-east-1"),
            credentials_file=doc.get("credentials_file"),
            object_lock=bool(doc.get("object_lock")),
            lock_mode=LockMode(str(doc["lock_mode"])) if doc.get("lock_mode") else None,
        )


@dataclass(frozen=True)
class Vault:
    id: int
    name: str
    location: str
    #: a local vault's directory; an S3 vault's ``s3://bucket/prefix`` (for people)
    path: str
    created_at: datetime
    key_file: str | None = None  # encrypted vaults: where the wrapped keys live
    s3: S3Location | None = None  # None: a directory on this host (``path``)
    #: what removing a point from the vault does (docs/soft-delete.md)
    soft_delete: SoftDelete = field(default_factory=SoftDelete)
    #: who must agree to an operation that reduces protection (docs/approvals.md)
    approvals: ApprovalSetting = field(default_factory=ApprovalSetting)
    #: whether points may leave before their retain-until (docs/immutability.md)
    immutable: ImmutableMode = ImmutableMode.OFF

    @property
    def encrypted(self) -> bool:
        return self.key_file is not None

    @property
    def storage(self) -> str:
        return "local" if self.s3 is None else "s3"


@dataclass(frozen=True)
class Host:
    id: int
    uri: str
    location: str
    hostname: str | None
    created_at: datetime
    #: names or uuids of the host's VMs that a cluster manager owns (``host update
    #: --cluster-managed``): vmvault never pauses, shuts off, undefines or replaces them
    cluster_managed: tuple[str, ...] = ()
    #: the client PKI directory of a host that vmvault *pulls* from over NBD with TLS
    #: (``host add --pull-tls``; domain/pull.py): its VMs' backups run on any node
    pull_tls: str | None = None


@dataclass(frozen=True)
class SettingsChange:
    """What ``vault update`` asks; None: unchanged."""

    soft_delete: str | None = None
    soft_delete_days: int | None = None
    approvals: str | None = None
    approval_delay_hours: int | None = None
    approval_expiry_hours: int | None = None
    immutable: bool | None = None
    lock: bool = False

    @property
    def soft(self) -> tuple[str | None, int | None]:
        return self.soft_delete, self.soft_delete_days

    @property
    def approval(self) -> tuple[str | None, int | None, int | None]:
        return self.approvals, self.approval_delay_hours, self.approval_expiry_hours

    @property
    def immutability(self) -> bool:
        return self.immutable is not None or self.lock
