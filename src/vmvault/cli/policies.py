"""Policies, protection, unregister and pinned points commands."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from vmvault import documents
from vmvault.cli import remote, remote_jobs, render
from vmvault.cli.access import local_principal
from vmvault.cli.context import services
from vmvault.cli.options import (
    ExcludeDiskOpt,
    JsonOpt,
    LimitOpt,
    OffsetOpt,
    RequireOpt,
    VaultOpt,
)
from vmvault.cli.points import points_app
from vmvault.cli.progress import live_progress
from vmvault.cli.render import emit_json, out
from vmvault.documents import point_doc, policy_doc
from vmvault.domain.inputs import DEFAULT_PAGE
from vmvault.domain.policy import JSON_VERSION as POLICY_JSON_VERSION
from vmvault.domain.policy import Policy
from vmvault.domain.retention import Retention
from vmvault.domain.schedule import format_schedule

VmsArg = Annotated[list[str], typer.Argument(help="VMs: uuid, NAME, HOST/NAME or GROUP/NAME.")]

policy_app = typer.Typer(help="Policies: a schedule and a retention.", no_args_is_help=True)
protection_app = typer.Typer(help="Protection of registered VMs.", no_args_is_help=True)


def _count(level: str) -> Any:
    return typer.Option(f"--{level}", help=f"Keep the newest point of this many {level} buckets.")


def _copy_count(level: str) -> Any:
    return typer.Option(
        f"--copy-keep-{level}",
        help=f"Retention in the --copy-to vault: {level} buckets (default: the policy's).",
    )


CopyToOpt = Annotated[
    str | None,
    typer.Option(
        "--copy-to", help="Copy every new point to this vault (a copy job after each backup)."
    ),
]


# --- policies ------------------------------------------------------------------------------------


def _show_policy(doc: dict[str, Any], json_: bool) -> None:
    """A policy document, local or remote (:func:`documents.policy_doc`)."""
    if json_:
        emit_json(doc)
    else:
        out.print(policy_of(doc).describe(), markup=False)
        out.print(f"  vault:     {doc['vault']}", markup=False)
        out.print(f"  VMs:       {', '.join(doc['vms']) or 'none'}", markup=False)
    raise typer.Exit(render.EXIT_WARNINGS if doc["warnings"] else render.EXIT_OK)


def policy_of(doc: dict[str, Any]) -> Policy:
    """The policy a document shows, read back as the catalog's form is (so ``policy show``
    describes a policy with the domain's own words, from a local or a remote document)."""
    copy = doc["copy_to"]
    data: dict[str, Any] = {
        "version": POLICY_JSON_VERSION,
        "name": doc["name"],
        "schedule": doc["schedule"],
        "timezone": doc["timezone"],
        "retention": doc["retention"],
        "as_set": doc["as_set"],
        "require": doc["require"],
    }
    if copy is not None:
        data["copy"] = {"vault": copy["vault"]} | (
            {"retention": copy["retention"]} if copy["retention_own"] else {}
        )
    return Policy.from_json(data)


_AS_SET = typer.Option(
    "--as-set",
    help="At each slot, back up all the policy's VMs as one all-or-nothing set (docs/sets.md).",
)


