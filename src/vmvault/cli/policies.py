"""``vmvault policy …``: policies, a schedule and a retention each."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from vmvault.cli import remote, render
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt, LimitOpt, OffsetOpt, RequireOpt, VaultOpt
from vmvault.cli.plain import Listing
from vmvault.cli.render import emit_json, out
from vmvault.documents import policy_doc
from vmvault.domain.inputs import DEFAULT_PAGE
from vmvault.domain.policy import JSON_VERSION as POLICY_JSON_VERSION
from vmvault.domain.policy import Policy
from vmvault.domain.retention import Retention
from vmvault.domain.schedule import format_schedule
from vmvault.local_user import local_principal

policy_app = typer.Typer(help="Policies: a schedule and a retention.", no_args_is_help=True)


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
    render.listing(docs, offset, total, json_, _policy_table)


def _policy_table(docs: list[dict[str, Any]]) -> Listing:
    """Policy documents (:func:`documents.policy_doc`) as a table."""
    table = Listing(("NAME", "SCHEDULE", "TIMEZONE", "RETENTION", "VMS"))
    for doc in docs:
        p = policy_of(doc)
        table.add(
            p.name,
            format_schedule(p.schedule),
            p.timezone.key,
            str(p.retention),
            str(len(doc["vms"])),
        )
    return table


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
