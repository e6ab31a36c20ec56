"""Policies, protection, unregister, pinned points and the dashboard commands."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from vmvault import documents
from vmvault.cli import remote, render
from vmvault.cli.access import local_principal
from vmvault.cli.context import services
from vmvault.cli.options import ExcludeDiskOpt, JsonOpt, RequireOpt, VaultOpt
from vmvault.cli.points import points_app
from vmvault.cli.progress import live_progress
from vmvault.cli.render import emit_json, out
from vmvault.documents import dashboard_doc, point_doc, policy_doc
from vmvault.domain.iso import iso
from vmvault.domain.job import Job
from vmvault.domain.policy import JSON_VERSION as POLICY_JSON_VERSION
from vmvault.domain.policy import Policy
from vmvault.domain.retention import Retention
from vmvault.domain.schedule import format_schedule
from vmvault.services.protection import ProtectResult

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
def policy_list(vault: VaultOpt = None, json_: JsonOpt = False) -> None:
    """List the vault's policies."""
    if remote.active():
        docs = remote.get("/policies", vault=vault)
    else:
        docs = [policy_doc(v) for v in services().policies.list_policies(vault)]
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
    services().policies.delete(name)
    if json_:
        emit_json({"deleted": name})
    else:
        out.print(f"policy '{name}' deleted", markup=False)


# --- protection ----------------------------------------------------------------------------------


def _jobs_result(result: ProtectResult, json_: bool) -> None:
    prunes = [o.prune for o in result.backups if o.prune is not None]
    jobs: list[Job] = [o.job for o in result.configured] + [o.job for o in result.backups]
    jobs += [o.job for o in prunes]
    if json_:
        emit_json(documents.protect_docs(result))
    else:
        for job in jobs:
            render.job_result_line(job)
    raise typer.Exit(render.exit_code_for(jobs))


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
    with live_progress(not json_ and backup_now):
        result = services().protection.protect(
            vault, vms, policy, backup_now, exclude_disks=exclude_disk or []
        )
    _jobs_result(result, json_)


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
    outcomes = services().protection.stop(vault, vms, retain_data=retain_data, by=local_principal())
    _jobs_result(ProtectResult(outcomes, []), json_)


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
    _jobs_result(services().protection.resume(vault, vms, policy), json_)


@protection_app.command("list")
def protection_list(vault: VaultOpt = None, json_: JsonOpt = False) -> None:
    """The VMs registered with the vault, their protection, policy and newest point."""
    if remote.active():
        docs = remote.get("/protection", vault=vault)
    else:
        docs = [documents.protected_item_doc(i) for i in services().protection.items(vault)]
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


def unregister(vms: VmsArg, vault: VaultOpt = None, json_: JsonOpt = False) -> None:
    """Unregister VMs that are not protected: one unregister job per VM."""
    outcomes = services().protection.unregister(vault, vms)
    _jobs_result(ProtectResult(outcomes, []), json_)


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
    p = services().protection.pin(point_id, protected)
    if json_:
        emit_json(point_doc(p) | {"protected": p.protected, "keep_until": iso(p.keep_until)})
    else:
        out.print(f"point {p.id} {'protected' if protected else 'unprotected'}", markup=False)


# --- dashboard -----------------------------------------------------------------------------------


def dashboard(vault: VaultOpt = None, json_: JsonOpt = False) -> None:
    """VM and job counts, VMs that need attention, storage and dedup ratio."""
    if remote.active():
        d = remote.get("/dashboard", vault=vault)
    else:
        d = dashboard_doc(services().dashboard.summary(vault))
    if json_:
        emit_json(d)
        return
    out.print(f"[bold]vault {render.markup(d['vault'])}[/]", highlight=False)
    out.print("VMs       " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in d["vms"].items()))
    jobs = d["jobs_24h"].items()
    out.print("jobs 24h  " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in jobs))
    st = d["storage"]
    ratio = f"{st['dedup_ratio']:.2f}x" if st["dedup_ratio"] else "-"
    out.print(
        f"storage   {st['used_bytes']:,} B used for {st['logical_bytes']:,} B logical in "
        f"{st['points']} point(s), dedup ratio {ratio}"
    )
    out.print("points    " + ", ".join(f"{n} {k}" for k, n in st["by_consistency"].items()))
    due = f", next purge {st['next_purge_at']}" if st["next_purge_at"] else ""
    out.print(
        f"deleted   {st['soft_deleted_points']} soft-deleted point(s) holding "
        f"{st['soft_deleted_logical_bytes']:,} B logical{due}"
    )
    if not d["attention"]:
        out.print("attention none")
    for a in d["attention"]:
        line = f"attention {a['name']} ({a['policy']}): {a['reason']}: {a['detail']}"
        out.print(line, markup=False)
