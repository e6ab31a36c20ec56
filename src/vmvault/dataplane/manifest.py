"""The manifest of a recovery point: ``manifests/<point-id>.manifest``.

A recovery point exists exactly when its manifest does: it is written last (after its chunks
and disk indexes) and removed first.  The file is a JSON envelope::

    unencrypted: {"format": 1, "body": {...}, "mac": "<hex>"}
    encrypted:   {"format": 1, "nonce": "<hex>", "ciphertext": "<base64>", "mac": "<hex>"}

``body`` holds the fields of :class:`Manifest` (see there).  In an encrypted vault the body is
sealed with AES-256-GCM under ``enc_key`` (associated data: the point id).  In both modes
``mac`` is the keyed BLAKE3 (``mac_key``) of ``point id || 0 || payload`` where the payload is
the canonical JSON of the body (sorted keys, no spaces) or the ciphertext.  Any change, or a
manifest copied under another point's name, is ``MANIFEST_CORRUPT``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import blake3

from vmvault.dataplane.keys import KeySet, seal, unseal
from vmvault.domain.errors import ManifestCorrupt, VaultFormatUnsupported

VERSION = 1
SUFFIX = ".manifest"


@dataclass
class DiskEntry:
    """One disk of the VM: backed up (``index`` names its index file) or excluded."""

    target: str  # libvirt target dev: vda, sdb, ...
    size: int  # bytes
    index: str | None = None  # "<target>.fidx" under indexes/<point-id>/
    index_digest: str | None = None  # BLAKE3 hex of the index file
    bytes_read: int = 0  # read from the source
    bytes_new: int = 0  # written to the vault (compressed chunk files)
    excluded: bool = False
    reason: str | None = None  # why it was excluded


@dataclass
class Manifest:
    point_id: str
    vm_uuid: str
    vm_name: str
    created_at: str  # ISO 8601 with time zone
    domain_xml: str
    method: str  # guest-quiesce | saved-state | offline
    consistency: str  # application-consistent | file-system-consistent | crash-consistent
    frozen_ms: int | None = None
    checkpoint: str | None = None
    disks: list[DiskEntry] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Manifest:
        disks = [DiskEntry(**d) for d in doc.get("disks", [])]
        return cls(**{**doc, "disks": disks})


def _mac(keys: KeySet, point_id: str, payload: bytes) -> str:
    return blake3.blake3(point_id.encode() + b"\0" + payload, key=keys.mac_key).hexdigest()


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def encode(m: Manifest, keys: KeySet, *, encrypted: bool) -> bytes:
    body = _canonical(m.to_json())
    doc: dict[str, Any] = {"format": VERSION}
    if encrypted:
        nonce = os.urandom(12)
        sealed = seal(keys.enc_key, nonce, body, m.point_id.encode())
        doc.update(nonce=nonce.hex(), ciphertext=base64.b64encode(sealed).decode())
        doc["mac"] = _mac(keys, m.point_id, sealed)
    else:
        doc["body"] = m.to_json()
        doc["mac"] = _mac(keys, m.point_id, body)
    return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode()


def decode(data: bytes, point_id: str, keys: KeySet, *, encrypted: bool, where: str) -> Manifest:
    """Parse and authenticate; :class:`ManifestCorrupt` on any mismatch."""

    def corrupt(why: str) -> ManifestCorrupt:
        return ManifestCorrupt(point=point_id, why=why)

    try:
        doc = json.loads(data)
        version = doc["format"]
    except (ValueError, KeyError, TypeError):
        raise corrupt("not a manifest") from None
    if version != VERSION:
        raise VaultFormatUnsupported(what="manifest", path=where, found=version, supported=VERSION)
    try:
        mac = str(doc["mac"])
        if encrypted:
            if "ciphertext" not in doc:
                raise corrupt("unencrypted manifest in an encrypted vault")
            payload = base64.b64decode(doc["ciphertext"], validate=True)
            nonce = bytes.fromhex(doc["nonce"])
        else:
            if "body" not in doc:
                raise corrupt("encrypted manifest in an unencrypted vault")
            payload = _canonical(doc["body"])
    except (KeyError, ValueError, TypeError, binascii.Error):
        raise corrupt("malformed envelope") from None
    if not hmac.compare_digest(mac, _mac(keys, point_id, payload)):
        raise corrupt("authentication failed")
    body: Any = doc.get("body")
    if encrypted:
        plain = unseal(keys.enc_key, nonce, payload, point_id.encode())
        if plain is None:
            raise corrupt("decryption failed")
        try:
            body = json.loads(plain)
        except ValueError:
            raise corrupt("malformed body") from None
    try:
        m = Manifest.from_json(body)
    except (ValueError, KeyError, TypeError):
        raise corrupt("malformed body") from None
    if m.point_id != point_id:
        raise corrupt(f"it describes point {m.point_id}")
    return m
