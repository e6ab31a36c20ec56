"""Table definitions (mirror of the Alembic head revision; change both together).

Invariant: ``jobs.conflict_key`` is set only while a job is active (queued, in-progress,
cancelling) and is UNIQUE, so the database itself refuses a second active job on one VM or a
second discovery on one vault, whichever process tries.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

vaults = Table(
    "vaults",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("location", String(64), nullable=False),
    Column("path", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("key_file", Text),
    #: NULL: a directory on this host (``path``); else ``S3Location.to_json()``
    Column("storage", JSON),
    #: what removing a point does: on | off | always (docs/soft-delete.md)
    Column("soft_delete", String(16), nullable=False, server_default="on"),
    Column("soft_delete_days", Integer, nullable=False, server_default="14"),
    #: who must agree to an operation that reduces protection: off | delay | second-admin
    #: (docs/approvals.md)
    Column("approvals", String(16), nullable=False, server_default="off"),
    Column("approval_delay_hours", Integer, nullable=False, server_default="24"),
    Column("approval_expiry_hours", Integer, nullable=False, server_default="72"),
    #: off | on | locked (docs/immutability.md)
    Column("immutable", String(16), nullable=False, server_default="off"),
)

hosts = Table(
    "hosts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uri", String(512), nullable=False, unique=True),
    Column("location", String(64), nullable=False),
    Column("hostname", String(255)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    #: names/uuids of VMs a cluster manager owns (NULL: none)
    Column("cluster_managed", JSON),
    #: a host backed up by pulling over NBD with TLS: the client PKI directory (NULL: by
    #: its own node; domain/pull.py)
    Column("pull_tls", String(4096)),
)

vms = Table(
    "vms",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("host_uri", String(512), nullable=False, index=True),
    Column("hostname", String(255), nullable=False),
    Column("grp", String(255), nullable=False),
    Column("power_state", String(32), nullable=False),
    Column("disks", JSON, nullable=False),
    Column("nics", JSON, nullable=False),
    Column("agent_channel", Boolean, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("vanished_at", DateTime(timezone=True)),
    Column("state", String(32), nullable=False),
    Column("vault_id", Integer, ForeignKey("vaults.id")),
    Column("registered_at", DateTime(timezone=True)),
    Column("agent_version", String(64)),
    Column("crash_consistent_only", Boolean, nullable=False, default=False),
    Column("registration_warnings", JSON, nullable=False),
    #: the VM's policy (protected or protection-stopped); NULL when it has none
    Column("policy", String(64)),
    Column("protected_since", DateTime(timezone=True)),
    #: targets the operator excluded from backups (NULL: none)
    Column("excluded_disks", JSON),
    #: why a cluster manager owns the VM (NULL: it does not)
    Column("cluster_managed", Text),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("type", String(32), nullable=False, index=True),
    Column("vault", String(64), nullable=False),
    Column("vm_uuid", String(36), index=True),
    Column("vm_name", String(255)),
    Column("state", String(32), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("bytes_done", BigInteger, nullable=False, default=0),
    Column("bytes_total", BigInteger, nullable=False, default=0),
    Column("warnings", JSON, nullable=False),
    Column("error_code", String(64)),
    Column("message", Text),
    Column("remedy", Text),
    Column("pid", Integer),
    Column("conflict_key", String(128), unique=True),
    # what a queued job will do (operation + arguments), for the server's workers
    Column("request", JSON),
    # who asked: "cli", "api", "policy <name> at <slot key>", "gc schedule at <slot key>"
    Column("origin", String(255)),
    # the set job a backup job belongs to (``backup --set``); NULL for any other job
    Column("parent_id", Integer, index=True),
    # the node running it (nodes.id) and until when its heartbeat vouches for it (0016)
    Column("node", String(128), index=True),
    Column("lease_until", DateTime(timezone=True)),
    # claims walk the queued jobs in id order (0017)
    Index("ix_jobs_state_id", "state", "id"),
    #: a vault's newest job end: whether its stored bytes may have changed (0021)
    Index("ix_jobs_vault_ended_at", "vault", "ended_at"),
)

job_log = Table(
    "job_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("line", Text, nullable=False),
)

#: The job journal (``JobContext.record``): typed steps, in order, that recovery reads after a
#: kill.  ``data`` is a JSON object whose keys each step documents (docs/backup.md, restore.md).
job_steps = Table(
    "job_steps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("step", String(64), nullable=False),
    Column("data", JSON, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

recovery_points = Table(
    "recovery_points",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("vault", String(64), nullable=False),
    Column("vm_uuid", String(36), nullable=False, index=True),
    Column("vm_name", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("consistency", String(32), nullable=False),
    Column("method", String(32), nullable=False),
    Column("frozen_ms", Integer, nullable=False),
    #: why this method (and level); NULL for points taken before migration 0008
    Column("method_reason", Text),
    #: how long vmvault paused the VM for the point (saved-state)
    Column("paused_ms", Integer, nullable=False, server_default="0"),
    #: the application hooks' outcome (``HookOutcome.to_json``); NULL before 0008
    Column("hooks", JSON),
    Column("checkpoint", String(128)),
    Column("set_id", String(64), index=True),
    Column("job_id", Integer),
    Column("disks", JSON, nullable=False),
    Column("warnings", JSON, nullable=False),
    #: the latest restore test of the point (``RestoreTestResult.to_json``), NULL if never
    Column("restore_test", JSON),
    #: retention leaves the point alone until then (ad-hoc ``backup --keep-until``)
    Column("keep_until", DateTime(timezone=True)),
    #: pinned: never pruned (``points protect``)
    Column("protected", Boolean, nullable=False, server_default=false()),
    #: NULL when intact; else what verify found damaged and could not heal from a copy
    #: (``[{"disk": …, "ranges": [[start, end], …]}]``, byte ranges of the disk)
    Column("damaged", JSON),
    #: soft-deleted in its own vault (NULL: held normally) and when it may be purged
    Column("deleted_at", DateTime(timezone=True)),
    Column("purge_after", DateTime(timezone=True)),
    #: not deleted before then in an immutable vault (docs/immutability.md)
    Column("retain_until", DateTime(timezone=True)),
    #: ``RecoveryPoint.bytes_logical`` and ``.bytes_new``, written with the point (0018): what
    #: the dashboard and /metrics sum (persistence/held.py), never the ``disks`` JSON
    Column("bytes_logical", BigInteger, nullable=False, server_default="0"),
    Column("bytes_new", BigInteger, nullable=False, server_default="0"),
    #: a vault's points, its soft-deleted ones and its recent ones (0020; persistence/held.py)
    Index("ix_recovery_points_vault_deleted", "vault", "deleted_at", "created_at"),
)

#: Copies of recovery points in vaults other than the one they were taken into
#: (``recovery_points.vault``): written by copy jobs, removed by the copy vault's retention.
#: ``damaged``: NULL when intact, else the damage verify found and could not heal
#: (``[{"disk": …, "ranges": [[start, end], …]}]``).
point_copies = Table(
    "point_copies",
    metadata,
    Column("point_id", String(64), primary_key=True),
    Column("vault", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("job_id", Integer),
    Column("damaged", JSON),
    #: soft-deleted in this vault (NULL: held normally) and when it may be purged
    Column("deleted_at", DateTime(timezone=True)),
    Column("purge_after", DateTime(timezone=True)),
)

#: Checkpoints vmvault created, with the XML needed to redefine one that libvirt lost.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("vm_uuid", String(36), nullable=False, index=True),
    Column("point_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("xml", Text, nullable=False),
)

#: Policies (``Policy.to_json()`` in ``definition``); a VM names its policy in ``vms.policy``.
policies = Table(
    "policies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("vault", String(64), nullable=False, index=True),
    Column("definition", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: The scheduler's progress per schedule (``policy:<name>`` or ``gc:<vault>``): the last slot
#: it handled.  Advanced with compare-and-set in the same transaction that queues the slot's
#: jobs, so a slot's jobs are created once, whatever restarts or second servers do.
schedule_state = Table(
    "schedule_state",
    metadata,
    Column("name", String(160), primary_key=True),
    Column("last_slot", DateTime(timezone=True), nullable=False),
    Column("last_key", String(160)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: API tokens (domain/tokens.py): the secret's SHA-256, never the secret. A revoked token
#: keeps its row (and its name: the audit log names one token per name).
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("public_id", String(32), nullable=False, unique=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(160), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

#: Every change requested through the API or the CLI (domain/audit.py); append-only.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("actor", String(160), nullable=False, index=True),
    Column("role", String(16)),
    Column("action", String(300), nullable=False),
    Column("target", String(300)),
    Column("status", Integer, nullable=False),
    Column("remote", String(64), nullable=False),
)

#: Operations held for approval (domain/approval.py, docs/approvals.md); rows are never deleted.
approval_requests = Table(
    "approval_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("vault", String(64), nullable=False, index=True),
    #: the held call's arguments (JSON), passed back to the same service method
    Column("args", JSON, nullable=False),
    Column("summary", String(300), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("requested_by", String(160), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("due_at", DateTime(timezone=True)),
    Column("state", String(16), nullable=False, index=True),
    Column("decided_by", String(160)),
    Column("decided_at", DateTime(timezone=True)),
    Column("executed_at", DateTime(timezone=True)),
    Column("outcome", Text),
    Column("error_code", String(64)),
)

#: Notification targets (docs/notifications.md): a webhook URL or an e-mail address for one
#: vault and a list of events.
notify_targets = Table(
    "notify_targets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("vault", String(64), nullable=False, index=True),
    Column("channel", String(16), nullable=False),
    Column("address", Text, nullable=False),
    Column("events", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

#: The transactional outbox: one row per message and target, written in the transaction that
#: ends the job (or by the overdue check), delivered by the server's notifier.  The unique
#: ``(target_id, key)`` makes an event — an overdue episode above all — produce one message.
notify_outbox = Table(
    "notify_outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "target_id",
        Integer,
        ForeignKey("notify_targets.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("key", String(200), nullable=False),
    Column("event", String(32), nullable=False),
    Column("vault", String(64), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("doc", JSON, nullable=False),
    #: pending | sent | failed
    Column("state", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, index=True),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    UniqueConstraint("target_id", "key", name="uq_notify_outbox_target_key"),
)

# the processes sharing the catalog (docs/deployment.md): ``host`` is the libvirt URI of the
# host each runs on (VMVAULT_NODE_HOST), ``heartbeat_at`` its last heartbeat
nodes = Table(
    "nodes",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("host", String(512), nullable=False),
    Column("machine", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
)

# named leases: one holder at a time until ``expires_at`` (the scheduler's leader lease)
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
