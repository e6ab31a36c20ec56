"""The paper key: a vault's key set as text a person can print, keep and type back.

An encrypted vault's keys live in a key file wrapped with a passphrase (docs/vault-format.md
§3). Lose the file or forget the passphrase and the vault is lost; a paper key, kept in a safe,
restores access (``vmvault vault key import``) without either. It *is* the keys: anyone who
reads it can decrypt the vault, so it is printed only on demand and never stored by vmvault.

Layout (version 1)::

    vmvault paper key v1
    vault        demo
    fingerprint  0f3c…(32 hex: the key set's fingerprint, as in the vault's config)

     1  0A1B-2C3D-4E5F-6G7H-8J9K-AMNP  7Q
     …
     7  VWXY-Z012-34                   C4
    check  K7M2-9XQ4

* The 96 bytes of the key set are written in Crockford's base32 (digits and letters without
  I, L, O, U: nothing to confuse), 24 characters a line in groups of four: 154 characters on
  7 lines.
* Each line ends with 2 check characters (10 bits of SHA-256 over the line's number and
  characters): a mistyped line is *named* (the chance that a typo goes unseen in its line is
  1 in 1024), so the reader retypes one line, not the block.
* ``check`` is 40 bits of SHA-256 over the whole key set: with it, an undetected error is
  1 in 2**40 even if several line checks were fooled.
* Reading is forgiving in form and strict in content: case, spaces, hyphens and the
  look-alikes ``O``→``0`` and ``I``/``L``→``1`` are normalised (in the fingerprint too); every other deviation is
  refused with :class:`PaperKeyInvalid` naming the line.

The same content fits a QR code (:func:`qr_payload`, parsed back by :func:`parse`):
``VMVAULT-KEY1:<vault>:<fingerprint>:<154 chars><8 check chars>``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from vmvault.domain.errors import PaperKeyInvalid

VERSION = 1
HEADER = f"vmvault paper key v{VERSION}"
QR_PREFIX = f"VMVAULT-KEY{VERSION}"
SECRET_LEN = 96
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32
LINE_CHARS = 24
GROUP = 4
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_HEX_LOOKALIKES = str.maketrans({"o": "0", "i": "1", "l": "1"})
_FINGERPRINT = re.compile(r"[0-9a-f]{32}")
_VAULT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


@dataclass(frozen=True, repr=False)
class PaperKey:
    vault: str
    fingerprint: str
    secret: bytes  # the packed key set (96 bytes)

    def __repr__(self) -> str:  # never print key material
        return f"PaperKey(vault={self.vault!r}, fingerprint={self.fingerprint})"


def _b32encode(data: bytes) -> str:
    bits = int.from_bytes(data, "big")
    count = (len(data) * 8 + 4) // 5
    bits <<= count * 5 - len(data) * 8  # pad the last character with zero bits
    return "".join(ALPHABET[(bits >> (5 * (count - 1 - i))) & 31] for i in range(count))


def _b32decode(text: str, length: int) -> bytes:
    bits = 0
    for ch in text:
        bits = (bits << 5) | ALPHABET.index(ch)
    pad = len(text) * 5 - length * 8
    if pad < 0 or pad >= 5 or bits & ((1 << pad) - 1):
        raise ValueError("wrong length or padding")
    return (bits >> pad).to_bytes(length, "big")


def _check(payload: bytes, chars: int) -> str:
    digest = int.from_bytes(hashlib.sha256(payload).digest()[:8], "big")
    return "".join(ALPHABET[(digest >> (59 - 5 * i)) & 31] for i in range(chars))


def _line_check(number: int, chars: str) -> str:
    return _check(f"{number}:{chars}".encode(), 2)


def _grouped(chars: str) -> str:
    return "-".join(chars[i : i + GROUP] for i in range(0, len(chars), GROUP))


def _body(secret: bytes) -> str:
    return _b32encode(secret)


def render(key: PaperKey) -> str:
    """The printable block of ``key``."""
    _check_fields(key.vault, key.fingerprint, key.secret)
    body = _body(key.secret)
    lines = [HEADER, f"vault        {key.vault}", f"fingerprint  {key.fingerprint}", ""]
    width = len(_grouped("x" * LINE_CHARS))
    for number, start in enumerate(range(0, len(body), LINE_CHARS), 1):
        chars = body[start : start + LINE_CHARS]
        lines.append(f"{number:2}  {_grouped(chars):<{width}}  {_line_check(number, chars)}")
    lines.append(f"check  {_grouped(_check(key.secret, 8))}")
    return "\n".join(lines) + "\n"


def qr_payload(key: PaperKey) -> str:
    """The one-line form of ``key`` that a QR code carries."""
    _check_fields(key.vault, key.fingerprint, key.secret)
    return f"{QR_PREFIX}:{key.vault}:{key.fingerprint}:{_body(key.secret)}{_check(key.secret, 8)}"


def parse(text: str) -> PaperKey:
    """A paper key from its printed block (as typed back) or its QR payload."""
    stripped = text.strip()
    if stripped.upper().startswith(QR_PREFIX + ":"):
        return _parse_qr(stripped)
    lines = [ln.strip() for ln in stripped.splitlines() if ln.strip()]
    if not lines or lines[0].lower() != HEADER:
        raise PaperKeyInvalid(f"the first line is not {HEADER!r}", where="its header")
    fields: dict[str, str] = {}
    rows: dict[int, str] = {}
    for line in lines[1:]:
        head, _, rest = line.partition(" ")
        if head.isdigit():
            number = int(head)
            chars, check = _split_row(rest, number)
            if number in rows:
                raise PaperKeyInvalid("it appears twice", where=f"line {number}")
            if _line_check(number, chars) != check:
                raise PaperKeyInvalid("its check characters do not match", where=f"line {number}")
            rows[number] = chars
        elif head.lower() in ("vault", "fingerprint", "check"):
            fields[head.lower()] = rest.strip()
        else:
            raise PaperKeyInvalid(f"unexpected text {head[:20]!r}", where="the block")
    expected = -(-len(_body(bytes(SECRET_LEN))) // LINE_CHARS)
    missing = [n for n in range(1, expected + 1) if n not in rows]
    if missing or len(rows) != expected:
        raise PaperKeyInvalid(f"lines {missing or sorted(rows)} are missing or extra", where="it")
    for name in ("vault", "fingerprint", "check"):
        if name not in fields:
            raise PaperKeyInvalid("it is missing", where=f"the {name} line")
    body = "".join(rows[n] for n in range(1, expected + 1))
    return _finish(fields["vault"], fields["fingerprint"], body, _normal(fields["check"]))


def _split_row(rest: str, number: int) -> tuple[str, str]:
    parts = rest.split()
    if len(parts) < 2:
        raise PaperKeyInvalid(
            "it needs its characters and 2 check characters", where=f"line {number}"
        )
    chars, check = _normal("".join(parts[:-1])), _normal(parts[-1])
    if len(check) != 2:
        raise PaperKeyInvalid("its check is not 2 characters", where=f"line {number}")
    return chars, check


def _normal(text: str) -> str:
    """Upper case, look-alikes mapped, spaces and hyphens dropped; anything else refused."""
    value = text.upper().translate(_LOOKALIKES).replace("-", "").replace(" ", "")
    bad = sorted({ch for ch in value if ch not in ALPHABET})
    if bad:
        raise PaperKeyInvalid(f"{''.join(bad)[:8]!r} is not a paper key character", where="it")
    return value


def _parse_qr(text: str) -> PaperKey:
    parts = text.split(":")
    if len(parts) != 4:
        raise PaperKeyInvalid(f"expected {QR_PREFIX}:VAULT:FINGERPRINT:KEY", where="the QR text")
    _, vault, fingerprint, rest = parts
    rest = _normal(rest)
    return _finish(vault, fingerprint, rest[:-8], rest[-8:])


def _finish(vault: str, fingerprint: str, body: str, check: str) -> PaperKey:
    try:
        secret = _b32decode(_normal(body), SECRET_LEN)
    except ValueError:
        raise PaperKeyInvalid("the key characters have the wrong length", where="it") from None
    if _check(secret, 8) != check:
        raise PaperKeyInvalid("the key does not match its check", where="the check line")
    fingerprint = fingerprint.strip().lower().translate(_HEX_LOOKALIKES)
    _check_fields(vault, fingerprint, secret)
    return PaperKey(vault, fingerprint, secret)


def _check_fields(vault: str, fingerprint: str, secret: bytes) -> None:
    if not _VAULT.fullmatch(vault):
        raise PaperKeyInvalid("it is not a vault name", where="the vault line")
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise PaperKeyInvalid("it is not 32 hex digits", where="the fingerprint line")
    if len(secret) != SECRET_LEN:
        raise PaperKeyInvalid(f"a key set is {SECRET_LEN} bytes", where="the key")
