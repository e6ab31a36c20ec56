"""The key set of a vault and the passphrase-protected key file of an encrypted vault.

Every vault has three independent 32-byte random keys:

* ``id_key``  – keys the BLAKE3 hash that names a chunk (so ids reveal nothing about content
  to someone without the key, and nobody can plant a chunk under a guessed id);
* ``enc_key`` – AES-256-GCM key of chunks and manifests (used only when encrypted);
* ``mac_key`` – keys the BLAKE3 MAC of manifests.

An unencrypted vault keeps them in its ``config``.  An encrypted vault keeps them in a *key
file* outside the vault (the caller chooses where), wrapped with AES-256-GCM under a key
derived from the passphrase with scrypt (n=2**17, r=8, p=1: 128 MiB and ~0.3 s here) and a
random 16-byte salt.  Key file (JSON)::

    {"vmvault_key_file": 1, "fingerprint": "<hex>",
     "kdf": {"name": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": "<hex>"},
     "cipher": "aes-256-gcm", "nonce": "<hex>", "wrapped": "<base64 of id|enc|mac + tag>"}

The fingerprint (a BLAKE3 derived-key hash of the three keys) is also in the vault's config,
so a key file of another vault is refused with ``KEY_FILE_MISMATCH`` rather than a confusing
``WRONG_PASSPHRASE``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from vmvault.domain.errors import (
    InternalError,
    InvalidInput,
    KeyFileInvalid,
    KeyFileMissing,
    WrongPassphrase,
)
from vmvault.storage.fsutil import fsync_dir, write_atomic

KEY_LEN = 32
KEY_FILE_VERSION = 1
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
_WRAP_AAD = b"vmvault key file v1"
_FINGERPRINT_CONTEXT = "vmvault 2026-11 key set fingerprint v1"
# Bounds on parameters read from a key file, so a crafted file cannot exhaust memory.
_MAX_N, _MAX_R, _MAX_P = 2**20, 32, 16


@dataclass(frozen=True, repr=False)
class KeySet:
    id_key: bytes
    enc_key: bytes
    mac_key: bytes

    def __post_init__(self) -> None:
        if any(len(k) != KEY_LEN for k in (self.id_key, self.enc_key, self.mac_key)):
            raise ValueError("vault keys are 32 bytes each")

    def __repr__(self) -> str:  # never print key material
        return f"KeySet(fingerprint={self.fingerprint()})"

    @classmethod
    def generate(cls) -> KeySet:
        return cls(os.urandom(KEY_LEN), os.urandom(KEY_LEN), os.urandom(KEY_LEN))

    def packed(self) -> bytes:
        return self.id_key + self.enc_key + self.mac_key

    @classmethod
    def unpack(cls, data: bytes) -> KeySet:
        if len(data) != 3 * KEY_LEN:
            raise ValueError("a packed key set is 96 bytes")
        return cls(data[:KEY_LEN], data[KEY_LEN : 2 * KEY_LEN], data[2 * KEY_LEN :])

    def fingerprint(self) -> str:
        h = blake3.blake3(self.packed(), derive_key_context=_FINGERPRINT_CONTEXT)
        return h.hexdigest(16)

    def to_json(self) -> dict[str, str]:
        return {
            "id_key": self.id_key.hex(),
            "enc_key": self.enc_key.hex(),
            "mac_key": self.mac_key.hex(),
        }

    @classmethod
    def from_json(cls, doc: Any) -> KeySet:
        return cls(
            bytes.fromhex(doc["id_key"]),
            bytes.fromhex(doc["enc_key"]),
            bytes.fromhex(doc["mac_key"]),
        )


def seal(key: bytes, nonce: bytes, plain: bytes, aad: bytes) -> bytes:
    """AES-256-GCM encrypt.  ``cryptography`` is imported on first use only: it adds ~7 MiB
    to every process, and only encrypted vaults need it."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key).encrypt(nonce, plain, aad)


def unseal(key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes | None:
    """AES-256-GCM decrypt; ``None`` when the tag does not authenticate."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(key).decrypt(nonce, sealed, aad)
    except InvalidTag:
        return None


def _kek(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=KEY_LEN, n=n, r=r, p=p).derive(passphrase.encode())


def write_key_file(path: Path, keys: KeySet, passphrase: str, *, n: int | None = None) -> None:
    """Write a new key file (refuses to replace an existing one); ``n``: scrypt cost."""
    n = SCRYPT_N if n is None else n
    if not passphrase:
        raise InvalidInput("an empty passphrase protects nothing", what="passphrase")
    if path.exists():
        raise InvalidInput("it already exists; choose a new path", what=f"key file {path}")
    salt, nonce = os.urandom(16), os.urandom(12)
    kek = _kek(passphrase, salt, n, SCRYPT_R, SCRYPT_P)
    wrapped = seal(kek, nonce, keys.packed(), _WRAP_AAD)
    doc = {
        "vmvault_key_file": KEY_FILE_VERSION,
        "fingerprint": keys.fingerprint(),
        "kdf": {"name": "scrypt", "n": n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex()},
        "cipher": "aes-256-gcm",
        "nonce": nonce.hex(),
        "wrapped": base64.b64encode(wrapped).decode(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(doc, indent=2) + "\n").encode()
    write_atomic(path, [data], vault=path.parent, mode=0o600)


def read_key_file(path: Path, passphrase: str) -> KeySet:
    """Unwrap the key set; ``WRONG_PASSPHRASE`` when the passphrase does not open it."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileMissing(key_file=str(path)) from None
    except IsADirectoryError:
        raise KeyFileInvalid("it is a directory", key_file=str(path)) from None
    try:
        doc = json.loads(raw)
        if doc.get("vmvault_key_file") != KEY_FILE_VERSION or doc.get("cipher") != "aes-256-gcm":
            raise ValueError("unknown key file version or cipher")
        kdf = doc["kdf"]
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        if kdf["name"] != "scrypt" or not (1 < n <= _MAX_N and 0 < r <= _MAX_R and 0 < p <= _MAX_P):
            raise ValueError("unsupported KDF parameters")
        salt, nonce = bytes.fromhex(kdf["salt"]), bytes.fromhex(doc["nonce"])
        wrapped = base64.b64decode(doc["wrapped"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise KeyFileInvalid(str(exc), key_file=str(path)) from None
    packed = unseal(_kek(passphrase, salt, n, r, p), nonce, wrapped, _WRAP_AAD)
    if packed is None:
        raise WrongPassphrase(key_file=str(path)) from None
    try:
        return KeySet.unpack(packed)
    except ValueError as exc:
        raise KeyFileInvalid(str(exc), key_file=str(path)) from None


def replace_key_file(path: Path, keys: KeySet, passphrase: str, *, n: int | None = None) -> None:
    """Put a key file wrapping ``keys`` with ``passphrase`` at ``path``, replacing any there.

    The new file is written beside it (``<name>.new``), read back with the passphrase and its
    fingerprint compared, and only then renamed over ``path`` (directory fsynced): a crash
    leaves the old file or the new one, never neither, and never one that does not open.
    The chunks are not touched: the keys stay the same, only their wrapping changes.
    """
    staged = path.with_name(path.name + ".new")
    staged.unlink(missing_ok=True)  # a leftover of an interrupted change
    write_key_file(staged, keys, passphrase, n=n)
    try:
        if read_key_file(staged, passphrase).fingerprint() != keys.fingerprint():
            raise InternalError(f"the key file written at {staged} does not read back")
        os.replace(staged, path)
        fsync_dir(path.parent)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