@policy_app.command("create")
def policy_create(
    name: str,
    schedule: Annotated[
        str, typer.Option(help="daily@HH:MM, weekly:DAYS@HH:MM or every:Nh[@HH:MM-HH:MM].")
    ],
    tz: Annotated[str, typer.Option("--tz", "--timezone", help="IANA time zone.")] = "UTC",
    daily: Annotated[int, _count("daily")] = 0,
    weekly: Annotated[int, _count("weekly")] = 0,
    monthly: Annotated[int, _count("monthly")] = 0,
    yearly: Annotated[int, _count("yearly")] = 0,
    copy_to: CopyToOpt = None,
    copy_keep_daily: Annotated[int | None, _copy_count("daily")] = None,
    copy_keep_weekly: Annotated[int | None, _copy_count("weekly")] = None,
    copy_keep_monthly: Annotated[int | None, _copy_count("monthly")] = None,
    copy_keep_yearly: Annotated[int | None, _copy_count("yearly")] = None,
    as_set: Annotated[bool, _AS_SET] = False,
    require: RequireOpt = None,
    vault: VaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Create a policy (warnings about unusual combinations: exit 3)."""
    retention = Retention(daily, weekly, monthly, yearly)
    copy_counts = {
        "daily": copy_keep_daily,
        "weekly": copy_keep_weekly,
        "monthly": copy_keep_monthly,
        "yearly": copy_keep_yearly,
    }
    if remote.active():
        body: dict[str, Any] = {"name": name, "schedule": schedule, "timezone": tz, "vault": vault}
        body |= {"retention": retention.counts, "copy_to": copy_to, "copy_retention": copy_counts}
        _show_policy(remote.post("/policies", body | {"as_set": as_set, "require": require}), json_)
    view = services().policies.create(
        vault,
        name,
        schedule,
        tz,
        retention,
        copy_to=copy_to,
        copy_counts=copy_counts,
        as_set=as_set,
        require=require,
    )
    _show_policy(policy_doc(view), json_)


@policy_app.command("list")
def policy_list(
    vault: VaultOpt = None,
    limit: LimitOpt = DEFAULT_PAGE,
    offset: OffsetOpt = 0,
    json_: JsonOpt = False,
) -> None:
    """List the vault's policies by name, a page at a time."""
    if remote.active():
        docs, total = remote.page("/policies", vault=vault, limit=limit, offset=offset)
    else:
        found, total = services().policies.list_policies(vault, limit, offset)
        docs = [policy_doc(v) for v in found]
    if json_:
        emit_json(docs)
        return
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "SCHEDULE", "TIMEZONE", "RETENTION", "VMS"):
        table.add_column(col)
    for doc in docs:
        p = policy_of(doc)
        render.add_row(
            table,
            p.name,
            format_schedule(p.schedule),
            p.timezone.key,
            str(p.retention),
            str(len(doc["vms"])),
        )
    out.print(table)
    render.page_note(len(docs), offset, total)


@policy_app.command("show")
def policy_show(name: str, json_: JsonOpt = False) -> None:
    """Show a policy, what it keeps, when a VM is overdue, its warnings and VMs."""
    if remote.active():
        doc = remote.get(f"/policies/{quote(name, safe='')}")
    else:
        doc = policy_doc(services().policies.get(name))
    _show_policy(doc, json_)


