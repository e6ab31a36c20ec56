"""Immutable vaults and retained points (docs/immutability.md)."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class ImmutableLocked(VmvaultError):
    code = "IMMUTABLE_LOCKED"
    message = "vault '{vault}' is locked immutable: its immutability cannot be turned off"
    remedy = (
        "Locking is permanent by design; points leave the vault only once their retention "
        "ends (docs/immutability.md)."
    )
    kind = "usage"


class PointRetained(VmvaultError):
    code = "POINT_RETAINED"
    message = (
        "recovery point {point} is retained in immutable vault '{vault}' until {until}: it "
        "cannot be deleted before"
    )
    remedy = (
        "Wait until {until}; 'vmvault points show {point}' shows its retain_until "
        "(docs/immutability.md)."
    )
    kind = "usage"


class RetentionShortened(VmvaultError):
    code = "RETENTION_SHORTENED"
    message = "in vault '{vault}', {what} can only be lengthened ({change})"
    remedy = (
        "Give a value at least the current one: a retain-until, and in an immutable vault "
        "any retention, only grows (docs/immutability.md)."
    )
    kind = "usage"


class ImmutableUnsupported(VmvaultError):
    code = "IMMUTABLE_UNSUPPORTED"
    message = "the storage of vault '{vault}' cannot hold objects immutable: {why}"
    remedy = (
        "Put the vault on a file system with the immutable attribute (ext4, xfs, btrfs) or on "
        "an S3 bucket created with Object Lock ('vault create --storage s3 --object-lock'); "
        "docs/immutability.md."
    )
    kind = "usage"
