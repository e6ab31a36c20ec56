"""Attaching an existing vault to a catalog (``vault attach``, docs/disaster-recovery.md)."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class NotAVault(VmvaultError):
    code = "NOT_A_VAULT"
    message = "{where} holds no vmvault vault ({why})"
    remedy = (
        "Give the directory (--path) or the bucket and prefix (--bucket, --prefix) that hold "
        "the vault's 'config' object and its 'manifests/'; nothing was written."
    )
    kind = "usage"


class VaultAlreadyAttached(VmvaultError):
    code = "VAULT_ALREADY_ATTACHED"
    message = "{where} is already in this catalog as vault '{name}'"
    remedy = (
        "Use vault '{name}' as it is; one storage is one vault in a catalog (two names for it "
        "would prune and collect each other's points)."
    )
    kind = "usage"


class VaultKeyRequired(VmvaultError):
    code = "VAULT_KEY_REQUIRED"
    message = "the vault at {where} is encrypted and its keys are not in the storage"
    remedy = (
        "Give --paper-key FILE (the text 'vmvault vault key export' printed) with a new "
        "passphrase in VMVAULT_NEW_PASSPHRASE, or --key-file FILE (a copy of the vault's key "
        "file) with its passphrase in VMVAULT_PASSPHRASE."
    )
    kind = "usage"
