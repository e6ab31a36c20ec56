"""The restore test's rules: what the guest had mounted at backup time, and the verdict.

A backup records the guest's mounted file systems (``guest-get-fsinfo``, summarised by
:func:`fs_summary`) in the point's manifest; a restore test boots the point and expects the
same mounts back, except those on disks that were left out (:func:`expected_mounts`,
:func:`missing_mounts`); :func:`judge_test` turns what it saw into a
:class:`RestoreTestResult`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def fs_summary(fsinfo: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    """What a backup records of ``guest-get-fsinfo``: mount point, type, device names."""
    if fsinfo is None:
        return None
    out = []
    for fs in fsinfo:
        mountpoint = fs.get("mountpoint")
        if not isinstance(mountpoint, str):
            continue
        devices = sorted(
            str(d.get("dev"))
            for d in fs.get("disk") or []
            if isinstance(d, Mapping) and d.get("dev")
        )
        out.append(
            {
                "mountpoint": mountpoint,
                "type": str(fs.get("type", "")),
                "name": str(fs.get("name", "")),
                "devices": devices,
            }
        )
    return sorted(out, key=lambda f: str(f["mountpoint"]))


def expected_mounts(recorded: Sequence[Mapping[str, Any]], left_out: set[str]) -> list[str]:
    """The mount points a restored VM must have again.

    A file system that lives only on disks the point left out (a pass-through LUN …) cannot
    come back, so it is not expected; device names are the guest's (``/dev/sda``), matched
    against the left-out targets by their last component, which holds for virtio and SCSI.
    """
    out = []
    for fs in recorded:
        devices = [str(d).rsplit("/", 1)[-1] for d in fs.get("devices") or []]
        if devices and all(d in left_out for d in devices):
            continue
        out.append(str(fs["mountpoint"]))
    return sorted(set(out))


def missing_mounts(expected: Sequence[str], fsinfo: Sequence[Mapping[str, Any]]) -> list[str]:
    mounted = {fs.get("mountpoint") for fs in fsinfo}
    return [m for m in expected if m not in mounted]


@dataclass
class RestoreTestResult:
    """The outcome of a restore test, recorded on the point it tested."""

    tested_at: datetime
    ok: bool
    boot_seconds: float | None  # start → agent answered (None: it never did)
    job_id: int | None = None
    expected: list[str] = field(default_factory=list)  # mount points recorded at backup
    mounted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def summary(self) -> str:
        when = self.tested_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
        booted = (
            f"booted in {self.boot_seconds:.1f} s"
            if self.boot_seconds is not None
            else "did not boot"
        )
        if self.ok:
            mounts = ", ".join(self.expected) if self.expected else "no file systems recorded"
            return f"restore-tested at {when}, {booted}: passed ({mounts})"
        return f"restore-tested at {when}, {booted}: FAILED ({self.problem})"

    def to_json(self) -> dict[str, Any]:
        return {
            "tested_at": self.tested_at.isoformat(),
            "ok": self.ok,
            "boot_seconds": self.boot_seconds,
            "job_id": self.job_id,
            "expected": list(self.expected),
            "mounted": list(self.mounted),
            "missing": list(self.missing),
            "problem": self.problem,
            "summary": self.summary,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RestoreTestResult:
        return cls(
            tested_at=datetime.fromisoformat(str(doc["tested_at"])),
            ok=bool(doc["ok"]),
            boot_seconds=doc.get("boot_seconds"),
            job_id=doc.get("job_id"),
            expected=list(doc.get("expected") or []),
            mounted=list(doc.get("mounted") or []),
            missing=list(doc.get("missing") or []),
            problem=doc.get("problem"),
        )


def judge_test(
    expected: Sequence[str], fsinfo: Sequence[Mapping[str, Any]] | None
) -> tuple[list[str], list[str]]:
    """(mounted, missing) among the expected mount points, given the guest's fsinfo now."""
    now = list(fsinfo or [])
    missing = missing_mounts(expected, now)
    mounted = sorted(str(fs.get("mountpoint")) for fs in now if fs.get("mountpoint"))
    return mounted, missing
