"""Soft delete of recovery points (docs/soft-delete.md)."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class PointSoftDeleted(VmvaultError):
    code = "POINT_SOFT_DELETED"
    message = (
        "recovery point {point} is soft-deleted in vault '{vault}' (purged after {purge_after})"
    )
    remedy = (
        "Undelete it first: 'vmvault points undelete {point} --vault {vault}' "
        "(list soft-deleted points with 'vmvault points list --deleted')."
    )
    kind = "usage"


class PointNotSoftDeleted(VmvaultError):
    code = "POINT_NOT_SOFT_DELETED"
    message = "recovery point {point} is not soft-deleted in vault '{vault}'"
    remedy = (
        "Nothing to undelete: 'vmvault points list --deleted --vault {vault}' lists the "
        "soft-deleted points."
    )
    kind = "usage"


class SoftDeleteExpired(VmvaultError):
    code = "SOFT_DELETE_EXPIRED"
    message = (
        "recovery point {point} in vault '{vault}' can no longer be undeleted: its soft-delete "
        "period ended at {purge_after}"
    )
    remedy = (
        "It is purged by the vault's next GC; restore from another vault holding it, if any "
        "('vmvault points show {point}')."
    )
    kind = "usage"


class SoftDeleteAlwaysOn(VmvaultError):
    code = "SOFT_DELETE_ALWAYS_ON"
    message = "soft delete of vault '{vault}' is always on: it cannot be set to '{mode}'"
    remedy = (
        "Always-on soft delete is permanent by design; only --soft-delete-days can change "
        "(docs/soft-delete.md)."
    )
    kind = "usage"
