"""The JSON documents of vmvault's public interfaces: the CLI's ``--json`` output and the
REST API's bodies are the same documents, built here from domain objects and service views.

Field names are a public contract (docs/server.md, "REST API"): scripts, monitoring and the
web UI rely on them.  Add fields; never rename or remove one.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from vmvault.domain.errors import VmvaultError
from vmvault.domain.job import Job
from vmvault.domain.policy import Policy, max_age
from vmvault.domain.recovery_point import RecoveryPoint
from vmvault.domain.schedule import format_schedule
from vmvault.domain.soft_delete import Deletion
from vmvault.domain.vault import Host, Vault
from vmvault.domain.vm import VmItem
from vmvault.services.dashboard import Dashboard
from vmvault.services.holdings import Holding
from vmvault.services.policies import PolicyView


def iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


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
    }


def host_doc(h: Host) -> dict[str, Any]:
    return {
        "uri": h.uri,
        "location": h.location,
        "hostname": h.hostname,
        "created_at": iso(h.created_at),
        "cluster_managed": list(h.cluster_managed),
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
        "disks": [asdict(d) for d in vm.effective_disks],
        "excluded_disks": list(vm.excluded_targets),
        "cluster_managed": vm.cluster_managed is not None,
        "cluster_managed_reason": vm.cluster_managed,
        "nics": [asdict(n) for n in vm.nics],
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
        "damaged": {v: [d.to_json() for d in dmg] for v, dmg in damaged.items()} or None,
        # vault → its soft deletion there (docs/soft-delete.md); None: soft-deleted nowhere
        "soft_deleted": {
            v: {"deleted_at": iso(g.deleted_at), "purge_after": iso(g.purge_after)}
            for v, g in (held.deleted if held is not None else {}).items()
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
    }


def _copy_doc(p: Policy) -> dict[str, Any] | None:
    """A policy's copy option (docs/copies.md), or None."""
    if p.copy is None or p.copy_retention is None:
        return None
    own = p.copy.retention is not None
    return {"vault": p.copy.vault, "retention": p.copy_retention.counts, "retention_own": own}


def deleted_point_doc(p: RecoveryPoint, vault: str, gone: Deletion) -> dict[str, Any]:
    """A point soft-deleted in ``vault`` (``points list --deleted``, ``points undelete``)."""
    return point_doc(p) | {
        "deleted_vault": vault,
        "deleted_at": iso(gone.deleted_at),
        "purge_after": iso(gone.purge_after),
    }


def dashboard_doc(d: Dashboard) -> dict[str, Any]:
    return {
        "vault": d.vault,
        "at": iso(d.at),
        "vms": d.vms,
        "jobs_24h": d.jobs,
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
            "logical_bytes": d.logical_bytes,
            "dedup_ratio": d.dedup_ratio,
            "points": d.points,
            "by_consistency": d.by_consistency,
            # soft-deleted points still held (logical bytes: their disks' sizes)
            "soft_deleted_points": d.soft_deleted,
            "soft_deleted_logical_bytes": d.soft_deleted_bytes,
            "next_purge_at": iso(d.next_purge_at),
        },
    }


def catalog_markdown() -> str:
    """The error catalog as the Markdown table of ``docs/errors.md`` (kept in step by a test)."""
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
    for cls in sorted(VmvaultError.registry.values(), key=lambda c: c.code):
        cells = [f"`{cls.code}`", cls.kind, cls.message, cls.remedy]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
