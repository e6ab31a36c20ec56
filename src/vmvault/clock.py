"""The clock every service reads: the wall clock (UTC), or for lab tests the wall clock shifted
by the seconds written in ``VMVAULT_TEST_CLOCK_FILE``.

The shifted clock exists so that a lab test meets a scheduler slot (a ``daily@HH:MM`` minute)
without waiting for the wall clock: the test writes, say, ``42.5`` into the file, and every
process given that file — the ``vmvault serve`` nodes and the CLI — reads a clock 42.5 s ahead
from its next call on (tests/integration/test_node_faults.py).  The file is re-read when it
changes (its inode, size or mtime: write it to a temporary name and rename it), so running
servers move with it; a missing or empty file is no shift.  A test moves it forward only:
leases and heartbeats written before a jump then look older than they are, which is what
the test wants (the leader's lease may expire at the jump: the next tick takes it).

A forward shift makes retention locks and purge dates in the catalog come early (S3 Object
Lock still holds on the storage), so the setting takes two deliberate steps: settings refuse
it with TLS, beyond loopback, or for a file outside the lab's directory (``VMVAULT_LAB_DIR``,
where ``vmvault lab`` keeps its state; config.py); ``vmvault serve`` logs a warning when it is
set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vmvault.config import parse_clock_offset

SETTING = "VMVAULT_TEST_CLOCK_FILE"


def utcnow() -> datetime:
    return datetime.now(UTC)


class FileShiftedClock:
    """The wall clock plus the seconds in ``path`` (see the module)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._shift = timedelta(0)

    def __call__(self) -> datetime:
        try:
            st = os.stat(self.path)
            seen: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            seen = None
        if seen != self._seen:
            text = self.path.read_text() if seen is not None else ""
            self._shift = timedelta(seconds=parse_clock_offset(text, SETTING))
            self._seen = seen
        return utcnow() + self._shift


def clock_of(test_clock_file: Path | None) -> Callable[[], datetime]:
    """:func:`utcnow`, or the :class:`FileShiftedClock` of ``test_clock_file``."""
    return utcnow if test_clock_file is None else FileShiftedClock(test_clock_file)
