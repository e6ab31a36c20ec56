"""The REST API's request bodies (their OpenAPI schema; responses: :mod:`vmvault.api.models`).

Request models refuse fields they do not know (``extra="forbid"``): a misspelt option
(``{"dry_run": true}`` to ``POST /gc``) is an error, not silently a different request.  They
are strict: ``0`` is no boolean and ``"7"`` no count (a date is the one string converted).
Each takes what the CLI command of the same operation takes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vmvault.domain.access import Role
from vmvault.domain.inputs import MAX_INT64
from vmvault.domain.notification import SUBSCRIBABLE

#: The events a target may subscribe to (domain.notification.SUBSCRIBABLE, in its order).
EventName = Literal[tuple(e.value for e in SUBSCRIBABLE)]  # type: ignore[valid-type]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _example(**doc: Any) -> ConfigDict:
    """A request model's settings with one example body (shown in /docs; the fuzz test
    sends it too)."""
    return ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [doc]})


class BackupRequest(_Request):
    model_config = _example(vms=["web"])

    vms: list[str] = Field(
        min_length=1, description="VM references: uuid, NAME, HOST/NAME or GROUP/NAME"
    )
    vault: str | None = None
    keep_until: datetime | None = Field(
        None, description="retention leaves the points alone until then", strict=False
    )
    set: bool = Field(False, description="one all-or-nothing backup set job (docs/sets.md)")
    require: Literal["application-consistent", "file-system-consistent"] | None = Field(
        None, description="the least consistency: a VM that cannot give it fails its backup"
    )


class VerifyRequest(_Request):
    """One point, one VM's points, or (neither) every point of the vault; not both."""

    model_config = _example(vm="web")

    vault: str | None = None
    point: str | None = None
    vm: str | None = None


class VaultRequest(_Request):
    vault: str | None = None


class RestoreTestRequest(_Request):
    vm: str
    point: str
    from_vault: str | None = Field(None, description="a vault holding the point or a copy")


def _vm_refs() -> Any:
    return Field(min_length=1, description="VM references: uuid, NAME, HOST/NAME or GROUP/NAME")


class CopyRequest(_Request):
    """Copy the points ``from_vault`` holds and ``to_vault`` lacks: of ``vms``, or ``all``."""

    model_config = _example(from_vault="main", to_vault="offsite", all=True)

    from_vault: str
    to_vault: str
    vms: list[str] = Field([], description="VM references (or all: true)")
    all: bool = Field(False, description="every VM with points in from_vault")


class RestoreRequest(_Request):
    model_config = _example(
        vm="web", point="20261201T020000Z-3f2a1c", mode="as-new", name="web-restored"
    )

    vm: str = Field(description="the VM the point belongs to")
    point: str
    mode: Literal["as-new", "replace", "disks-only", "test"] = Field(
        description="test: as-new, booted isolated, checked, then removed (restore --test)"
    )
    name: str | None = Field(None, description="as-new, test: the new VM's name")
    directory: str | None = Field(
        None, description="an absolute directory on the server (disks-only: required)"
    )
    host: str | None = Field(None, description="as-new: libvirt URI of the target host")
    start: bool | None = Field(None, description="start the restored VM")
    keep_previous: bool | None = Field(None, description="replace: keep the displaced images")
    shutdown_timeout: float | None = Field(
        None, description="replace: seconds of graceful shutdown before forcing it off"
    )
    format: Literal["qcow2", "raw"] | None = Field(None, description="disks-only (default qcow2)")
    overwrite: bool | None = Field(None, description="disks-only: replace existing files")
    from_vault: str | None = Field(None, description="a vault holding the point or a copy")
    instant: bool | None = Field(
        None,
        description="as-new, replace: run the VM from the point's export at once, copy its "
        "disks to local storage while it runs, pivot (docs/restore.md, 'Instant recovery')",
    )


class S3Request(_Request):
    endpoint: str = Field(description="the service's URL, e.g. http://127.0.0.1:7480")
    bucket: str
    prefix: str | None = None
    region: str | None = None
    credentials_file: str | None = Field(
        None, description="absolute path on the server (null: the server's environment)"
    )
    object_lock: bool = Field(
        False, description="the bucket has S3 Object Lock: retained points' objects get one"
    )
    lock_mode: Literal["governance", "compliance"] | None = Field(
        None, description="null: compliance once the vault is locked immutable, else governance"
    )


