"""The REST API's request and response models: the OpenAPI schema of every body.

Responses are the documents of :mod:`vmvault.documents` (the CLI's ``--json``); the models
here describe them field by field so that a client generator or schemathesis can check a
response against the schema.  ``tests/e2e/test_api.py`` compares each model's fields with
the keys its document builder returns, so the two cannot drift apart.  Documents may gain
fields (never lose or rename one): clients must ignore fields they do not know.

Request models refuse fields they do not know (``extra="forbid"``): a misspelt option
(``{"dry_run": true}`` to ``POST /gc``) is an error, not silently a different request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vmvault.domain.job import JobState, JobType
from vmvault.domain.vm import PowerState, VmState

# --- requests -------------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackupRequest(_Request):
    vms: list[str] = Field(
        min_length=1, description="VM references: uuid, NAME, HOST/NAME or GROUP/NAME"
    )
    vault: str | None = None
    keep_until: datetime | None = Field(
        None, description="retention leaves the points alone until then"
    )
    set: bool = Field(False, description="one all-or-nothing backup set job (docs/sets.md)")
    require: Literal["application-consistent", "file-system-consistent"] | None = Field(
        None, description="the least consistency: a VM that cannot give it fails its backup"
    )


class VerifyRequest(_Request):
    """One point, one VM's points, or (neither) every point of the vault; not both."""

    vault: str | None = None
    point: str | None = None
    vm: str | None = None


class VaultRequest(_Request):
    vault: str | None = None


class RestoreTestRequest(_Request):
    vm: str
    point: str


def _vm_refs() -> Any:
    return Field(min_length=1, description="VM references: uuid, NAME, HOST/NAME or GROUP/NAME")


class CopyRequest(_Request):
    """Copy the points ``from_vault`` holds and ``to_vault`` lacks: of ``vms``, or ``all``."""

    from_vault: str
    to_vault: str
    vms: list[str] = Field([], description="VM references (or all: true)")
    all: bool = Field(False, description="every VM with points in from_vault")


class RestoreRequest(_Request):
    vm: str = Field(description="the VM the point belongs to")
    point: str
    mode: Literal["as-new", "replace", "disks-only"]
    name: str | None = Field(None, description="as-new: the new VM's name")
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


class S3Request(_Request):
    endpoint: str = Field(description="the service's URL, e.g. http://127.0.0.1:7480")
    bucket: str
    prefix: str | None = None
    region: str | None = None
    credentials_file: str | None = Field(
        None, description="absolute path on the server (null: the server's environment)"
    )


class VaultCreate(_Request):
    """As ``vault create``: in a directory (``path``, default under the server's home) or,
    with ``s3``, in a bucket."""

    name: str
    location: str
    path: str | None = Field(None, description="an absolute directory on the server")
    encrypt: bool = Field(False, description="the passphrase is the server's VMVAULT_PASSPHRASE")
    key_file: str | None = Field(None, description="absolute path on the server")
    chunk_size: int | None = Field(None, description="bytes, a power of two: 64 KiB … 64 MiB")
    compression_level: int | None = Field(None, description="zstd level (default 1)")
    s3: S3Request | None = None


class HostCreate(_Request):
    uri: str = Field(description="libvirt URI (a URI that runs a local command is refused)")
    location: str
    check: bool = Field(True, description="connect to the host first")


class HostUpdate(_Request):
    cluster_managed: list[str] = Field([], description="VMs (name or uuid) to mark")
    not_cluster_managed: list[str] = Field([], description="VMs to unmark")


class VaultOnly(_Request):
    vault: str | None = None


class RegisterRequest(_Request):
    vms: list[str] = _vm_refs()
    vault: str | None = None
    crash_consistent: bool = Field(
        False, description="accept a VM whose guest agent is missing or silent"
    )
    exclude_disks: list[str] = Field([], description="disk targets left out of every backup")


class VmsRequest(_Request):
    vms: list[str] = _vm_refs()
    vault: str | None = None


class VmUpdate(_Request):
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
    name: str


class PolicyPreviewRequest(_PolicyFields):
    name: str = "preview"
    vm: str | None = Field(None, description="show what retention keeps of this VM's points")
    runs: int = Field(10, description="how many next runs (1 … 100)")


