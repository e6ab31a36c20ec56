"""Vaults and hosts.

A *vault* is where recovery points live (a chunk store + the catalog rows that describe
them); it serves the VMs of one *location* only (free text, like a cloud region).  A *host* is
a libvirt connection URI that belongs to one location.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from vmvault.domain.errors import InvalidInput

DEFAULT_HOST_URI = "qemu:///system"
DEFAULT_LOCATION = "local"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# driver[+transport]://[user@][host[:port]]/path[?query]
_URI = re.compile(
    r"^(?P<driver>[a-z][a-z0-9]*)(\+(?P<transport>[a-z]+))?://"
    r"(?P<authority>[^/?#\s]*)(?P<path>/[^?#\s]*)(\?(?P<query>[^#\s]*))?$"
)
_TRANSPORTS = {None, "unix", "ssh", "tcp", "tls", "libssh", "libssh2", "ext"}


def validate_name(value: str, what: str = "name") -> str:
    """Names of vaults (and later policies): 1–63 of ``[A-Za-z0-9._-]``, starting alnum."""
    if not _NAME.match(value):
        raise InvalidInput(
            "use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit",
            what=f"{what} '{value}'",
        )
    return value


def validate_location(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 64 or any(c.isspace() for c in value):
        raise InvalidInput("use 1-64 characters without spaces", what=f"location '{value}'")
    return value


def validate_uri(uri: str) -> str:
    """Accept libvirt connection URIs such as ``qemu:///system`` or ``qemu+ssh://h/system``."""
    m = _URI.match(uri.strip())
    if not m or m.group("transport") not in _TRANSPORTS or m.group("path") == "/":
        raise InvalidInput(
            "expected a libvirt URI such as qemu:///system or qemu+ssh://HOST/system",
            what=f"URI '{uri}'",
        )
    return uri.strip()


@dataclass(frozen=True)
class Vault:
    id: int
    name: str
    location: str
    path: str
    created_at: datetime


@dataclass(frozen=True)
class Host:
    id: int
    uri: str
    location: str
    hostname: str | None
    created_at: datetime
