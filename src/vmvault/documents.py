"""The JSON documents of vmvault's public interfaces: the CLI's ``--json`` output and the
REST API's bodies are the same documents, built here from domain objects and service views.

Field names are a public contract (docs/server.md, "REST API"): scripts, monitoring and the
web UI rely on them.  Add fields; never rename or remove one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vmvault.domain.approval import ApprovalRequest
from vmvault.domain.audit import AuditEntry
from vmvault.domain.errors import VmvaultError
from vmvault.domain.immutability import lock_mode
from vmvault.domain.inventory import DiscoveryResult
from vmvault.domain.iso import iso
from vmvault.domain.job import Job
from vmvault.domain.notification import Outgoing, Target, shown_address
from vmvault.domain.policy import Policy, max_age
from vmvault.domain.recovery_point import RecoveryPoint
from vmvault.domain.schedule import format_schedule
from vmvault.domain.soft_delete import Deletion
from vmvault.domain.tokens import ApiToken
from vmvault.domain.vault import Host, Vault
from vmvault.domain.vm import VmItem, fields_of

if TYPE_CHECKING:  # types only: importing the services would import their adapters
    from vmvault.services.dashboard import Dashboard
    from vmvault.services.holdings import Holding
    from vmvault.services.jobs import JobOutcome
    from vmvault.services.notifications import SendResult
    from vmvault.services.policies import PolicyPreview, PolicyView
    from vmvault.services.protection import ProtectedItem, ProtectResult
    from vmvault.services.soft_delete import Removed
    from vmvault.services.vault_attach import AttachReport
    from vmvault.services.vaults import VaultSummary


def vault_doc(v: Vault) -> dict[str, Any]:
    return {
        "id": v.id,
        "name": v.name,
        "location": v.location,
        "path": v.path,
        "storage": v.storage,
        # where an S3 vault is (never its credentials: a file name at most)
        "s3": v.s3.to_json() if v.s3 is not None else None,
        "created_at": iso(v.created_at),
        "encrypted": v.encrypted,
        "key_file": v.key_file,
        # docs/soft-delete.md
        "soft_delete": v.soft_delete.mode.value,
        "soft_delete_days": v.soft_delete.days,
        # docs/approvals.md
        "approvals": v.approvals.mode.value,
        "approval_delay_hours": v.approvals.delay_hours,
        "approval_expiry_hours": v.approvals.expiry_hours,
        # docs/immutability.md
        "immutable": v.immutable.value,
        # an S3 vault with Object Lock: the mode its retained objects get now
        "object_lock": lock_mode(v).value if v.s3 and v.s3.object_lock else None,
    }


def host_doc(h: Host) -> dict[str, Any]:
    return {
        "uri": h.uri,
        "location": h.location,
        "hostname": h.hostname,
        "created_at": iso(h.created_at),
        "cluster_managed": list(h.cluster_managed),
        "pull_tls": h.pull_tls,
    }


def vm_doc(vm: VmItem) -> dict[str, Any]:
    return {
        "uuid": vm.uuid,
        "name": vm.name,
        "host": vm.hostname,
        "host_uri": vm.host_uri,
        "group": vm.group,
        "state": vm.state.value,
        "power_state": vm.power_state.value,
        "vanished": vm.vanished_at is not None,
        "vanished_at": iso(vm.vanished_at),
        "vault": vm.vault,
        "policy": vm.policy,
        "agent_channel": vm.agent_channel,
        "agent_version": vm.agent_version,
        "crash_consistent_only": vm.crash_consistent_only,
        "registered_at": iso(vm.registered_at),
        "first_seen": iso(vm.first_seen),
        "last_seen": iso(vm.last_seen),
        "disks": [fields_of(d) for d in vm.effective_disks],
        "excluded_disks": list(vm.excluded_targets),
        "cluster_managed": vm.cluster_managed is not None,
        "cluster_managed_reason": vm.cluster_managed,
        "nics": [fields_of(n) for n in vm.nics],
        "warnings": list(vm.registration_warnings),
    }


def job_doc(job: Job, log: list[str] | None = None) -> dict[str, Any]:
    doc = {
        "id": job.id,
        "type": job.type.value,
        "state": job.state.value,
        "vault": job.vault,
        "vm": job.vm_uuid,
        "vm_name": job.vm_name,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "ended_at": iso(job.ended_at),
        "duration_s": job.duration.total_seconds() if job.duration is not None else None,
        "bytes_done": job.bytes_done,
        "bytes_total": job.bytes_total,
        "percent": job.percent,
        "error_code": job.error_code,
        "message": job.message,
        "remedy": job.remedy,
        "warnings": list(job.warnings),
        "origin": job.origin,
        "request": job.request,
        "parent": job.parent_id,
        "node": job.node,
        "lease_until": iso(job.lease_until),
    }
    if log is not None:
        doc["log"] = log
    return doc


def point_doc(p: RecoveryPoint, held: Holding | None = None) -> dict[str, Any]:
    # held: every vault holding the point (its own first, then those holding a copy) and the
    # damage recorded in each; None: its own vault only
    damaged = held.damaged if held is not None else ({p.vault: p.damaged} if p.damaged else {})
    return {
        "vaults": held.vaults if held is not None else [p.vault],
        "id": p.id,
        "vm": p.vm_uuid,
        "vm_name": p.vm_name,
        "vault": p.vault,
        "created_at": iso(p.created_at),
        "consistency": p.consistency.value,
        "method": p.method.value,
        "method_reason": p.method_reason,
        "frozen_ms": p.frozen_ms,
        "paused_ms": p.paused_ms,
        "hooks": p.hooks.to_json() if p.hooks is not None else None,
        "set_id": p.set_id,
        "checkpoint": p.checkpoint,
        "bytes_logical": p.bytes_logical,
        "bytes_read": p.bytes_read,
        "bytes_new": p.bytes_new,
        "job_id": p.job_id,
        "warnings": p.warnings,
        "protected": p.protected,
        "keep_until": iso(p.keep_until),
        # not deleted before then where its vault is immutable (docs/immutability.md)
        "retain_until": iso(p.retain_until),
        "damaged": {v: [d.to_json() for d in dmg] for v, dmg in damaged.items()} or None,
        # vault → its soft deletion there (docs/soft-delete.md); None: soft-deleted nowhere
        "soft_deleted": {
            v: deletion_doc(g) for v, g in (held.deleted if held is not None else {}).items()
        }
        or None,
        "disks": [
            {
                "target": d.target,
                "size": d.size,
                "format": d.format,
                "excluded": d.excluded,
                "reason": d.reason,
                "incremental": d.incremental,
                "bytes_read": d.bytes_read,
                "bytes_new": d.bytes_new,
            }
            for d in p.disks
        ],
    }


def policy_doc(v: PolicyView) -> dict[str, Any]:
    p = v.policy
    return {
        "name": p.name,
        "vault": v.record.vault,
        "schedule": format_schedule(p.schedule),
        "timezone": p.timezone.key,
        "retention": p.retention.counts,
        "max_age_s": int(max_age(p).total_seconds()),
        "warnings": v.warnings,
        "vms": v.vms,
        "copy_to": _copy_doc(p),
        "require": p.require.value if p.require is not None else None,
        "created_at": iso(v.record.created_at),
        "updated_at": iso(v.record.updated_at),
        "as_set": p.as_set,
    }


def _copy_doc(p: Policy) -> dict[str, Any] | None:
    """A policy's copy option (docs/copies.md), or None."""
    if p.copy is None or p.copy_retention is None:
        return None
    own = p.copy.retention is not None
    return {"vault": p.copy.vault, "retention": p.copy_retention.counts, "retention_own": own}


