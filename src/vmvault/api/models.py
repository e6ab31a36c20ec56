"""The REST API's response models: the OpenAPI schema of every answer.

Responses are the documents of :mod:`vmvault.documents` (the CLI's ``--json``); the models
here describe them field by field so that a client generator or schemathesis can check a
response against the schema.  ``tests/e2e/test_api.py`` compares each model's fields with
the keys its document builder returns, so the two cannot drift apart.  Documents may gain
fields (never lose or rename one): clients must ignore fields they do not know.

The request bodies are in :mod:`vmvault.api.requests`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vmvault.domain.job import JobState, JobType
from vmvault.domain.vm import PowerState, VmState

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
    object_lock: bool = Field(False, description="the bucket has S3 Object Lock")
    lock_mode: str | None = Field(
        None, description="governance or compliance; null: by the vault's immutability"
    )


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
    soft_delete: Literal["on", "off", "always"] = Field(
        description="deleted points are kept restorable-by-undelete (docs/soft-delete.md)"
    )
    soft_delete_days: int = Field(description="how long a soft-deleted point is kept")
    approvals: Literal["off", "delay", "second-admin"] = Field(
        description="who must agree to an operation that reduces protection (docs/approvals.md)"
    )
    approval_delay_hours: int
    approval_expiry_hours: int
    immutable: Literal["off", "on", "locked"] = Field(
        description="on/locked: no point leaves before its retain_until; locked: for good "
        "(docs/immutability.md)"
    )
    object_lock: Literal["governance", "compliance"] | None = Field(
        description="an S3 vault's Object Lock mode for its retained objects now; null: none"
    )


class VaultDeletedDoc(BaseModel):
    deleted: str
    points_purged: int


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
    #: The node that ran (runs) it, and until when its heartbeat vouches for it
    #: (docs/deployment.md); null for a job that never ran or ran before nodes existed.
    node: str | None = None
    lease_until: str | None = None


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
    retain_until: str | None = Field(
        None, description="not deleted before then in an immutable vault (docs/immutability.md)"
    )
    #: what verify or a restore found damaged and could not heal, per vault holding the point
    #: (vault name → per disk, byte ranges [start, end)); only the vaults where it is marked
    #: damaged; null when intact everywhere (before ``disks``, as in documents.point_doc:
    #: the API and ``--json`` print the same document, byte for byte)
    damaged: dict[str, list[DamagedDiskDoc]] | None = None
    #: the vaults where the point is soft-deleted (vault → deleted_at, purge_after); null when
    #: it is soft-deleted nowhere
    soft_deleted: dict[str, dict[str, str | None]] | None = None
    disks: list[PointDiskDoc]


class LockedPointDoc(PointDoc):
    """A point whose retain-until ``points lock`` lengthened."""

    objects_held: int = Field(
        description="its objects the vault's storage holds now (0: a storage without holds)"
    )


class DeletedPointDoc(PointDoc):
    """A point soft-deleted in one vault (``points list --deleted``)."""

    deleted_vault: str
    deleted_at: str | None
    purge_after: str | None


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
    as_set: bool = Field(
        False, description="its VMs are backed up as one all-or-nothing set per slot"
    )


class PolicyUpdatedDoc(PolicyDoc):
    changed: bool = Field(
        description="false when the policy had these values already (nothing was written)"
    )


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
    used_bytes_at: str | None = Field(
        description="when used_bytes were measured (a walk of the vault's chunk objects, "
        "reused for 15 s, and up to 60 s while no job of the vault has ended since)"
    )
    logical_bytes: int
    dedup_ratio: float | None
    points: int
    by_consistency: dict[str, int] = Field(
        default_factory=dict, description="points held, by consistency level"
    )
    soft_deleted_points: int = Field(0, description="soft-deleted points held until purged")
    soft_deleted_logical_bytes: int = Field(0, description="their disks' sizes")
    next_purge_at: str | None = None


class DashboardDoc(BaseModel):
    vault: str
    at: str | None
    vms: dict[str, int]
    jobs_24h: dict[str, int]
    attention_total: int = Field(description="protected VMs needing attention, in all")
    attention_by_reason: dict[str, int] = Field(
        description="of them, how many for each reason (every reason, 0 included)"
    )
    attention: list[AttentionDoc] = Field(
        description="the page asked for (limit after offset) of the VMs needing attention: "
        "the most urgent reason first (vm-deleted, last-backup-failed, overdue, "
        "never-backed-up), then by name"
    )
    storage: StorageDoc
    daily: list[DayDoc] = Field(description="the last 14 UTC days, oldest first")


class HostDoc(BaseModel):
    uri: str
    location: str
    hostname: str | None
    created_at: str | None
    cluster_managed: list[str]
    pull_tls: str | None = Field(
        description="backed up by pulling over NBD with TLS from any node: the nodes' client "
        "PKI directory (null: by the node of the host)"
    )


class AttachDoc(BaseModel):
    vault: VaultDoc
    vms: int = Field(description="VMs the points belong to")
    vms_new: int = Field(description="of them, VMs the catalog did not know")
    points: int = Field(description="points recorded with this vault as their own")
    copies: int = Field(description="points the catalog had in another vault, now held here too")
    bytes_logical: int = Field(description="sum of the points' disk sizes")
    bytes_stored: int = Field(description="bytes of the vault's chunk objects")
    skipped: list[str] = Field(description="manifests that did not authenticate: 'id: why'")
    incomplete: list[str] = Field(description="half-written points (no manifest): ignored")
    keys_from: Literal["config", "paper-key", "key-file"]
    recorded_name: str | None = Field(description="the name the storage's identity records")
    recorded_location: str | None
    seconds: float


class VaultShowDoc(VaultDoc):
    hosts: list[HostDoc]
    vm_counts: dict[str, int]


class DiscoveryResultDoc(BaseModel):
    new: list[str]
    changed: list[str]
    unchanged: list[str]
    vanished: list[str]


class JobOutcomeDoc(BaseModel):
    """What a queued job's run returned (vmvault/outcomes.py: its keys by operation)."""

    id: int
    recorded: bool = Field(description="false until the server's run of the job is over")
    outcome: dict[str, Any] | None = Field(
        description="the keys the CLI adds to the job's document; null: none for this job"
    )


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