class VaultCreate(_Request):
    """As ``vault create``: in a directory (``path``, default under the server's home) or,
    with ``s3``, in a bucket."""

    model_config = _example(name="offsite", location="local")

    name: str
    location: str
    path: str | None = Field(None, description="an absolute directory on the server")
    encrypt: bool = Field(False, description="the passphrase is the server's VMVAULT_PASSPHRASE")
    key_file: str | None = Field(None, description="absolute path on the server")
    chunk_size: int | None = Field(None, description="bytes, a power of two: 64 KiB … 64 MiB")
    compression_level: int | None = Field(None, description="zstd level (default 1)")
    s3: S3Request | None = None


class VaultAttach(_Request):
    """As ``vault attach``: an existing vault in a directory of the server (``path``) or in
    a bucket (``s3``) into this catalog, its points rebuilt from its manifests."""

    model_config = _example(name="main", location="local", path="/srv/vmvault/main")

    name: str
    location: str
    path: str | None = Field(None, description="the vault's absolute directory on the server")
    s3: S3Request | None = None
    paper_key: str | None = Field(
        None,
        description="encrypted vault: the paper key's text; the new key file is wrapped with "
        "the server's VMVAULT_NEW_PASSPHRASE",
    )
    key_file: str | None = Field(
        None,
        description="encrypted vault: a copy of its key file (absolute path on the server), "
        "opened with the server's VMVAULT_PASSPHRASE",
    )


class HostCreate(_Request):
    model_config = _example(uri="qemu+ssh://host2/system", location="local")

    uri: str = Field(description="libvirt URI (a URI that runs a local command is refused)")
    location: str
    check: bool = Field(True, description="connect to the host first")
    pull_tls: str | None = Field(
        None,
        description="no node runs on this host: any node backs its VMs up by pulling over "
        "NBD with TLS, with the client PKI directory named here (ca-cert.pem, client-cert.pem, "
        "client-key.pem)",
    )


class HostUpdate(_Request):
    model_config = _example(cluster_managed=["db"])

    cluster_managed: list[str] = Field([], description="VMs (name or uuid) to mark")
    not_cluster_managed: list[str] = Field([], description="VMs to unmark")
    pull_tls: str | None = Field(
        None,
        description="back the host's VMs up by pulling over NBD with TLS, with this client "
        "PKI directory (set or changed; as in POST /hosts)",
    )
    no_pull_tls: bool = Field(
        False, description="back the host's VMs up by its own node again (clears pull_tls)"
    )
    check: bool = Field(True, description="with pull_tls: check the directory's files first")


class VaultOnly(_Request):
    vault: str | None = None


class RegisterRequest(_Request):
    model_config = _example(vms=["app"])

    vms: list[str] = _vm_refs()
    vault: str | None = None
    crash_consistent: bool = Field(
        False, description="accept a VM whose guest agent is missing or silent"
    )
    exclude_disks: list[str] = Field([], description="disk targets left out of every backup")


class VmsRequest(_Request):
    model_config = _example(vms=["app"])

    vms: list[str] = _vm_refs()
    vault: str | None = None


class VmUpdate(_Request):
    model_config = _example(exclude_disks=["vdb"])

    exclude_disks: list[str] = Field([], description="disk targets to leave out")
    include_disks: list[str] = Field([], description="disk targets to back up again")


class RetentionCounts(_Request):
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0


class RetentionChange(_Request):
    """Counts to change (the others keep their values)."""

    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    yearly: int | None = None


class _PolicyFields(_Request):
    schedule: str = Field(description="daily@HH:MM, weekly:DAYS@HH:MM or every:Nh[@HH:MM-HH:MM]")
    timezone: str = Field("UTC", description="IANA time zone")
    retention: RetentionCounts
    copy_to: str | None = Field(None, description="copy every new point to this vault")
    copy_retention: RetentionChange | None = Field(
        None, description="retention in copy_to (default: the policy's)"
    )
    as_set: bool = False
    require: Literal["application-consistent", "file-system-consistent"] | None = None
    vault: str | None = None