def deletion_doc(gone: Deletion) -> dict[str, str | None]:
    """A point's soft deletion in one vault (docs/soft-delete.md)."""
    return {"deleted_at": iso(gone.deleted_at), "purge_after": iso(gone.purge_after)}


def deleted_point_doc(p: RecoveryPoint, vault: str, gone: Deletion) -> dict[str, Any]:
    """A point soft-deleted in ``vault`` (``points list --deleted``, ``points undelete``)."""
    return point_doc(p) | {"deleted_vault": vault} | deletion_doc(gone)


def purged_doc(r: Removed) -> dict[str, Any]:
    """A holding ``points purge`` purged (``own_vault_now``: a copy's vault took its place)."""
    return {"point": r.point, "vault": r.vault, "own_vault_now": r.heir}


def locked_point_doc(p: RecoveryPoint, holding: Holding | None, held: int) -> dict[str, Any]:
    """``points lock``: the point, its retain-until lengthened, and how many of its objects
    the vault's storage holds now (0: a storage without holds, docs/immutability.md)."""
    return point_doc(p, holding) | {"objects_held": held}


def dashboard_doc(d: Dashboard) -> dict[str, Any]:
    return {
        "vault": d.vault,
        "at": iso(d.at),
        "vms": d.vms,
        "jobs_24h": d.jobs,
        "attention_total": d.attention_total,
        "attention_by_reason": d.attention_by_reason,
        "attention": [
            {
                "vm": a.vm,
                "name": a.name,
                "policy": a.policy,
                "reason": a.reason,
                "detail": a.detail,
                "last_backup_at": iso(a.last_backup_at),
            }
            for a in d.attention
        ],
        "storage": {
            "used_bytes": d.storage_bytes,
            "used_bytes_at": iso(d.storage_measured_at),
            "logical_bytes": d.logical_bytes,
            "dedup_ratio": d.dedup_ratio,
            "points": d.points,
            "by_consistency": d.by_consistency,
            # soft-deleted points still held (logical bytes: their disks' sizes)
            "soft_deleted_points": d.soft_deleted,
            "soft_deleted_logical_bytes": d.soft_deleted_bytes,
            "next_purge_at": iso(d.next_purge_at),
        },
        "daily": [
            {
                "day": c.day.isoformat(),
                "backups": c.backups,
                "failed": c.failed,
                "bytes_new": c.bytes_new,
            }
            for c in d.daily
        ],
    }