class ApprovalDoc(BaseModel):
    """A request held for approval (docs/approvals.md)."""

    id: int
    state: Literal["pending", "approved", "executed", "failed", "rejected", "expired"]
    operation: str = Field(description="what was held: soft-delete-setting, vault-delete, …")
    vault: str = Field(description="the vault whose approval setting applies")
    summary: str
    arguments: dict[str, Any] = Field(description="the held call's arguments")
    mode: Literal["second-admin", "delay"]
    requested_by: str
    requested_at: str
    expires_at: str | None = Field(description="second-admin: lapses undecided then")
    due_at: str | None = Field(description="delay: runs then unless rejected")
    decided_by: str | None
    decided_at: str | None
    executed_at: str | None
    outcome: str | None = Field(description="what the execution did, or its error")
    error_code: str | None


class PurgedDoc(BaseModel):
    point: str
    vault: str
    own_vault_now: str | None = Field(
        description="the point's own vault, when a copy took its place"
    )


class FileEntryDoc(BaseModel):
    path: str  # as the guest sees it (or from the file system's root with ?disk=)
    kind: str  # file, dir, symlink, char, block, fifo, socket
    mode: str  # permission bits, octal
    uid: int
    gid: int
    size: int


class VolumeDoc(BaseModel):
    volume: str  # vdb, vdb2 for a partition, VG/LV for an LVM logical volume
    disk: str
    offset: int
    size: int
    mounted_on: str | None  # the point's /etc/fstab, else ext4's "Last mounted on"
    fs: str = ""  # ext4, xfs...


class ExportDiskDoc(BaseModel):
    target: str
    size: int
    uri: str  # nbd+unix:///TARGET?socket=PATH


class ExportDoc(BaseModel):
    point: str
    job: int | None
    socket: str
    writable: bool
    vault: str
    disks: list[ExportDiskDoc]
