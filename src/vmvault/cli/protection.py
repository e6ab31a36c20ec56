"""``vmvault protect``, ``vmvault protection …`` and ``vmvault unregister``: the protection of
registered VMs by a policy.

``protection list`` is one of the listings held to a time at fleet scale (docs/deployment.md,
"Fleet scale"): this module imports only what the remote listing uses, the rest where it is
used."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vmvault.cli import remote, render
from vmvault.cli.context import services
from vmvault.cli.options import ExcludeDiskOpt, JsonOpt, LimitOpt, OffsetOpt, VaultOpt, VmsArg
from vmvault.cli.plain import Listing
from vmvault.cli.render import emit_json
from vmvault.domain.inputs import DEFAULT_PAGE

protection_app = typer.Typer(help="Protection of registered VMs.", no_args_is_help=True)


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
            from vmvault.cli import remote_jobs

            queued = remote.post("/backups", {"vms": ready, "vault": docs[0]["vault"]})
            done = remote_jobs.backups(queued, not json_)
            docs += [j | {"point": p} for j, p, _ in done] + [r for *_, r in done if r]
        _jobs_result(docs, json_)
    from vmvault import documents
    from vmvault.cli.progress import live_progress

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
    from vmvault import documents
    from vmvault.local_user import local_principal
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
    from vmvault import documents

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
    if remote.reads():
        docs, total = remote.page("/protection", vault=vault, limit=limit, offset=offset)
    else:
        from vmvault.documents import protected_item_doc

        found, total = services().protection.items(vault, limit, offset)
        docs = [protected_item_doc(i) for i in found]
    render.listing(docs, offset, total, json_, _protection_table)


def _protection_table(docs: list[dict[str, Any]]) -> Listing:
    """Protected-item documents (:func:`documents.protected_item_doc`) as a table."""
    headers = ("NAME", "HOST", "PROTECTION", "HEALTH", "POLICY", "POINTS", "LAST POINT")
    table = Listing(headers)
    for i in docs:
        table.add(
            i["name"],
            i["host"],
            i["protection"],
            i["health"],
            i["policy"] or "-",
            str(i["points"]),
            render.when(i["last_point_at"]),
        )
    return table


def unregister(vms: VmsArg, vault: VaultOpt = None, json_: JsonOpt = False) -> None:
    """Unregister VMs that are not protected: one unregister job per VM."""
    if remote.active():
        _jobs_result(remote.post("/vms/unregister", {"vms": vms, "vault": vault}), json_)
    from vmvault import documents
    from vmvault.services.protection import ProtectResult  # a local command: services loaded

    outcomes = services().protection.unregister(vault, vms)
    _jobs_result(documents.protect_docs(ProtectResult(outcomes, [])), json_)
