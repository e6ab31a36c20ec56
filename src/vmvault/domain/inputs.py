"""What a user types or sends, checked before anything acts on it: one parser per kind.

Every value from the CLI or the API passes one of these before a service reads the catalog
or writes a byte, and a bad one is refused with ``INVALID_INPUT`` (exit 2, HTTP 400) — never
an ``INTERNAL_ERROR`` from deeper down.  The rules (docs/input.md):

* **text** is matched *whole* (:func:`check_text` uses ``re.fullmatch``: a pattern ending in
  ``$`` also accepts a trailing newline) and may hold no control characters
  (:func:`check_printable`).  Whatever a user gave is shown escaped (:func:`shown`), so an
  escape sequence or a newline in an argument never reaches a terminal raw;
* **numbers** are bounded so that they fit where they go: ids in SQLite's signed 64 bits
  (:func:`check_id`), seconds finite and within a limit (:func:`check_seconds`), sizes below
  2**63 (:func:`parse_size`);
* **durations** (``24h``) reach back at most :data:`MAX_DURATION` (:func:`parse_duration`);
* **instants** (``--keep-until``) carry a real offset (whole minutes, -12:00 to +14:00) and lie
  in the future, at most :data:`MAX_AHEAD` ahead (:func:`parse_instant`, :func:`check_until`);
* **paths** are absolute once resolved, and never in a pseudo file system or the system's
  own trees (:func:`forbidden_area`; services resolve them, see ``services/paths.py``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import TypeVar

from vmvault.domain.errors import InvalidInput

#: The largest integer SQLite stores (its INTEGER is a signed 64-bit number).
MAX_INT64 = (1 << 63) - 1
#: How far back ``--since`` may reach, and how far ahead ``--keep-until`` may pin a point.
MAX_DURATION = timedelta(days=36600)
MAX_AHEAD = timedelta(days=36600)
#: Real UTC offsets run from -12:00 (Baker Island) to +14:00 (Kiribati), in whole minutes.
MIN_OFFSET, MAX_OFFSET = timedelta(hours=-12), timedelta(hours=14)
#: The longest path vmvault accepts (Linux's PATH_MAX).
MAX_PATH = 4096

# Control characters (Cc), format characters such as the bidi overrides (Cf), lone
# surrogates (Cs: undecodable bytes of a command line) and unassigned code points (Cn).
_UNSHOWABLE = ("Cc", "Cf", "Cs", "Cn")


def _unshowable(ch: str) -> bool:
    return unicodedata.category(ch) in _UNSHOWABLE


def shown(text: str, *, newlines: bool = False) -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\n``, ``\\u202e``).

    ``newlines=True`` keeps line breaks (text meant to span lines); tabs are kept too.
    """
    if text.isprintable() or (newlines and all(line.isprintable() for line in text.split("\n"))):
        return text  # at C speed: no character of Cc, Cf, Cs, Cn (nor any other one) to escape
    if not any(_unshowable(ch) for ch in text):
        return text
    out = []
    for ch in text:
        if not _unshowable(ch) or (ch == "\t") or (newlines and ch == "\n"):
            out.append(ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


def quoted(value: object) -> str:
    """A user's value for a message: in quotes, control characters escaped."""
    return f"'{shown(str(value))}'"


def check_printable(value: str, what: str, *, max_length: int | None = None) -> str:
    """Free text (a location, a path): not empty, no control characters, not too long."""
    if not value:
        raise InvalidInput("it is empty", what=what)
    bad = next((ch for ch in value if _unshowable(ch)), None)
    if bad is not None:
        raise InvalidInput(
            f"it holds the control character {shown(bad)!s}", what=f"{what} {quoted(value)}"
        )
    if max_length is not None and len(value) > max_length:
        raise InvalidInput(
            f"use at most {max_length} characters", what=f"{what} {quoted(value[:60] + '…')}"
        )
    return value


def check_encoded(value: str, what: str) -> str:
    """Refuse text that was not valid UTF-8 (a command line's undecodable bytes arrive as
    lone surrogates, which no file, catalog or terminal can take)."""
    if any(unicodedata.category(ch) == "Cs" for ch in value):
        raise InvalidInput("it is not valid UTF-8", what=f"{what} {quoted(value)}")
    return value


def check_text(value: str, pattern: re.Pattern[str], what: str, hint: str) -> str:
    """``value`` if it matches ``pattern`` as a whole, else ``INVALID_INPUT`` with ``hint``."""
    if pattern.fullmatch(value) is None:
        raise InvalidInput(hint, what=f"{what} {quoted(value)}")
    return value


# --- numbers ---------------------------------------------------------------------------------


def check_id(value: int, what: str) -> int:
    """A catalog id: 1 to 2**63-1 (SQLite's INTEGER)."""
    if not 1 <= value <= MAX_INT64:
        raise InvalidInput(f"use a number from 1 to {MAX_INT64}", what=f"{what} {value}")
    return value


#: A page of a listing (jobs, the audit log, …): 100 items unless asked, 1,000 at most, from
#: any offset a catalog integer can hold.
DEFAULT_PAGE, MAX_PAGE = 100, 1000
#: The dashboard's page of VMs needing attention (services/dashboard.py): a summary lists a
#: few, counts them all; every VM's health is in the protection list.
ATTENTION_PAGE = 20
_T = TypeVar("_T")


def check_page(limit: int, offset: int) -> tuple[int, int]:
    """The one rule for a page of a listing: ``limit`` 1..MAX_PAGE, ``offset`` 0..MAX_INT64."""
    return check_count(limit, "limit", 1, MAX_PAGE), check_count(offset, "offset", 0, MAX_INT64)


def page_of(items: Sequence[_T], limit: int, offset: int) -> tuple[list[_T], int]:
    """A page of a listing already read whole (bounded: a backup set, one VM's points) by
    :func:`check_page`'s rule, and how many items there are in all."""
    check_page(limit, offset)
    return list(items[offset : offset + limit]), len(items)


def check_count(value: int, what: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidInput(f"use a whole number from {low} to {high}", what=f"{what} {value}")
    return value


def check_seconds(value: float, what: str, maximum: float) -> float:
    """A timeout: a finite number of seconds from 0 to ``maximum`` (no NaN, no infinity)."""
    if not (math.isfinite(value) and 0 <= value <= maximum):
        raise InvalidInput(f"give 0 to {maximum:.0f} seconds", what=f"{what} {value}")
    return value


_SIZE = re.compile(r"([0-9]{1,25})\s*([KMGT]?)(?:I?B)?", re.ASCII)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str, what: str = "size") -> int:
    """``"4M"``, ``"64KiB"``, ``"1G"`` or plain bytes → bytes (binary units), below 2**63."""
    m = _SIZE.fullmatch(text.strip().upper())
    if m is None:
        raise InvalidInput(
            "use a number with K, M, G or T (e.g. 4M)", what=f"{what} {quoted(text)}"
        )
    value = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    if value > MAX_INT64:
        raise InvalidInput("it is too large", what=f"{what} {quoted(text)}")
    return value


# --- durations and instants ------------------------------------------------------------------

_DURATION = re.compile(r"([0-9]{1,30})([smhdw])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, what: str = "duration") -> timedelta:
    """``"24h"``, ``"30m"``, ``"7d"``, ``"90s"``, ``"2w"`` → timedelta, at most 100 years."""
    m = _DURATION.fullmatch(text.strip().lower())
    if m is None:
        raise InvalidInput(
            "use a number followed by s, m, h, d or w (e.g. 24h)", what=f"{what} {quoted(text)}"
        )
    seconds = int(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if seconds > MAX_DURATION.total_seconds():
        raise InvalidInput(f"use at most {MAX_DURATION.days} days", what=f"{what} {quoted(text)}")
    return timedelta(seconds=seconds)


def parse_instant(text: str, what: str) -> datetime:
    """``YYYY-MM-DD`` (midnight), ``YYYY-MM-DDTHH:MM[:SS]`` with an optional offset → an
    aware datetime (local time when no offset is given), checked by :func:`check_offset`."""
    try:
        value = datetime.fromisoformat(text.strip())
        if value.tzinfo is None:
            value = value.astimezone()  # local time
    except (ValueError, OverflowError, OSError):
        raise InvalidInput(
            "use YYYY-MM-DD or YYYY-MM-DDTHH:MM[+HH:MM]", what=f"{what} {quoted(text)}"
        ) from None
    check_offset(value, f"{what} {quoted(text)}")
    return value


def check_offset(value: datetime, what: str) -> None:
    offset = value.utcoffset()
    if offset is None:
        return
    if offset % timedelta(minutes=1) or not MIN_OFFSET <= offset <= MAX_OFFSET:
        raise InvalidInput("use a UTC offset from -12:00 to +14:00 in whole minutes", what=what)


def check_until(value: datetime, now: datetime, what: str = "keep-until") -> datetime:
    """A date to keep something until: in the future and at most :data:`MAX_AHEAD` ahead, as
    UTC.  Without a zone it is read as UTC (the API's rule; the CLI adds the local zone)."""
    label = f"{what} {quoted(value.isoformat())}"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    check_offset(value, label)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput("it is out of range", what=label) from None
    if value <= now:
        raise InvalidInput("it is not in the future", what=label)
    if value - now > MAX_AHEAD:
        raise InvalidInput(f"it is more than {MAX_AHEAD.days} days ahead", what=label)
    return value


# --- paths -----------------------------------------------------------------------------------

#: Pseudo or in-memory file systems: what is written there is not a file, or is gone at boot.
PSEUDO_TREES = ("/proc", "/sys", "/dev", "/run")
#: The system's own files: vmvault never writes into them.
SYSTEM_TREES = ("/etc", "/usr", "/bin", "/sbin", "/boot", "/lib", "/lib32", "/lib64", "/libx32")
#: Directories that hold other directories: their children are fine, they themselves are not.
SHARED_ROOTS = ("/", "/home", "/root", "/var", "/var/lib", "/var/lib/libvirt")


def forbidden_area(path: PurePosixPath) -> str | None:
    """Why vmvault must not write a vault, key file or restored disk at ``path`` (absolute,
    symlinks resolved), or None."""
    for tree in PSEUDO_TREES:
        if path == PurePosixPath(tree) or path.is_relative_to(tree):
            return f"it is in {tree}, a pseudo or in-memory file system"
    for tree in SYSTEM_TREES:
        if path == PurePosixPath(tree) or path.is_relative_to(tree):
            return f"it is in {tree}, where the system keeps its own files"
    if str(path) in SHARED_ROOTS:
        return "it is a system directory: use a directory of its own below it"
    return None