class PolicyUpdate(_Request):
    schedule: str | None = None
    timezone: str | None = None
    retention: RetentionChange | None = None
    copy_to: str | None = None
    copy_retention: RetentionChange | None = None
    no_copy: bool = Field(False, description="stop copying new points (copies made stay)")
    as_set: bool | None = None
    require: Literal["application-consistent", "file-system-consistent", "any"] | None = None


class ProtectRequest(_Request):
    vms: list[str] = _vm_refs()
    policy: str
    vault: str | None = None
    exclude_disks: list[str] = Field([], description="disk targets added to the excluded ones")


class StopRequest(_Request):
    vms: list[str] = _vm_refs()
    delete_data: bool = Field(False, description="delete the points (default: keep them)")
    vault: str | None = None


class ResumeRequest(_Request):
    vms: list[str] = _vm_refs()
    policy: str | None = Field(None, description="default: the VM's own")
    vault: str | None = None


class PinRequest(_Request):
    protected: bool


# --- errors ---------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="stable code, see docs/errors.md (e.g. INVALID_INPUT)")
    message: str
    remedy: str


class ErrorDoc(BaseModel):
    """Every error the API returns, whatever its status."""

    error: ErrorDetail


# --- documents ------------------------------------------------------------------------------


class ComponentDoc(BaseModel):
    """One component's liveness in :class:`HealthDoc` (docs/server.md lists the fields)."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(description="up or down")
    problem: str | None = Field(None, description="why it is down")


class HealthDoc(BaseModel):
    """The server's health: 200 when every component is up, else 503 with this same body;
    the server may add fields (they pass through)."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(description="ok, or down when a component is")
    version: str
    jobs_running: int | None = Field(description="null when the catalog cannot be read")
    jobs_queued: int | None
    components: dict[str, ComponentDoc]
    down: list[str] = Field([], description="the components that are down")


class S3LocationDoc(BaseModel):
    kind: str = Field(description="s3")
    endpoint: str
    bucket: str
    prefix: str
    region: str
    credentials_file: str | None = Field(description="null: from the server's environment")


class VaultDoc(BaseModel):
    id: int
    name: str
    location: str
    path: str = Field(description="the directory, or s3://bucket/prefix")
    storage: str = Field(description="local or s3")
    s3: S3LocationDoc | None
    created_at: str | None
    encrypted: bool
    key_file: str | None


class DiskDoc(BaseModel):
    target: str
    type: str
    device: str
    format: str | None
    path: str | None
    bus: str | None
    readonly: bool
    excluded: bool
    reason: str | None


class NicDoc(BaseModel):
    mac: str | None
    type: str
    source: str | None
    model: str | None


class VmDoc(BaseModel):
    uuid: str
    name: str
    host: str
    host_uri: str
    group: str
    state: VmState
    power_state: PowerState
    vanished: bool
    vanished_at: str | None
    vault: str | None
    policy: str | None
    agent_channel: bool
    agent_version: str | None
    crash_consistent_only: bool
    registered_at: str | None
    first_seen: str | None
    last_seen: str | None
    disks: list[DiskDoc]
    excluded_disks: list[str]
    cluster_managed: bool
    cluster_managed_reason: str | None
    nics: list[NicDoc]
    warnings: list[str]


class JobDoc(BaseModel):
    id: int
    type: JobType
    state: JobState
    vault: str
    vm: str | None
    vm_name: str | None
    created_at: str | None
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    bytes_done: int
    bytes_total: int
    percent: float | None
    error_code: str | None
    message: str | None
    remedy: str | None
    warnings: list[str]
    origin: str | None
    request: dict[str, Any] | None
    parent: int | None = None  # the set job of a set's child backup job


class JobWithLogDoc(JobDoc):
    log: list[str]


class PointDiskDoc(BaseModel):
    target: str
    size: int
    format: str | None
    excluded: bool
    reason: str | None
    incremental: bool
    bytes_read: int
    bytes_new: int


class DamagedDiskDoc(BaseModel):
    disk: str
    ranges: list[list[int]]


class HookResultDoc(BaseModel):
    name: str
    exit: int
    message: str


class HookOutcomeDoc(BaseModel):
    state: Literal["succeeded", "failed", "none", "no-report", "not-run"]
    hooks: list[HookResultDoc]
    detail: str | None


