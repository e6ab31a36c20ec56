"""Immutable vaults and retained points (docs/immutability.md): the pure rules.

A vault's :class:`ImmutableMode` says whether its points may leave before their
**retain-until**: ``off`` (the default) — retain-until is informative; ``on`` — no point
leaves before it (deleting refused, retention keeps it, purge and GC skip it), policies of
the vault only lengthen, soft delete only lengthens; ``locked`` — as ``on``, and the setting
itself can never be changed again (:func:`change`).

A point's retain-until is fixed when it is created (:func:`retain_until`): the later of the
date its policy *guarantees* it (:func:`policy_guarantee`) and the ``--keep-until`` it was
given; ``points lock`` only moves it later (:func:`lengthen`).

Every deletion path asks :func:`check_removal` (one refusal) or, where a whole series is
decided at once (retention's prune), :func:`hold_retained` (retained points kept, reported).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from vmvault.domain.errors import (
    ImmutableLocked,
    InvalidInput,
    PointRetained,
    RetentionShortened,
)
from vmvault.domain.retention import LEVELS, Decision, Retention
from vmvault.domain.soft_delete import SoftDelete

if TYPE_CHECKING:
    from vmvault.domain.vault import Vault

#: Object Lock on S3: a chunk shared by later points is extended to the newest point's
#: retain-until plus this margin, so a chunk that daily points share costs one
#: PutObjectRetention per margin, not one per point (docs/immutability.md, "Extension cost").
EXTENSION_MARGIN = timedelta(days=7)


class ImmutableMode(StrEnum):
    OFF = "off"  # points may be deleted at any time (the behaviour before immutability)
    ON = "on"  # no point leaves before its retain-until; can be turned off
    LOCKED = "locked"  # as on, for good


class LockMode(StrEnum):
    """S3 Object Lock's retention modes: GOVERNANCE yields to a caller with the
    ``s3:BypassGovernanceRetention`` permission; COMPLIANCE to nobody, root account included."""

    GOVERNANCE = "governance"
    COMPLIANCE = "compliance"


def enabled(mode: ImmutableMode) -> bool:
    return mode is not ImmutableMode.OFF


def change(vault: str, current: ImmutableMode, immutable: bool | None, lock: bool) -> ImmutableMode:
    """The setting after ``vault update --immutable [--lock]`` / ``--no-immutable``.
    Refused: ``--no-immutable`` (or ``--no-immutable --lock``) once locked
    (``IMMUTABLE_LOCKED``); ``--lock`` with ``--no-immutable`` (``INVALID_INPUT``)."""
    if immutable is None and not lock:
        raise InvalidInput("give --immutable [--lock] or --no-immutable", what=f"vault {vault}")
    if immutable is False and lock:
        raise InvalidInput("--lock goes with --immutable", what="--no-immutable --lock")
    if current is ImmutableMode.LOCKED:
        if immutable is False:
            raise ImmutableLocked(vault=vault)
        return current
    if lock:
        return ImmutableMode.LOCKED
    return ImmutableMode.ON if immutable or immutable is None else ImmutableMode.OFF


def default_lock_mode(mode: ImmutableMode) -> LockMode:
    """The Object Lock mode of a vault's objects when none is asked: COMPLIANCE once the vault
    is locked (then not even the bucket's owner may shorten it, which is what "locked"
    promises); GOVERNANCE before (a mistake in an unlocked vault can still be undone by an
    administrator holding the bypass permission)."""
    return LockMode.COMPLIANCE if mode is ImmutableMode.LOCKED else LockMode.GOVERNANCE


def lock_mode(vault: Vault) -> LockMode:
    """The Object Lock mode of the vault's retained objects: the one chosen at ``vault
    create --lock-mode``, else by its immutability (:func:`default_lock_mode`)."""
    chosen = vault.s3.lock_mode if vault.s3 is not None else None
    return chosen or default_lock_mode(vault.immutable)


def parse_lock_mode(text: str) -> LockMode:
    try:
        return LockMode(text.strip().lower())
    except ValueError:
        raise InvalidInput("use governance or compliance", what=f"--lock-mode {text!r}") from None


# --- retain-until ----------------------------------------------------------------------------


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=tz)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def policy_guarantee(retention: Retention, created_at: datetime, tz: ZoneInfo) -> datetime:
    """The instant until which ``retention`` certainly keeps a point created at ``created_at``
    that stays the newest point of its bucket at the finest level with a count N > 0: the
    start (in ``tz``) of the N-th bucket after the point's.

    Why certainly: retention keeps the newest point of each of the N most recent buckets that
    *have points* (domain/retention.py, rule 3).  The point's bucket leaves that window only
    once N newer buckets hold points, and the earliest instant at which the N-th newer bucket
    can hold one is its start.  Gaps (days without a point) only push it later; pinned points
    are set aside and push nothing.  Coarser levels may keep the point longer, but only if it
    is still the newest of its week, month or year later on, which nobody knows at creation;
    so the finest level is the guarantee.  A point superseded within its bucket (several
    backups a day) is *held* until then anyway: over-retention, the safe direction."""
    if created_at.tzinfo is None:
        raise ValueError("created_at must be aware")
    local = created_at.astimezone(tz).date()
    for level in LEVELS:
        n = retention.counts[level]
        if n == 0:
            continue
        if level == "daily":
            start = local + timedelta(days=n)
        elif level == "weekly":
            start = local - timedelta(days=local.weekday()) + timedelta(weeks=n)
        elif level == "monthly":
            start = _add_months(local, n)
        else:
            start = date(local.year + n, 1, 1)
        return _local_midnight(start, tz)
    raise ValueError("a retention keeps at least one point")  # Retention.validate refuses it


def retain_until(policy_date: datetime | None, keep_until: datetime | None) -> datetime | None:
    """A new point's retain-until: the later of its policy's guarantee and its
    ``--keep-until``; None when it has neither (an ad-hoc point: not retained)."""
    dates = [d for d in (policy_date, keep_until) if d is not None]
    return max(dates) if dates else None


def lengthen(vault: str, point: str, current: datetime | None, wanted: datetime) -> datetime:
    """``points lock POINT --keep-until DATE``: the point's new retain-until.  Never earlier
    than the current one (``RETENTION_SHORTENED``); the same date changes nothing."""
    if current is not None and wanted < current:
        raise RetentionShortened(
            vault=vault,
            what=f"the retain-until of point {point}",
            change=f"{current.isoformat(timespec='seconds')} -> "
            f"{wanted.isoformat(timespec='seconds')}",
        )
    return wanted


def retained(until: datetime | None, now: datetime) -> bool:
    """Whether a point with this retain-until may not leave yet."""
    return until is not None and until > now


def check_removal(
    vault: str, mode: ImmutableMode, point: str, until: datetime | None, now: datetime
) -> None:
    """Refuse to remove ``point`` from ``vault`` before its retain-until (``POINT_RETAINED``)
    when the vault is immutable; anything goes in a vault that is not."""
    if enabled(mode) and retained(until, now):
        assert until is not None
        raise PointRetained(point=point, vault=vault, until=until.isoformat(timespec="seconds"))


def hold_retained(
    decisions: Sequence[Decision],
    until: Mapping[str, datetime | None],
    mode: ImmutableMode,
    now: datetime,
) -> list[Decision]:
    """Retention's decisions with each removal of a retained point (``until``: point id →
    retain-until) turned into a keep, reason ``retained until …``, in an immutable vault."""
    if not enabled(mode):
        return list(decisions)
    out = []
    for d in decisions:
        when = until.get(d.point_id)
        if not d.keep and retained(when, now):
            assert when is not None
            reason = f"retained until {when.isoformat(timespec='seconds')} (immutable vault)"
            d = Decision(d.point_id, True, (reason,))
        out.append(d)
    return out


# --- what may change in an immutable vault ---------------------------------------------------


def check_retention_change(vault: str, policy: str, old: Retention, new: Retention) -> None:
    """In an immutable vault a policy's counts only grow (``RETENTION_SHORTENED``)."""
    lower = [
        f"{lv} {old.counts[lv]} -> {new.counts[lv]}"
        for lv in LEVELS
        if new.counts[lv] < old.counts[lv]
    ]
    if lower:
        raise RetentionShortened(
            vault=vault, what=f"the retention of policy '{policy}'", change=", ".join(lower)
        )


def check_soft_delete_change(vault: str, old: SoftDelete, new: SoftDelete) -> None:
    """In an immutable vault soft delete is neither turned off nor shortened."""
    if old.enabled and not new.enabled:
        raise RetentionShortened(vault=vault, what="soft delete", change="on -> off")
    if new.days < old.days:
        raise RetentionShortened(
            vault=vault, what="--soft-delete-days", change=f"{old.days} -> {new.days}"
        )


def extension(
    current: datetime | None, wanted: datetime, margin: timedelta = EXTENSION_MARGIN
) -> datetime | None:
    """Object Lock: the retain-until to set on an object that a point retained until
    ``wanted`` references, or None when its current one already covers it.  Extended to
    ``wanted + margin`` (chunks: :data:`EXTENSION_MARGIN`), so that the points of the next
    margin find it covered; a point's own manifest and indexes take no margin."""
    if current is not None and current >= wanted:
        return None
    return wanted + margin
