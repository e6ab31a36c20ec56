"""Soft delete of recovery points (docs/soft-delete.md): the pure rules.

A vault's :class:`SoftDelete` setting says what removing a point from it does: with the mode
``on`` (the default) or ``always``, the point's holding in that vault is marked soft-deleted
for ``days`` (a :class:`Deletion`: when, and when it may be purged); ``off`` deletes at once.
``always`` is a one-way door: once set, neither ``on`` nor ``off`` can be set again
(:func:`change`).  A soft-deleted holding can be undeleted until its period ends
(:func:`check_undelete`); from then on it only waits for the vault's next GC to purge it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from vmvault.domain.errors import InvalidInput, SoftDeleteAlwaysOn, SoftDeleteExpired

DEFAULT_DAYS = 14
MIN_DAYS = 1
#: A sane maximum: ten years of soft-deleted points would be a retention policy, not a bin.
MAX_DAYS = 3650


class SoftDeleteMode(StrEnum):
    ON = "on"  # soft delete; can be turned off
    OFF = "off"  # delete at once (the behaviour before soft delete)
    ALWAYS = "always"  # soft delete, never to be turned off again


@dataclass(frozen=True)
class SoftDelete:
    """A vault's soft-delete setting."""

    mode: SoftDeleteMode = SoftDeleteMode.ON
    days: int = DEFAULT_DAYS

    @property
    def enabled(self) -> bool:
        return self.mode is not SoftDeleteMode.OFF


@dataclass(frozen=True)
class Deletion:
    """A soft-deleted holding: when it was deleted, and from when it may be purged."""

    deleted_at: datetime
    purge_after: datetime

    def expired(self, now: datetime) -> bool:
        """Whether its period has ended (GC purges it; it can no longer be undeleted)."""
        return now >= self.purge_after


def deletion(setting: SoftDelete, now: datetime) -> Deletion:
    """The deletion a removal at ``now`` makes under ``setting`` (soft delete on)."""
    return Deletion(now, now + timedelta(days=setting.days))


def validate_days(days: int) -> int:
    if not MIN_DAYS <= days <= MAX_DAYS:
        raise InvalidInput(f"use {MIN_DAYS}-{MAX_DAYS} days", what=f"--soft-delete-days {days}")
    return days


def parse_mode(text: str) -> SoftDeleteMode:
    try:
        return SoftDeleteMode(text.strip().lower())
    except ValueError:
        raise InvalidInput("use on, off or always", what=f"--soft-delete {text!r}") from None


def change(
    vault: str, current: SoftDelete, mode: SoftDeleteMode | None, days: int | None
) -> SoftDelete:
    """The setting after ``vault update`` (None: unchanged).  Refused: days out of range; any
    mode but ``always`` once the vault is always-on (``SOFT_DELETE_ALWAYS_ON``)."""
    if days is not None:
        validate_days(days)
    if current.mode is SoftDeleteMode.ALWAYS and mode not in (None, SoftDeleteMode.ALWAYS):
        raise SoftDeleteAlwaysOn(vault=vault, mode=str(mode))
    return SoftDelete(mode or current.mode, current.days if days is None else days)


def check_undelete(point: str, vault: str, gone: Deletion, now: datetime) -> None:
    """Refuse to undelete a holding whose period has ended (``SOFT_DELETE_EXPIRED``): GC may
    be purging it, and after its period a point is meant to be gone."""
    if gone.expired(now):
        raise SoftDeleteExpired(
            point=point, vault=vault, purge_after=gone.purge_after.isoformat(timespec="seconds")
        )
