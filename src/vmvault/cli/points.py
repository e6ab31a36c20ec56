"""`vmvault points`, `verify` and `gc`: recovery points and the vault's upkeep."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import quote

import typer

from vmvault import documents, outcomes
from vmvault.cli import pins, remote, remote_jobs, render
from vmvault.cli.backups import queued
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt, LimitOpt, OffsetOpt, VaultOpt, WaitOpt
from vmvault.cli.plain import Listing
from vmvault.cli.render import emit_json, out, size
from vmvault.documents import point_doc
from vmvault.domain.consistency import HookOutcome
from vmvault.domain.errors import InvalidInput
from vmvault.domain.inputs import DEFAULT_PAGE, check_page, page_of, parse_instant
from vmvault.domain.recovery_point import DamagedDisk, RecoveryPoint
from vmvault.local_user import local_principal

if TYPE_CHECKING:
    from vmvault.services.holdings import Holding

points_app = typer.Typer(help="Recovery points.", no_args_is_help=True)


@points_app.command("list")
def points_list(
    vm: Annotated[str | None, typer.Argument(help="Only this VM's points.")] = None,
    vault: VaultOpt = None,
    set_id: Annotated[
        str | None, typer.Option("--set", help="Only the points of this backup set.")
    ] = None,
    deleted: Annotated[
        bool,
        typer.Option(
            "--deleted", help="Only the points soft-deleted in the vault (docs/soft-delete.md)."
        ),
    ] = False,
    limit: LimitOpt = DEFAULT_PAGE,
    offset: OffsetOpt = 0,
    json_: JsonOpt = False,
) -> None:
    """List the recovery points a vault holds (taken into it or copied there), newest first,
    a page at a time; VAULTS names every vault holding each (its own first); DAMAGED: marked
    damaged in the listed vault (a VM's points without --vault: in any vault); SET: the
    backup set a point belongs to (--set ID: only that set's points, one per VM); --deleted:
    the points soft-deleted in the vault, with when each is purged."""
    check_page(limit, offset)
    if deleted:
        if set_id is not None:
            raise InvalidInput("--deleted lists one vault's soft-deleted points", what="--set")
        _list_deleted(vault, vm, limit, offset, json_)
        return
    if set_id is not None:
        if vm is not None or vault is not None:
            raise InvalidInput(
                "--set lists one whole backup set: no VM, no --vault", what="points list --set"
            )
        listed = None
        if remote.reads():
            docs, total = remote.page("/points", set=set_id, limit=limit, offset=offset)
        else:
            points, total = page_of(services().backup_sets.points(set_id), limit, offset)
            docs = _docs(points, services().point_listing.where_held(points))
    elif remote.reads():
        docs, total = remote.page("/points", vault=vault, vm=vm, limit=limit, offset=offset)
        # the vault listed, as the server resolves it (none: a VM's points in every vault)
        listed = vault or (None if vm is not None else remote.get("/dashboard")["vault"])
    else:
        found = services().point_listing.page(vault, vm, limit, offset)
        listed, total = found.vault, found.total
        docs = _docs(found.points, found.held)
    render.listing(docs, offset, total, json_, lambda docs: _point_table(docs, listed))


#: The columns a point table never wraps.
ID_AND_VM = frozenset(("ID", "VM"))


def _point_table(docs: list[dict[str, Any]], listed: str | None) -> Listing:
    """Point documents as a table; a point damaged in ``listed`` (the vault listed; None:
    in any vault) is marked."""
    cols: tuple[str, ...] = ("ID", "VM", "CREATED", "CONSISTENCY", "METHOD")
    cols += ("FROZEN/PAUSED MS", "DISKS", "LOGICAL", "NEW", "VAULTS", "RETAIN UNTIL")
    cols += ("SET",) if any(p["set_id"] for p in docs) else ()
    table = Listing(cols, no_wrap=ID_AND_VM)
    for p in docs:
        damaged = p["damaged"] or {}
        disks = ",".join(
            d["target"] + ("" if not d["excluded"] else "*") + ("+" if d["incremental"] else "")
            for d in p["disks"]
        )
        table.add(
            p["id"] + (" DAMAGED" if (listed in damaged if listed else damaged) else ""),
            p["vm_name"],
            render.when(p["created_at"]),
            p["consistency"],
            p["method"],
            f"{p['frozen_ms']}/{p['paused_ms']}",
            disks,
            size(p["bytes_logical"]),
            size(p["bytes_new"]),
            ",".join(p["vaults"]),
            render.when(p["retain_until"]) if p["retain_until"] else "-",
            *((p["set_id"] or "-",) if "SET" in cols else ()),
        )
    return table


def _list_deleted(vault: str | None, vm: str | None, limit: int, offset: int, json_: bool) -> None:
    if remote.reads():
        asked = {"vault": vault, "vm": vm, "limit": limit, "offset": offset}
        docs, total = remote.page("/points/deleted", **asked)
    else:
        gone, total = page_of(services().soft_delete.deleted(vault, vm)[1], limit, offset)
        docs = [documents.deleted_point_doc(g.point, g.vault, g.deleted) for g in gone]
    render.listing(docs, offset, total, json_, _deleted_table)


def _deleted_table(docs: list[dict[str, Any]]) -> Listing:
    """Soft-deleted point documents (:func:`documents.deleted_point_doc`) as a table."""
    cols = ("ID", "VM", "CREATED", "LOGICAL", "VAULT", "DELETED", "PURGE AFTER")
    table = Listing(cols, no_wrap=ID_AND_VM)
    for d in docs:
        table.add(
            d["id"],
            d["vm_name"],
            render.when(d["created_at"]),
            size(d["bytes_logical"]),
            d["deleted_vault"],
            render.when(d["deleted_at"]),
            render.when(d["purge_after"]),
        )
    return table


@points_app.command("undelete")
def points_undelete(
    point_id: str,
    vault: Annotated[
        str | None,
        typer.Option(
            "--vault", help="Undelete it in this vault only (default: wherever soft-deleted)."
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Restore a soft-deleted recovery point to normal (restorable, listed, kept by
    retention as any point) before its soft-delete period ends."""
    if remote.active():
        docs = remote.post(f"/points/{remote.part(point_id)}/undelete", {"vault": vault})
    else:
        back = services().soft_delete.undelete(point_id, vault)
        docs = [documents.deleted_point_doc(g.point, g.vault, g.deleted) for g in back]
    if json_:
        emit_json(docs)
        return
    for d in docs:
        out.print(
            f"undeleted {d['id']} of {d['vm_name']} in vault '{d['deleted_vault']}'", markup=False
        )


@points_app.command("purge")
def points_purge(
    point_id: str,
    vault: Annotated[
        str | None,
        typer.Option(
            "--vault", help="Purge it in this vault only (default: wherever soft-deleted)."
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Purge a soft-deleted recovery point now, before its soft-delete period ends (held for
    approval where the vault's approvals are on: docs/approvals.md)."""
    if remote.active():
        docs = remote.holdable("POST", f"/points/{remote.part(point_id)}/purge", {"vault": vault})
    else:
        gone = services().soft_delete.purge_point(point_id, vault, by=local_principal())
        docs = [documents.purged_doc(r) for r in gone]
    if json_:
        emit_json(docs)
        return
    for d in docs:
        out.print(f"purged {d['point']} from vault '{d['vault']}'", markup=False)


@points_app.command("lock")
def points_lock(
    point_id: str,
    keep_until: Annotated[
        str,
        typer.Option(
            "--keep-until",
            help="The point's new retain-until (YYYY-MM-DD[THH:MM]): never earlier than its "
            "current one.",
        ),
    ],
    json_: JsonOpt = False,
) -> None:
    """Lengthen a point's retain-until: in an immutable vault it cannot be deleted before,
    and retention keeps it until then in any vault (docs/immutability.md)."""
    until = parse_instant(keep_until, "--keep-until")
    if remote.active():
        body = {"keep_until": until.isoformat()}
        doc = remote.post(f"/points/{remote.part(point_id)}/lock", body)
    else:
        p, held = services().immutability.lock_point(point_id, until)
        doc = documents.locked_point_doc(p, services().point_listing.holders([p.id])[p.id], held)
    if json_:
        emit_json(doc)
        return
    where = f"; {doc['objects_held']} object(s) held by the storage" if doc["objects_held"] else ""
    out.print(f"point {doc['id']} retained until {doc['retain_until']}{where}", markup=False)


def _docs(points: list[RecoveryPoint], held: dict[str, Holding]) -> list[dict[str, Any]]:
    """The points' documents, each with every vault holding it."""
    from vmvault.services.holdings import Holding  # a local command: the services are loaded

    return [point_doc(p, held.get(p.id) or Holding([p.vault], {})) for p in points]


@points_app.command("show")
def points_show(point_id: str, json_: JsonOpt = False) -> None:
    """Show one recovery point (VAULTS: every vault holding it, its own first; DAMAGED: the
    damage recorded in each vault)."""
    if remote.active():
        doc = remote.get(f"/points/{quote(point_id, safe='')}")
    else:
        p = services().point_listing.get(point_id)
        doc = point_doc(p, services().point_listing.holders([p.id])[p.id])
    if json_:
        emit_json(doc)
        return
    for key in ("id", "vm_name", "vm", "vault", "created_at", "consistency", "method"):
        out.print(f"{key:12} {doc[key]}", markup=False)
    out.print(f"{'vaults':12} {', '.join(doc['vaults'])}", markup=False)
    out.print(f"{'why':12} {doc['method_reason'] or '-'}", markup=False)
    out.print(f"{'frozen':12} {doc['frozen_ms']} ms")
    out.print(f"{'paused':12} {doc['paused_ms']} ms")
    hooks = HookOutcome.from_json(doc["hooks"]).summary() if doc["hooks"] else "-"
    out.print(f"{'hooks':12} {hooks}", markup=False)
    out.print(f"{'checkpoint':12} {doc['checkpoint'] or '-'}", markup=False)
    out.print(f"{'retain until':12} {doc['retain_until'] or '-'}", markup=False)
    if doc["set_id"] is not None:
        set_id = doc["set_id"]
        out.print(f"{'set':12} {set_id} (vmvault points list --set {set_id})", markup=False)
    out.print(
        f"{'sizes':12} {size(doc['bytes_logical'])} logical, {size(doc['bytes_read'])} read, "
        f"{size(doc['bytes_new'])} new"
    )
    for d in doc["disks"]:
        how = "excluded" if d["excluded"] else ("incremental" if d["incremental"] else "full")
        out.print(
            f"disk {d['target']:6} {size(d['size']):>10}  {how:11} read {size(d['bytes_read'])}, "
            f"new {size(d['bytes_new'])}  ({d['reason'] or ''})",
            markup=False,
        )
    for w in doc["warnings"]:
        out.print(f"warning: {w}", markup=False)
    for vault_name, gone in (doc["soft_deleted"] or {}).items():
        out.print(
            f"SOFT-DELETED in vault {vault_name} at {gone['deleted_at']}, purged after "
            f"{gone['purge_after']} (vmvault points undelete {doc['id']} --vault {vault_name})",
            markup=False,
        )
    for vault_name, damage in (doc["damaged"] or {}).items():
        for dmg in damage:
            out.print(
                f"DAMAGED in vault {vault_name}: {DamagedDisk.from_json(dmg).describe()} "
                "(docs/healing.md)",
                markup=False,
            )


@points_app.command("delete")
def points_delete(
    point_id: str,
    vault: Annotated[
        str | None,
        typer.Option("--vault", help="Delete it from this vault only (default: from every vault)."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Delete one recovery point from every vault holding it, or --vault from one.

    In a vault whose soft delete is on it is soft-deleted (undelete with 'vmvault points
    undelete', purged by 'vmvault gc' after the vault's period); where it is off it is deleted
    at once (its unshared chunks go at the vault's next GC)."""
    if remote.active():
        job = remote.delete(f"/points/{remote.part(point_id)}", vault=vault)
    else:
        job = documents.job_doc(services().points.delete_point(point_id, vault).job)
    emit_json(job) if json_ else render.job_result_line(job)
    raise typer.Exit(render.exit_code_for([job]))


def verify(
    vm: Annotated[str | None, typer.Argument(help="Verify this VM's points.")] = None,
    point: Annotated[str | None, typer.Option("--point", help="Verify one point.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Verify every point of the vault.")] = False,
    wait: WaitOpt = True,
    vault: VaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Re-read and re-hash every chunk the chosen points reference (a verify job); heal
    damaged chunks from another vault holding the point, and name each one healed."""
    if all_ == (vm is not None or point is not None):  # VM and --point: the service refuses
        raise typer.BadParameter("give exactly one of VM, --point ID or --all")
    if remote.active():  # queued on the server, then waited for (cli/remote_jobs.py)
        posted = remote.post("/verify", {"vault": vault, "point": point, "vm": vm})
        if not wait:
            queued([posted], json_)
        [job] = remote_jobs.wait([posted], progress=False, with_log=True)
        findings = remote_jobs.outcome(job, {"healed": [], "damaged": []}) if json_ else {}
        _verified(job, findings, json_)
    if not wait:
        queued([services().queue.submit_verify(vault, point_id=point, vm_ref=vm)], json_)
    outcome = services().points.verify(vault, point_id=point, vm_ref=vm)
    doc = documents.job_doc(*services().jobs.show(outcome.job.id))
    _verified(doc, services().points.verify_findings(outcome.job.id) if json_ else {}, json_)


def _verified(job: dict[str, Any], findings: dict[str, Any], json_: bool) -> NoReturn:
    """A verify job's document with its log (and, for ``--json``, its findings)."""
    if json_:
        emit_json(job | findings)
    else:
        render.job_result_line(job)
        for line in job["log"]:
            if " point " in line or "chunk reads" in line:
                out.print(f"  {line}", markup=False)
    raise typer.Exit(render.exit_code_for([job]))


def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count.")] = False,
    wait: WaitOpt = True,
    vault: VaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Purge the soft-deleted points whose period has ended, then remove chunks no recovery
    point references (safe while backups run)."""
    if not wait and dry_run:
        raise typer.BadParameter("--dry-run runs in the foreground only")
    if remote.active():  # queued on the server, then waited for (cli/remote_jobs.py)
        if dry_run:
            remote.refuse_option("--dry-run", "the server queues a collection, never a count")
        posted = remote.post("/gc", {"vault": vault})
        if not wait:
            queued([posted], json_)
        [job] = remote_jobs.wait([posted], progress=False)
        _collected(job | remote_jobs.outcome(job, outcomes.gc_doc(None)), dry_run, json_)
    if not wait:
        queued([services().queue.submit_gc(vault)], json_)
    outcome = services().points.gc(vault, dry_run)
    _collected(documents.job_doc(outcome.job) | outcomes.gc_doc(outcome.result), dry_run, json_)


def _collected(doc: dict[str, Any], dry_run: bool, json_: bool) -> NoReturn:
    """A GC job's document with its counts (vmvault/outcomes.py)."""
    if json_:
        emit_json(doc)
    else:
        render.job_result_line(doc)
        if "result" in doc:
            r = doc["result"]
            verb = "due" if dry_run else "purged"
            out.print(
                f"  {len(r['points_purged'])} soft-deleted point(s) {verb}, "
                f"{r['chunks_removed']} chunks removed ({size(r['bytes_removed'])}), "
                f"{r['chunks_referenced']} referenced, {r['chunks_kept_recent']} kept as too recent"
                + (
                    f", {r['chunks_kept_retained']} kept as still retained by the storage"
                    if r.get("chunks_kept_retained")
                    else ""
                )
            )
    raise typer.Exit(render.exit_code_for([doc]))


points_app.command("protect")(pins.points_protect)
points_app.command("unprotect")(pins.points_unprotect)
