"""Copies of recovery points to a second vault (docs/copies.md)."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class CopySameVault(VmvaultError):
    code = "COPY_SAME_VAULT"
    message = "vault '{vault}' was named as both source and destination of the copy"
    remedy = "Name two different vaults: 'vmvault copy --from A --to B'."
    kind = "usage"


class CopyChunkSizeDiffers(VmvaultError):
    code = "COPY_CHUNK_SIZE_DIFFERS"
    message = (
        "vault '{source}' cuts disks into chunks of {source_size} bytes and '{target}' into "
        "chunks of {target_size}: a point cannot be copied between them"
    )
    remedy = (
        "Copy into a vault created with the same --chunk-size as '{source}' "
        "(docs/copies.md: why chunks are not re-cut)."
    )
    kind = "usage"


class CopyWouldDecrypt(VmvaultError):
    code = "COPY_WOULD_DECRYPT"
    message = (
        "vault '{source}' is encrypted and '{target}' is not: the copy would store its "
        "points in clear"
    )
    remedy = "Copy into an encrypted vault ('vmvault vault create … --encrypt')."
    kind = "usage"


class NothingToCopy(VmvaultError):
    code = "NOTHING_TO_COPY"
    message = "no recovery point of {vm} in vault '{vault}'"
    remedy = "List its points with 'vmvault points list VM --vault {vault}'; back it up first."
    kind = "usage"


class CopyVerifyFailed(VmvaultError):
    code = "COPY_VERIFY_FAILED"
    message = "the copy of point {point} in vault '{vault}' did not verify ({problem})"
    remedy = (
        "The copy was removed from '{vault}' (the point in its source vault is untouched). "
        "Verify the source point ('vmvault verify --point {point}'), then run the copy again."
    )


class PointNotInVault(VmvaultError):
    code = "POINT_NOT_IN_VAULT"
    message = "recovery point {point} is not held by vault '{vault}' (held by: {holders})"
    remedy = "Name one of the vaults that hold it, or copy it there with 'vmvault copy'."
    kind = "usage"