@policy_app.command("update")
def policy_update(
    name: str,
    schedule: Annotated[str | None, typer.Option(help="New schedule.")] = None,
    tz: Annotated[str | None, typer.Option("--tz", "--timezone", help="New time zone.")] = None,
    daily: Annotated[int | None, _count("daily")] = None,
    weekly: Annotated[int | None, _count("weekly")] = None,
    monthly: Annotated[int | None, _count("monthly")] = None,
    yearly: Annotated[int | None, _count("yearly")] = None,
    copy_to: CopyToOpt = None,
    copy_keep_daily: Annotated[int | None, _copy_count("daily")] = None,
    copy_keep_weekly: Annotated[int | None, _copy_count("weekly")] = None,
    copy_keep_monthly: Annotated[int | None, _copy_count("monthly")] = None,
    copy_keep_yearly: Annotated[int | None, _copy_count("yearly")] = None,
    no_copy: Annotated[
        bool, typer.Option("--no-copy", help="Stop copying new points (copies made stay).")
    ] = False,
    as_set: Annotated[
        bool | None,
        typer.Option("--as-set/--not-as-set", help="Back its VMs up as one set (or not)."),
    ] = None,
    require: Annotated[
        str | None,
        typer.Option(
            "--require",
            metavar="LEVEL",
            help="application-consistent | file-system-consistent | any (none required).",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Change a policy; options not given keep their values.  Its VMs follow at once."""
    counts = {"daily": daily, "weekly": weekly, "monthly": monthly, "yearly": yearly}
    copy_counts = {
        "daily": copy_keep_daily,
        "weekly": copy_keep_weekly,
        "monthly": copy_keep_monthly,
        "yearly": copy_keep_yearly,
    }
    if remote.active():
        body: dict[str, Any] = {
            "schedule": schedule,
            "timezone": tz,
            "retention": counts,
            "copy_to": copy_to,
        }
        body |= {"copy_retention": copy_counts, "no_copy": no_copy, "as_set": as_set}
        doc = remote.holdable(
            "PATCH", f"/policies/{remote.part(name)}", body | {"require": require}
        )
        if not doc.pop("changed", True) and not json_:
            out.print(f"policy '{name}' unchanged: it has these values already", markup=False)
        _show_policy(doc, json_)
    view = services().policies.update(
        name,
        schedule=schedule,
        timezone=tz,
        counts=counts,
        copy_to=copy_to,
        copy_counts=copy_counts,
        no_copy=no_copy,
        as_set=as_set,
        require=require,
        by=local_principal(),
    )
    if not view.changed and not json_:
        out.print(f"policy '{name}' unchanged: it has these values already", markup=False)
    _show_policy(policy_doc(view), json_)


@policy_app.command("delete")
def policy_delete(name: str, json_: JsonOpt = False) -> None:
    """Delete a policy no VM uses."""
    if remote.active():
        remote.delete(f"/policies/{remote.part(name)}")
    else:
        services().policies.delete(name)
    if json_:
        emit_json({"deleted": name})
    else:
        out.print(f"policy '{name}' deleted", markup=False)


# --- protection ----------------------------------------------------------------------------------


def _jobs_result(docs: list[dict[str, Any]], json_: bool) -> None:
    """The jobs of ``protect``, ``protection stop|resume`` and ``unregister``
    (:func:`documents.protect_docs`: configuring jobs, backup jobs, then prune jobs)."""
    if json_:
        emit_json(docs)
    else:
        for job in docs:
            render.job_result_line(job)
    raise typer.Exit(render.exit_code_for(docs))


def protect(
    vms: VmsArg,
    policy: Annotated[str, typer.Option("--policy", help="The policy to protect them with.")],
    backup_now: Annotated[
        bool, typer.Option("--backup-now", help="Take the initial backup now.")
    ] = False,
    exclude_disk: ExcludeDiskOpt = None,
    vault: VaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Protect registered VMs with a policy: one configure-protection job per VM.

    A protected VM moves to the new policy.  The initial backup is at the policy's next slot
    (the job server), or at once with --backup-now.  --exclude-disk adds to the disks the
    VM's backups leave out ('vmvault vm update' changes them later).
    """
    if remote.active():
        body: dict[str, Any] = {
            "vms": vms,
            "policy": policy,
            "vault": vault,
            "exclude_disks": exclude_disk or [],
        }
        docs = remote.post("/protection", body)
        ready = [d["vm"] for d in docs if d["vm_state"] is not None]  # as _backup_now's
        if backup_now and ready:  # the backups, then the prune jobs (protect_docs' order)
            queued = remote.post("/backups", {"vms": ready, "vault": docs[0]["vault"]})
            done = remote_jobs.backups(queued, not json_)
            docs += [j | {"point": p} for j, p, _ in done] + [r for *_, r in done if r]
        _jobs_result(docs, json_)
    with live_progress(not json_ and backup_now):
        result = services().protection.protect(
            vault, vms, policy, backup_now, exclude_disks=exclude_disk or []
        )
    _jobs_result(documents.protect_docs(result), json_)


@protection_app.command("stop")
def protection_stop(
    vms: VmsArg,
    retain_data: Annotated[
        bool, typer.Option("--retain-data", help="Keep the points (restorable, never pruned).")
    ] = False,
    delete_data: Annotated[
        bool,
        typer.Option(
            "--delete-data",
            help="Delete the points (soft-deleted when the vault's soft delete is on).",
        ),
    ] = False,
    vault: VaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Stop protecting VMs: one stop-protection job per VM."""
    if retain_data == delete_data:
        raise typer.BadParameter("give exactly one of --retain-data, --delete-data")
    if remote.active():
        body: dict[str, Any] = {"vms": vms, "delete_data": delete_data, "vault": vault}
        _jobs_result(remote.holdable("POST", "/protection/stop", body), json_)
    from vmvault.services.protection import ProtectResult  # a local command: services loaded

    outcomes = services().protection.stop(vault, vms, retain_data=retain_data, by=local_principal())
    _jobs_result(documents.protect_docs(ProtectResult(outcomes, [])), json_)


@protection_app.command("resume")
def protection_resume(
    vms: VmsArg,
    policy: Annotated[
        str | None, typer.Option("--policy", help="Resume with this policy (default: its own).")
    ] = None,
    vault: VaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Resume the protection of VMs whose protection was stopped with their data retained."""
    if remote.active():
        body: dict[str, Any] = {"vms": vms, "policy": policy, "vault": vault}
        _jobs_result(remote.post("/protection/resume", body), json_)
    _jobs_result(documents.protect_docs(services().protection.resume(vault, vms, policy)), json_)


@protection_app.command("list")
def protection_list(
    vault: VaultOpt = None,
    limit: LimitOpt = DEFAULT_PAGE,
    offset: OffsetOpt = 0,
    json_: JsonOpt = False,
) -> None:
    """The VMs registered with the vault by name, a page at a time: their protection, policy
    and newest point."""
    if remote.active():
        docs, total = remote.page("/protection", vault=vault, limit=limit, offset=offset)
    else:
        found, total = services().protection.items(vault, limit, offset)
        docs = [documents.protected_item_doc(i) for i in found]
    if json_:
        emit_json(docs)
        return
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "HOST", "PROTECTION", "HEALTH", "POLICY", "POINTS", "LAST POINT"):
        table.add_column(col)
    for i in docs:
        render.add_row(
            table,
            i["name"],
            i["host"],
            i["protection"],
            i["health"],
            i["policy"] or "-",
            str(i["points"]),
            render.when(i["last_point_at"]),
        )
    out.print(table)
    render.page_note(len(docs), offset, total)


def unregister(vms: VmsArg, vault: VaultOpt = None, json_: JsonOpt = False) -> None:
    """Unregister VMs that are not protected: one unregister job per VM."""
    if remote.active():
        _jobs_result(remote.post("/vms/unregister", {"vms": vms, "vault": vault}), json_)
    from vmvault.services.protection import ProtectResult  # a local command: services loaded

    outcomes = services().protection.unregister(vault, vms)
    _jobs_result(documents.protect_docs(ProtectResult(outcomes, [])), json_)


# --- pinned points -------------------------------------------------------------------------------


@points_app.command("protect")
def points_protect(point_id: str, json_: JsonOpt = False) -> None:
    """Pin a recovery point: retention never removes it."""
    _pin(point_id, True, json_)


@points_app.command("unprotect")
def points_unprotect(point_id: str, json_: JsonOpt = False) -> None:
    """Unpin a recovery point: retention decides about it again."""
    _pin(point_id, False, json_)


def _pin(point_id: str, protected: bool, json_: bool) -> None:
    """The point's document as ``points show`` has it (every vault holding it)."""
    if remote.active():
        doc = remote.post(f"/points/{remote.part(point_id)}/protect", {"protected": protected})
    else:
        p = services().protection.pin(point_id, protected)
        doc = point_doc(p, services().point_listing.holders([p.id]).get(p.id))
    if json_:
        emit_json(doc)
    else:
        out.print(f"point {doc['id']} {'protected' if protected else 'unprotected'}", markup=False)