def token_doc(t: ApiToken) -> dict[str, Any]:
    """A token as listed (never its secret; ``token`` is added once, by its creation)."""
    return {
        "name": t.name,
        "role": t.role.value,
        "created_at": iso(t.created_at),
        "created_by": t.created_by,
        "last_used_at": iso(t.last_used_at),
        "revoked_at": iso(t.revoked_at),
    }


def approval_doc(r: ApprovalRequest) -> dict[str, Any]:
    """A request held for approval (docs/approvals.md)."""
    return {
        "id": r.id,
        "state": r.state.value,
        "operation": r.operation.kind.value,
        "vault": r.operation.vault,
        "summary": r.operation.summary,
        "arguments": r.operation.args,
        "mode": r.mode.value,
        "requested_by": r.requested_by,
        "requested_at": iso(r.requested_at),
        "expires_at": iso(r.expires_at),
        "due_at": iso(r.due_at),
        "decided_by": r.decided_by,
        "decided_at": iso(r.decided_at),
        "executed_at": iso(r.executed_at),
        "outcome": r.outcome,
        "error_code": r.error_code,
    }


def audit_doc(e: AuditEntry) -> dict[str, Any]:
    return {
        "at": iso(e.at),
        "actor": e.actor,
        "role": e.role,
        "action": e.action,
        "target": e.target,
        "status": e.status,
        "remote": e.remote,
    }


def attach_doc(r: AttachReport) -> dict[str, Any]:
    """``vault attach``: the vault now in the catalog and what was found in its storage."""
    return {
        "vault": vault_doc(r.vault),
        "vms": r.vms,
        "vms_new": r.vms_new,
        "points": r.points,
        "copies": r.copies,
        "bytes_logical": r.bytes_logical,
        "bytes_stored": r.bytes_stored,
        "skipped": r.skipped,
        "incomplete": r.incomplete,
        "keys_from": r.keys_from,
        "recorded_name": r.recorded_name,
        "recorded_location": r.recorded_location,
        "seconds": r.seconds,
    }


def vault_summary_doc(s: VaultSummary) -> dict[str, Any]:
    """``vault show``: the vault, its location's hosts and its VMs by state."""
    return vault_doc(s.vault) | {
        "hosts": [host_doc(h) for h in s.hosts],
        "vm_counts": s.vm_counts,
    }


def protected_item_doc(i: ProtectedItem) -> dict[str, Any]:
    """One row of ``protection list``."""
    return {
        "uuid": i.vm.uuid,
        "name": i.vm.name,
        "host": i.vm.hostname,
        "state": i.vm.state.value,
        "protection": i.protection,
        "policy": i.vm.policy,
        "protected_since": iso(i.vm.protected_since),
        "points": i.points,
        "last_point_at": iso(i.last_point_at),
        "health": i.health,
    }


