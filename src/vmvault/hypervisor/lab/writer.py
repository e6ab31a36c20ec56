"""Checking the record file of the ``writer`` lab variant (host side, pure).

The guest appends lines ``seq=<n> t=<uptime> payload=<hex> sum=<md5>`` to
``/data/writer/records.log`` and fsyncs after each (see ``guest/writer``), where ``sum`` is
the MD5 of the line up to and excluding `` sum=``. Any consistent point-in-time copy of the
disk therefore holds a *prefix* of what was written: every complete line intact, sequence
numbers contiguous from 1, and at most the very last line cut short (torn). A restored disk
that violates this lost or reordered writes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

RECORDS_PATH = "/data/writer/records.log"

_LINE = re.compile(rb"(seq=([0-9]+) t=[0-9.]+ payload=[0-9a-f]+) sum=([0-9a-f]{32})")


@dataclass(frozen=True)
class WriterCheck:
    """Verdict on a record file: complete records, the last good sequence number, why not ok."""

    records: int
    last_seq: int
    ok: bool
    problem: str | None = None


def check_writer_records(data: bytes) -> WriterCheck:
    """Verify a ``records.log`` image; a torn (unterminated) last line is allowed."""
    lines = data.split(b"\n")
    torn = lines.pop()  # after the last newline: b"" or a record cut short
    records = 0
    last = 0
    for i, line in enumerate(lines, start=1):
        m = _LINE.fullmatch(line)
        if not m:
            return WriterCheck(records, last, False, f"line {i} is malformed: {line[:80]!r}")
        body, seq, digest = m.group(1), int(m.group(2)), m.group(3).decode()
        if hashlib.md5(body).hexdigest() != digest:
            return WriterCheck(records, last, False, f"line {i} (seq={seq}) has a bad checksum")
        if seq != last + 1:
            return WriterCheck(records, last, False, f"line {i}: seq={seq} follows seq={last}")
        records += 1
        last = seq
    head = torn.rstrip(b"\x00")  # a crash may leave the tail zero-filled
    if head and not (head.startswith(b"seq=") or b"seq=".startswith(head)):
        return WriterCheck(records, last, False, f"the unterminated tail is garbage: {torn[:80]!r}")
    return WriterCheck(records, last, True, None)
