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
    key_file: str | None = None  # encrypted vaults: where the wrapped keys live

    @property
    def encrypted(self) -> bool:
        return self.key_file is not None


@dataclass(frozen=True)
class Host:
    id: int
    uri: str
    location: str
    hostname: str | None
    created_at: datetime


def parse_size(text: str) -> int:
    """``"4M"``, ``"64K"``, ``"1G"`` or plain bytes → bytes (binary units)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    try:
        if t and t[-1] in units:
            return int(t[:-1]) * units[t[-1]]
        return int(t)
    except ValueError:
        raise InvalidInput("use a number with K, M or G (e.g. 4M)", what=f"size '{text}'") from None