def discovery_doc(outcome: JobOutcome[DiscoveryResult]) -> dict[str, Any]:
    """``discover --json``: the job and, when it ran, the uuids it found by kind."""
    doc = job_doc(outcome.job)
    if outcome.result is not None:
        r = outcome.result
        doc["result"] = {
            key: [vm.uuid for vm in getattr(r, key)]
            for key in ("new", "changed", "unchanged", "vanished")
        }
    return doc


def protect_docs(result: ProtectResult) -> list[dict[str, Any]]:
    """The jobs of ``protect``, ``protection stop|resume`` and ``unregister``: each
    configuring job with the VM's new state and policy, each backup job with its point, then
    the prune jobs."""
    docs = [
        job_doc(o.job)
        | {"vm_state": o.result.state.value if o.result else None}
        | {"policy": o.result.policy if o.result else None}
        for o in result.configured
    ]
    docs += [
        job_doc(o.job) | {"point": point_doc(o.result) if o.result else None}
        for o in result.backups
    ]
    docs += [job_doc(o.prune.job) for o in result.backups if o.prune is not None]
    return docs


def preview_doc(p: PolicyPreview) -> dict[str, Any]:
    """A policy preview: its next runs and retention's decision on a VM's points."""
    return {
        "schedule": format_schedule(p.policy.schedule),
        "timezone": p.policy.timezone.key,
        "next_runs": [iso(t) for t in p.next_runs],
        "retention": [
            {
                "point": pt.id,
                "created_at": iso(pt.created_at),
                "kept": d.keep,
                "reasons": list(d.reasons),
            }
            for pt, d in p.retention
        ],
        "warnings": p.policy.warnings(),
    }


def error_catalog() -> list[dict[str, str]]:
    """Every error code with its kind, message and remedy (``vmvault errors --json``)."""
    return [
        {"code": cls.code, "kind": cls.kind, "message": cls.message, "remedy": cls.remedy}
        for cls in sorted(VmvaultError.registry.values(), key=lambda c: c.code)
    ]


def catalog_markdown(rows: list[dict[str, str]] | None = None) -> str:
    """The error catalog (``rows``: :func:`error_catalog`'s, by default this program's) as the
    Markdown table of ``docs/errors.md`` (kept in step by a test)."""
    lines = [
        "# Errors",
        "",
        "Every failure a user can meet, as `vmvault errors` lists it. `usage` errors are refused",
        "before anything changes (exit 2); `failure` errors end a job as failed (exit 1).",
        "Generated from `src/vmvault/domain/errors/` by `vmvault errors --markdown`.",
        "",
        "| code | kind | message | remedy |",
        "|---|---|---|---|",
    ]
    for row in error_catalog() if rows is None else rows:
        cells = [f"`{row['code']}`", row["kind"], row["message"], row["remedy"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def notify_test_doc(r: SendResult) -> dict[str, Any]:
    """A target's test outcome (``notify test --json``, ``POST /api/v1/notifications/test``)."""
    return {
        "target": notify_target_doc(r.target),
        "ok": r.error is None,
        "error": r.error.as_dict() if r.error else None,
    }


def notify_target_doc(t: Target) -> dict[str, Any]:
    """A notification target (``notify list --json``, ``GET /api/v1/notifications``)."""
    return {
        "id": t.id,
        "vault": t.vault,
        "channel": t.channel.value,
        "address": shown_address(t.address),
        "events": [e.value for e in t.events],
        "created_at": iso(t.created_at),
    }


def outbox_doc(o: Outgoing) -> dict[str, Any]:
    """A message of the notification outbox (``notify outbox --json``,
    ``GET /api/v1/notifications/outbox``): its target as listed, never the message's body."""
    return {
        "id": o.id,
        "target": notify_target_doc(o.target),
        "vault": o.message.vault,
        "event": o.message.event.value,
        "subject": o.message.subject,
        "state": o.state.value,
        "attempts": o.attempts,
        "next_attempt_at": iso(o.next_attempt_at),
        "last_error": o.last_error,
        "created_at": iso(o.created_at),
        "sent_at": iso(o.sent_at),
    }
