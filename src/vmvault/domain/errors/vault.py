"""Vaults and what they hold: choosing a vault, its format, keys, chunks, indexes, manifests and points."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class VaultNotFound(VmvaultError):
    code = "VAULT_NOT_FOUND"
    message = "no vault named '{name}'"
    remedy = "List vaults with 'vmvault vault list' or create one with 'vmvault vault create'."
    kind = "usage"


class VaultNotChosen(VmvaultError):
    code = "VAULT_NOT_CHOSEN"
    message = "{count} vaults exist and none was chosen"
    remedy = "Name the vault with --vault NAME (or set VMVAULT_VAULT)."
    kind = "usage"


class NoVault(VmvaultError):
    code = "NO_VAULT"
    message = "no vault exists yet"
    remedy = "Create one with 'vmvault vault create NAME --location LOC'."
    kind = "usage"


class VaultExists(VmvaultError):
    code = "VAULT_EXISTS"
    message = "a vault named '{name}' already exists"
    remedy = "Choose another name."
    kind = "usage"


class VaultPathInUse(VmvaultError):
    code = "VAULT_PATH_IN_USE"
    message = "{path} is not an empty directory"
    remedy = "Give --path an empty or new directory."
    kind = "usage"


class VaultStorageInUse(VmvaultError):
    code = "VAULT_STORAGE_IN_USE"
    message = "{url} at {endpoint} already holds objects ('{key}' …)"
    remedy = (
        "A vault needs a bucket and prefix of its own: give another --bucket or --prefix (a "
        "bucket can hold many vaults under different prefixes), or empty that prefix."
    )
    kind = "usage"


class VaultCreateFailed(VmvaultError):
    code = "VAULT_CREATE_FAILED"
    message = "vault '{name}' could not be created in {path}"
    remedy = (
        "Nothing was left behind: fix the cause (permissions, space, the key file's "
        "directory) and run the same 'vmvault vault create' again."
    )


class VaultNotInitialised(VmvaultError):
    code = "VAULT_NOT_INITIALISED"
    message = "{path} holds no vmvault chunk store (its 'config' file is missing)"
    remedy = "Check the vault's directory; a vault created by 'vmvault vault create' has one."
    kind = "usage"


class VaultConfigCorrupt(VmvaultError):
    code = "VAULT_CONFIG_CORRUPT"
    message = "the configuration of the vault at {path} cannot be read"
    remedy = "Restore the vault's 'config' file from a copy of the vault directory."


class VaultFormatUnsupported(VmvaultError):
    code = "VAULT_FORMAT_UNSUPPORTED"
    message = "{what} at {path} has format version {found}; this vmvault reads version {supported}"
    remedy = "Use the vmvault release that wrote this vault (or a newer one)."
    kind = "usage"


class VaultLocked(VmvaultError):
    code = "VAULT_LOCKED"
    message = "the vault at {path} is locked by {holder}"
    remedy = "Wait for the {holder} to finish, then retry."
    kind = "usage"


class VaultFull(VmvaultError):
    code = "VAULT_FULL"
    message = "the file system of the vault at {path} is full"
    remedy = (
        "Free space: delete old recovery points and run garbage collection, "
        "or move the vault to a larger file system."
    )


class StorageAccessDenied(VmvaultError):
    code = "STORAGE_ACCESS_DENIED"
    message = "the object storage of {path} refused the credentials or the request ({why})"
    remedy = (
        "Check the access key and secret (credentials file or AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY) and that this user may read, write and delete in the bucket."
    )


class StorageBucketNotFound(VmvaultError):
    code = "STORAGE_BUCKET_NOT_FOUND"
    message = "the bucket of {path} does not exist"
    remedy = "Create the bucket first (vmvault never creates buckets), or correct --bucket."


class StorageUnreachable(VmvaultError):
    code = "STORAGE_UNREACHABLE"
    message = "the object storage of {path} did not answer ({why})"
    remedy = (
        "Check that the endpoint URL is right and the service is up and reachable from this "
        "host; nothing half-written is visible: run the operation again once it answers."
    )


class StorageCredentialsMissing(VmvaultError):
    code = "STORAGE_CREDENTIALS_MISSING"
    message = "no credentials for the object storage of {path}: {why}"
    remedy = (
        "Give a credentials file (an INI file with aws_access_key_id and "
        "aws_secret_access_key under [default]) or set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY."
    )
    kind = "usage"


class PassphraseRequired(VmvaultError):
    code = "PASSPHRASE_REQUIRED"
    message = "the vault at {path} is encrypted and no passphrase was given"
    remedy = "Give the vault's passphrase (and its key file)."
    kind = "usage"


class WrongPassphrase(VmvaultError):
    code = "WRONG_PASSPHRASE"
    message = "the passphrase does not unlock the key file {key_file}"
    remedy = "Check the passphrase (it is case sensitive) and that this is the vault's key file."
    kind = "usage"


class KeyFileMissing(VmvaultError):
    code = "KEY_FILE_MISSING"
    message = "the key file {key_file} of an encrypted vault does not exist"
    remedy = (
        "Give the path of the key file written when the vault was created (it is kept outside "
        "the vault; restore it from your copy). Without it the vault cannot be read."
    )
    kind = "usage"


class KeyFileInvalid(VmvaultError):
    code = "KEY_FILE_INVALID"
    message = "{key_file} is not a vmvault key file or is damaged"
    remedy = "Give the key file written when the vault was created, or restore it from your copy."
    kind = "usage"


class KeyFileMismatch(VmvaultError):
    code = "KEY_FILE_MISMATCH"
    message = "the key file {key_file} belongs to another vault than {path}"
    remedy = "Give the key file written when this vault was created."
    kind = "usage"


class ChunkMissing(VmvaultError):
    code = "CHUNK_MISSING"
    message = "chunk {chunk} is missing from the vault"
    remedy = (
        "Run a verify of the vault to find every recovery point that references it; the next "
        "full backup of an affected VM stores the chunk again."
    )


class ChunkCorrupt(VmvaultError):
    code = "CHUNK_CORRUPT"
    message = "chunk {chunk} failed verification ({why})"
    remedy = (
        "The vault's storage damaged or altered this chunk. Restore from another recovery "
        "point, check the storage (dmesg, SMART), and run a verify of the vault."
    )


class IndexCorrupt(VmvaultError):
    code = "INDEX_CORRUPT"
    message = "the disk index {index} is damaged or does not match its manifest ({why})"
    remedy = "Do not use this recovery point; restore from another one and run a verify."


class ManifestCorrupt(VmvaultError):
    code = "MANIFEST_CORRUPT"
    message = "the manifest of recovery point {point} is damaged or was altered ({why})"
    remedy = (
        "Do not trust this recovery point; restore from another one, check who can write "
        "the vault directory, and run a verify."
    )


class PointNotFound(VmvaultError):
    code = "POINT_NOT_FOUND"
    message = "no recovery point {point} in the vault at {path}"
    remedy = "List the recovery points of the VM and pick one of them."
    kind = "usage"


class PointOfAnotherVm(VmvaultError):
    code = "POINT_OF_ANOTHER_VM"
    message = "recovery point {point} belongs to VM {owner}, not to {vm}"
    remedy = "List the VM's points with 'vmvault points list {vm}' and pick one of them."
    kind = "usage"


class VerifyFailed(VmvaultError):
    code = "VERIFY_FAILED"
    message = "{count} recovery point(s) are damaged: {points}"
    remedy = (
        "The job log names each missing or corrupt chunk and the disk ranges affected; no "
        "other vault held an intact copy to heal them from. Take a new backup of the affected "
        "VMs (the damaged points cannot be fully restored), or copy the points to this vault "
        "again from a vault that holds them intact, then verify again."
    )


class PointDamaged(VmvaultError):
    code = "POINT_DAMAGED"
    message = "recovery point {point} is damaged in vault {vault}: {where}"
    remedy = (
        "Read it from a vault where it is intact (--from-vault VAULT), if the message names "
        "one; else restore another recovery point of the VM, or copy this point to the vault "
        "again from a vault that holds it intact; a verify that finds it intact clears the "
        "mark (docs/healing.md)."
    )
    kind = "usage"


class PaperKeyInvalid(VmvaultError):
    code = "PAPER_KEY_INVALID"
    message = "the paper key is not valid: {where}"
    remedy = (
        "Retype the line named (letters and digits as printed; case, spaces and hyphens do not "
        "matter), or give the QR code's text; nothing was written."
    )
    kind = "usage"


class PaperKeyMismatch(VmvaultError):
    code = "PAPER_KEY_MISMATCH"
    message = "the paper key is of key set {given}, but vault {vault} uses key set {expected}"
    remedy = "Give the paper key exported from this vault (its fingerprint line must match)."
    kind = "usage"


class VaultNotEncrypted(VmvaultError):
    code = "VAULT_NOT_ENCRYPTED"
    message = "vault {vault} is not encrypted: it has no key file to {action}"
    remedy = (
        "Key export, import and passphrase changes are for encrypted vaults "
        "(vault create --encrypt); an unencrypted vault's keys are in its config."
    )
    kind = "usage"


class VaultInUse(VmvaultError):
    code = "VAULT_IN_USE"
    message = "vault '{name}' is in use: {why}"
    remedy = (
        "Unregister its VMs and delete or move its policies first; points it holds go only "
        "with 'vmvault vault delete {name} --with-points' (docs/approvals.md)."
    )
    kind = "usage"