class PolicyCreate(_PolicyFields):
    model_config = _example(
        name="silver",
        schedule="weekly:sat,sun@01:30",
        timezone="Europe/Berlin",
        retention={"weekly": 4, "monthly": 6},
    )

    name: str


class PolicyPreviewRequest(_PolicyFields):
    model_config = _example(schedule="daily@02:00", retention={"daily": 7}, vm="web", runs=5)

    name: str = "preview"
    vm: str | None = Field(None, description="show what retention keeps of this VM's points")
    runs: int = Field(10, description="how many next runs (1 … 100)")


class PolicyUpdate(_Request):
    model_config = _example(retention={"daily": 14})

    schedule: str | None = None
    timezone: str | None = None
    retention: RetentionChange | None = None
    copy_to: str | None = None
    copy_retention: RetentionChange | None = None
    no_copy: bool = Field(False, description="stop copying new points (copies made stay)")
    as_set: bool | None = None
    require: Literal["application-consistent", "file-system-consistent", "any"] | None = None


class ProtectRequest(_Request):
    model_config = _example(vms=["app"], policy="gold")

    vms: list[str] = _vm_refs()
    policy: str
    vault: str | None = None
    exclude_disks: list[str] = Field([], description="disk targets added to the excluded ones")


class StopRequest(_Request):
    model_config = _example(vms=["web"])

    vms: list[str] = _vm_refs()
    delete_data: bool = Field(False, description="delete the points (default: keep them)")
    vault: str | None = None


class ResumeRequest(_Request):
    model_config = _example(vms=["web"])

    vms: list[str] = _vm_refs()
    policy: str | None = Field(None, description="default: the VM's own")
    vault: str | None = None


class PinRequest(_Request):
    model_config = _example(protected=True)

    protected: bool


class UndeleteRequest(_Request):
    model_config = _example(vault="main")

    vault: str | None = Field(None, description="only there (default: every vault where it is)")


class VaultUpdate(_Request):
    model_config = _example(soft_delete="on", soft_delete_days=14)

    soft_delete: Literal["on", "off", "always"] | None = Field(
        None, description="always: can never be turned off again"
    )
    soft_delete_days: int | None = Field(None, description="1…3650")
    approvals: Literal["off", "delay", "second-admin"] | None = Field(
        None, description="weakening it is held under the current setting (docs/approvals.md)"
    )
    approval_delay_hours: int | None = Field(None, description="1…720")
    approval_expiry_hours: int | None = Field(None, description="1…720")
    immutable: bool | None = Field(
        None, description="true: no point leaves before its retain_until (docs/immutability.md)"
    )
    lock: bool = Field(False, description="with immutable: for good (permanent)")


class PurgeRequest(_Request):
    model_config = _example(vault="main")

    vault: str | None = Field(None, description="only there (default: every vault where it is)")


class PointLock(_Request):
    model_config = _example(keep_until="2027-06-30T00:00:00Z")

    keep_until: datetime = Field(
        description="the point's new retain-until: never earlier", strict=False
    )


class TargetCreate(_Request):
    """``POST /notifications``: exactly one of ``webhook`` and ``email``."""

    model_config = _example(webhook="https://hooks.example.com/vmvault", events=["failed"])

    vault: str | None = None
    webhook: str | None = Field(
        default=None, description="an http(s) URL the JSON messages are POSTed to"
    )
    email: str | None = Field(default=None, description="an e-mail address")
    events: list[EventName] = Field(  # type: ignore[valid-type]
        min_length=1, description="the events the target gets"
    )


class NotifyTestRequest(_Request):
    """``POST /notifications/test``: one target (``id``), every target of a vault, or every
    target (neither); not both."""

    id: int | None = Field(default=None, ge=1, le=MAX_INT64, description="one target")
    vault: str | None = Field(default=None, description="every target of this vault")


class TokenCreate(_Request):
    model_config = _example(name="ci-backups", role="operator")

    name: str = Field(description="1-63 of [A-Za-z0-9._-], starting with a letter or digit")
    role: Role = Field(strict=False, description="reader, operator, contributor or admin")


class ExportRequest(_Request):
    model_config = _example(disk="vdb", writable=False)

    disk: str | None = Field(None, description="serve this disk only (default: every disk)")
    writable: bool = Field(False, description="accept writes, into a scratch overlay")
    socket: str | None = Field(None, description="absolute socket path on the server")
