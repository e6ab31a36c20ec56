"""The chunk-store configuration of a vault: the object ``config`` (JSON).

Written once (a put-if-absent: of two racing creations one wins), when the chunk store is
created, and never changed::

    {"format": 1,
     "chunk_size": 4194304,
     "compression": {"algorithm": "zstd", "level": 1},
     "encryption": {"algorithm": "none" | "aes-256-gcm"},
     "key_fingerprint": "<hex>",
     "keys": {"id_key": "<hex>", "enc_key": "<hex>", "mac_key": "<hex>"},   # unencrypted only
     "created_at": "2026-11-22T10:00:00+00:00"}

The chunk size is a power of two from 64 KiB to 64 MiB (4 MiB by default): every disk of the
vault is cut at multiples of it, which is what lets chunks dedupe across VMs and points.  The
scrypt parameters of an encrypted vault live in its key file, next to their salt (see
:mod:`vmvault.dataplane.keys`): the key file alone must be enough to unwrap the keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from vmvault.dataplane.keys import KeySet
from vmvault.domain.errors import InvalidInput, VaultConfigCorrupt, VaultFormatUnsupported

FORMAT_VERSION = 1
CONFIG_NAME = "config"
DEFAULT_CHUNK_SIZE = 4 << 20
MIN_CHUNK_SIZE = 64 << 10
MAX_CHUNK_SIZE = 64 << 20
#: zstd level 1: measured 1.6x faster than level 3 for ~5 points more output (docs/vault-format.md).
DEFAULT_LEVEL = 1
MIN_LEVEL, MAX_LEVEL = 1, 19

Encryption = Literal["none", "aes-256-gcm"]


def validate_chunk_size(size: int) -> int:
    if not (MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE) or size & (size - 1):
        raise InvalidInput("use a power of two from 64 KiB to 64 MiB", what=f"chunk size {size}")
    return size


def validate_level(level: int) -> int:
    if not MIN_LEVEL <= level <= MAX_LEVEL:
        raise InvalidInput(f"use {MIN_LEVEL}..{MAX_LEVEL}", what=f"zstd level {level}")
    return level


@dataclass(frozen=True)
class VaultConfig:
    chunk_size: int
    zstd_level: int
    encryption: Encryption
    key_fingerprint: str
    keys: KeySet | None  # present only in an unencrypted vault
    created_at: str
    format: int = FORMAT_VERSION

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "format": self.format,
            "chunk_size": self.chunk_size,
            "compression": {"algorithm": "zstd", "level": self.zstd_level},
            "encryption": {"algorithm": self.encryption},
            "key_fingerprint": self.key_fingerprint,
            "created_at": self.created_at,
        }
        if self.keys is not None:
            doc["keys"] = self.keys.to_json()
        return (json.dumps(doc, indent=2) + "\n").encode()

    @classmethod
    def new(cls, chunk_size: int, zstd_level: int, keys: KeySet, encrypted: bool) -> VaultConfig:
        return cls(
            chunk_size=validate_chunk_size(chunk_size),
            zstd_level=validate_level(zstd_level),
            encryption="aes-256-gcm" if encrypted else "none",
            key_fingerprint=keys.fingerprint(),
            keys=None if encrypted else keys,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    @classmethod
    def from_bytes(cls, data: bytes, vault: str) -> VaultConfig:
        """Parse the ``config`` object of the vault at ``vault`` (a location, for errors)."""
        try:
            doc = json.loads(data)
            fmt = int(doc["format"])
        except (ValueError, KeyError, TypeError) as exc:
            raise VaultConfigCorrupt(str(exc), path=vault) from None
        if fmt != FORMAT_VERSION:
            raise VaultFormatUnsupported(
                what="vault", path=vault, found=fmt, supported=FORMAT_VERSION
            )
        try:
            encryption = doc["encryption"]["algorithm"]
            if encryption not in ("none", "aes-256-gcm"):
                raise ValueError(f"unknown encryption {encryption!r}")
            if doc["compression"]["algorithm"] != "zstd":
                raise ValueError("unknown compression")
            keys = KeySet.from_json(doc["keys"]) if encryption == "none" else None
            config = cls(
                chunk_size=validate_chunk_size(int(doc["chunk_size"])),
                zstd_level=validate_level(int(doc["compression"]["level"])),
                encryption=encryption,
                key_fingerprint=str(doc["key_fingerprint"]),
                keys=keys,
                created_at=str(doc["created_at"]),
            )
        except (ValueError, KeyError, TypeError, InvalidInput) as exc:
            raise VaultConfigCorrupt(str(exc), path=vault) from None
        if keys is not None and keys.fingerprint() != config.key_fingerprint:
            raise VaultConfigCorrupt("keys do not match their fingerprint", path=vault)
        return config
