"""LVM2 logical volumes of a physical volume, from its label and text metadata (pure).

A PV starts with a label (``LABELONE``, in one of its first four sectors) whose PV header
lists the metadata areas; the first area's header points at the current metadata, a text
in LVM's config syntax naming the volume group, its extent size, its PVs (``pe_start``) and
each LV's segments.  A **linear** LV whose segments all lie on this PV is a plain byte range
of it (:func:`logical_volumes`), which any reader opens at an offset like a partition.
Striped, mirrored, thin or multi-PV volumes are left out (their bytes are not one range).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

SECTOR = 512
LABEL = b"LABELONE"
LABEL_TYPE = b"LVM2 001"
#: How much of a PV's start holds its label and metadata area header (read this much first).
HEAD = 8 * SECTOR
_TOKEN = re.compile(r'\s*(?:#[^\n]*\n\s*)*("(?:[^"\\]|\\.)*"|[\[\]{}=,]|[^\s\[\]{}=,"#]+)')


@dataclass(frozen=True)
class LogicalVolume:
    name: str  # "vg/lv"
    offset: int  # bytes from the PV's start
    size: int


def metadata_area(head: bytes) -> tuple[int, int] | None:
    """``(offset, size)`` in the PV of its first metadata area, from ``head`` (the first
    :data:`HEAD` bytes); None when it is no LVM2 PV."""
    for n in range(4):
        label = head[n * SECTOR : (n + 1) * SECTOR]
        if label[:8] == LABEL and label[24:32] == LABEL_TYPE:
            (offset_xl,) = struct.unpack_from("<I", label, 20)
            pv = head[n * SECTOR + offset_xl :]
            pos = 32 + 8  # uuid, device size
            while pos + 16 <= len(pv):  # the data areas, then the metadata areas
                off, size = struct.unpack_from("<QQ", pv, pos)
                pos += 16
                if off == 0 and size == 0:
                    break
            if pos + 16 > len(pv):
                return None
            off, size = struct.unpack_from("<QQ", pv, pos)
            return (off, size) if off else None
    return None


def metadata_text(area: bytes) -> str | None:
    """The current metadata text of a metadata area (its bytes from its start)."""
    if len(area) < SECTOR or area[4:20] != b" LVM2 x[5A%r0N*>":
        return None
    (_start, size) = struct.unpack_from("<QQ", area, 24)
    off, length = struct.unpack_from("<QQ", area, 40)
    if off == 0 or length == 0:
        return None
    text = area[off : off + length]
    if off + length > size:  # the circular buffer wrapped after its header sector
        text = area[off:size] + area[SECTOR : SECTOR + off + length - size]
    return text.rstrip(b"\x00").decode(errors="replace")


def parse(text: str) -> dict[str, object]:
    """LVM's config text as nested dicts (values: int, str or lists of them)."""
    tokens = [m.group(1) for m in _TOKEN.finditer(text)]
    pos = 0

    def value() -> object:
        nonlocal pos
        t = tokens[pos]
        pos += 1
        if t == "[":
            items = []
            while tokens[pos] != "]":
                if tokens[pos] != ",":
                    items.append(value())
                else:
                    pos += 1
            pos += 1
            return items
        if t.startswith('"'):
            return t[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        try:
            return int(t)
        except ValueError:
            return t

    def section(end: str | None) -> dict[str, object]:
        nonlocal pos
        out: dict[str, object] = {}
        while pos < len(tokens) and tokens[pos] != end:
            name = tokens[pos]
            pos += 1
            if pos < len(tokens) and tokens[pos] == "{":
                pos += 1
                out[name] = section("}")
                pos += 1
            elif pos < len(tokens) and tokens[pos] == "=":
                pos += 1
                out[name] = value()
        return out

    try:
        return section(None)
    except IndexError:
        return {}


def logical_volumes(text: str, pv_uuid: str) -> list[LogicalVolume]:
    """The linear LVs lying wholly on the PV ``pv_uuid`` (dashes ignored), by the metadata
    ``text``."""
    for vg_name, vg in parse(text).items():
        if not isinstance(vg, dict) or "physical_volumes" not in vg:
            continue
        extent = int(vg.get("extent_size", 0)) * SECTOR
        pvs = vg["physical_volumes"]
        ours = [
            (n, pv)
            for n, pv in (pvs.items() if isinstance(pvs, dict) else [])
            if isinstance(pv, dict) and str(pv.get("id", "")).replace("-", "") == pv_uuid
        ]
        if not ours or not extent:
            return []
        pv_name, pv = ours[0]
        pe_start = int(pv.get("pe_start", 0)) * SECTOR
        found = []
        lvs = vg.get("logical_volumes", {})
        for lv_name, lv in lvs.items() if isinstance(lvs, dict) else []:
            ranges = _linear(lv, pv_name) if isinstance(lv, dict) else None
            if ranges:
                first, count = ranges
                found.append(
                    LogicalVolume(f"{vg_name}/{lv_name}", pe_start + first * extent, count * extent)
                )
        return found
    return []


def _linear(lv: dict[str, object], pv_name: str) -> tuple[int, int] | None:
    """``(first extent on the PV, extent count)`` of an LV whose segments are consecutive
    and linear on ``pv_name``; None otherwise."""
    segments = sorted(
        (s for k, s in lv.items() if k.startswith("segment") and isinstance(s, dict)),
        key=lambda s: int(s.get("start_extent", 0)),
    )
    if not segments or "VISIBLE" not in (lv.get("status") or []):  # type: ignore[operator]
        return None
    first = count = None
    for s in segments:
        stripes = s.get("stripes")
        if (
            s.get("type") != "striped"
            or s.get("stripe_count") != 1
            or not isinstance(stripes, list)
        ):
            return None
        if len(stripes) != 2 or stripes[0] != pv_name:
            return None
        at = int(stripes[1])
        if first is None:
            first, count = at, 0
        if count is None or at != first + count:
            return None
        count += int(s.get("extent_count", 0))
    return (first, count) if first is not None and count else None


def pv_uuid(head: bytes) -> str:
    """The PV's UUID (32 characters, no dashes) from its label in ``head``."""
    for n in range(4):
        label = head[n * SECTOR : (n + 1) * SECTOR]
        if label[:8] == LABEL and label[24:32] == LABEL_TYPE:
            (offset_xl,) = struct.unpack_from("<I", label, 20)
            start = n * SECTOR + offset_xl
            return head[start : start + 32].decode(errors="replace")
    return ""