class PointDoc(BaseModel):
    vaults: list[str] = Field(description="every vault holding it: its own first, then copies")
    id: str
    vm: str
    vm_name: str
    vault: str
    created_at: str | None
    consistency: str
    method: str
    method_reason: str | None = Field(None, description="why this method and level")
    frozen_ms: int = Field(
        description="freeze window (ms); for a saved-state point after a failed freeze, the "
        "failed attempt"
    )
    paused_ms: int = Field(0, description="how long vmvault paused the VM for the point (ms)")
    hooks: HookOutcomeDoc | None = Field(
        None, description="the guest's application hooks for the freeze (null: before 0008)"
    )
    set_id: str | None
    checkpoint: str | None
    bytes_logical: int
    bytes_read: int
    bytes_new: int
    job_id: int | None
    warnings: list[str]
    protected: bool
    keep_until: str | None
    disks: list[PointDiskDoc]
    #: what verify or a restore found damaged and could not heal, per vault holding the point
    #: (vault name → per disk, byte ranges [start, end)); only the vaults where it is marked
    #: damaged; null when intact everywhere
    damaged: dict[str, list[DamagedDiskDoc]] | None = None


class PolicyCopyDoc(BaseModel):
    vault: str
    retention: dict[str, int]
    retention_own: bool = Field(description="false: the policy's own retention applies")


class PolicyDoc(BaseModel):
    name: str
    vault: str
    schedule: str
    timezone: str
    retention: dict[str, int]
    max_age_s: int
    warnings: list[str]
    vms: list[str]
    copy_to: PolicyCopyDoc | None = Field(
        description="copy every new point to a second vault (docs/copies.md)"
    )
    require: str | None = Field(None, description="the least consistency of its points (null: any)")
    created_at: str | None
    updated_at: str | None


class DayDoc(BaseModel):
    day: str = Field(description="a UTC day, YYYY-MM-DD")
    backups: int = Field(description="backup jobs created that day that completed")
    failed: int
    bytes_new: int = Field(description="bytes the vault's new points of that day added")


class AttentionDoc(BaseModel):
    vm: str
    name: str
    policy: str | None
    reason: str
    detail: str
    last_backup_at: str | None


class StorageDoc(BaseModel):
    used_bytes: int
    logical_bytes: int
    dedup_ratio: float | None
    points: int
    by_consistency: dict[str, int] = Field(
        default_factory=dict, description="points held, by consistency level"
    )


class DashboardDoc(BaseModel):
    vault: str
    at: str | None
    vms: dict[str, int]
    jobs_24h: dict[str, int]
    attention: list[AttentionDoc]
    storage: StorageDoc
    daily: list[DayDoc] = Field(description="the last 14 UTC days, oldest first")


class HostDoc(BaseModel):
    uri: str
    location: str
    hostname: str | None
    created_at: str | None
    cluster_managed: list[str]


class VaultShowDoc(VaultDoc):
    hosts: list[HostDoc]
    vm_counts: dict[str, int]


class DiscoveryResultDoc(BaseModel):
    new: list[str]
    changed: list[str]
    unchanged: list[str]
    vanished: list[str]


class DiscoveryDoc(JobDoc):
    result: DiscoveryResultDoc | None = Field(None, description="null: the job failed")


class ProtectJobDoc(JobDoc):
    """A job of protect, stop, resume or unregister (a configuring job: the VM's new state)."""

    vm_state: str | None = None
    policy: str | None = None


class ProtectedItemDoc(BaseModel):
    uuid: str
    name: str
    host: str
    state: VmState
    protection: str
    policy: str | None
    protected_since: str | None
    points: int
    last_point_at: str | None
    health: str = Field(
        description="ok, last-backup-failed, overdue, never-backed-up, vm-deleted; "
        "- when not protected"
    )


class RetentionDecisionDoc(BaseModel):
    point: str
    created_at: str | None
    kept: bool
    reasons: list[str]


class PolicyPreviewDoc(BaseModel):
    schedule: str
    timezone: str
    next_runs: list[str | None]
    retention: list[RetentionDecisionDoc]
    warnings: list[str]


class ErrorCatalogDoc(BaseModel):
    code: str
    kind: Literal["usage", "failure"]
    message: str
    remedy: str


class DeletedDoc(BaseModel):
    deleted: str
