"""``vmvault discover``, ``vmvault vm …`` and ``vmvault register``: the VMs discovery finds
in a vault's location, and registering them with the vault."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer

from vmvault.cli import remote, render
from vmvault.cli.context import services
from vmvault.cli.options import ExcludeDiskOpt, JsonOpt, LimitOpt, OffsetOpt, VaultOpt
from vmvault.cli.render import emit_json, out
from vmvault.domain.inputs import DEFAULT_PAGE
from vmvault.domain.vm_states import VmState

#: What discovery found, in the order ``discover`` prints it (domain.inventory's summary).
DISCOVERED = ("new", "changed", "unchanged", "vanished")
#: The jobs ``vm show`` lists (as many as the local history gives).
VM_HISTORY = 20

vm_app = typer.Typer(help="VMs found by discovery.", no_args_is_help=True)


def discover(vault: VaultOpt = None, json_: JsonOpt = False) -> None:
    """Find the VMs of every host in the vault's location (a discovery job)."""
    if remote.active():
        doc = remote.post("/vms/discover", {"vault": vault})
        labels = (
            {}
            if json_
            else {v["uuid"]: render.label(v) for v in remote.get_all("/vms", vault=vault)}
        )
    else:
        outcome = services().inventory.discover(vault)
        from vmvault import documents

        doc = documents.discovery_doc(outcome)
        r = outcome.result
        labels = {v.uuid: v.label for v in (r.new + r.changed + r.vanished)} if r else {}
    if json_:
        emit_json(doc)
    else:
        render.job_result_line(doc)
        if doc.get("result") is not None:
            found = doc["result"]
            out.print(", ".join(f"{len(found[k])} {k}" for k in DISCOVERED))
            for kind in ("new", "changed", "vanished"):
                for uuid in found[kind]:
                    out.print(f"  {kind:8} {labels.get(uuid, uuid)} ({uuid})", markup=False)
    raise typer.Exit(render.exit_code_for([doc]))


@vm_app.command("list")
def vm_list(
    state: Annotated[VmState | None, typer.Option(help="Only VMs in this state.")] = None,
    vault: VaultOpt = None,
    limit: LimitOpt = DEFAULT_PAGE,
    offset: OffsetOpt = 0,
    json_: JsonOpt = False,
) -> None:
    """List the VMs of the vault's location by name, a page at a time (vanished ones are
    marked)."""
    if remote.reads():
        asked = {"vault": vault, "state": state.value if state else None}
        docs, total = remote.page("/vms", **asked, limit=limit, offset=offset)
    else:
        found, total = services().inventory.list_vms(vault, state, limit, offset)
        from vmvault import documents

        docs = [documents.vm_doc(vm) for vm in found]
    render.listing(docs, offset, total, json_, render.vm_table)


@vm_app.command("show")
def vm_show(vm: str, json_: JsonOpt = False) -> None:
    """Show one VM: disks, NICs, agent, state, recent jobs."""
    if remote.active():
        doc = remote.get(f"/vms/{quote(vm, safe='/')}")
        doc["recent_jobs"] = remote.get("/jobs", vm=doc["uuid"], limit=VM_HISTORY)
    else:
        item = services().inventory.find(vm)
        jobs = services().inventory.history(item)
        from vmvault import documents

        doc = documents.vm_doc(item) | {"recent_jobs": [documents.job_doc(j) for j in jobs]}
    if json_:
        emit_json(doc)
        return
    for key in ("name", "uuid", "host", "host_uri", "group", "state", "power_state", "vault"):
        out.print(f"{key:14} {doc[key]}", markup=False)
    out.print(f"{'agent':14} {render.agent(doc)}", markup=False)
    if doc["vanished_at"]:
        out.print(f"{'vanished_at':14} {doc['vanished_at']}")
    reason = doc["cluster_managed_reason"]
    out.print(f"{'cluster-managed':14} {f'yes: {reason}' if reason else 'no'}", markup=False)
    for d in doc["disks"]:
        extra = f"  excluded: {d['reason']}" if d["excluded"] else ""
        out.print(
            f"disk {d['target']:6} {d['type']}/{d['device']}/{d['format']}  {d['path']}{extra}",
            markup=False,
        )
    for n in doc["nics"]:
        out.print(f"nic  {n['mac']}  {n['type']}:{n['source']}  {n['model']}", markup=False)
    for w in doc["warnings"]:
        out.print(f"warning: {w}", markup=False)
    if doc["recent_jobs"]:
        render.print_table(render.job_table(doc["recent_jobs"]))


@vm_app.command("update")
def vm_update(
    vm: str,
    exclude_disk: ExcludeDiskOpt = None,
    include_disk: Annotated[
        list[str] | None,
        typer.Option(
            "--include-disk", help="Back this disk up again (target, repeatable): a full read."
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Change which disks of a VM its backups leave out (from its next backup on)."""
    excludes, includes = exclude_disk or [], include_disk or []
    if remote.active():
        body = {"exclude_disks": excludes, "include_disks": includes}
        doc = remote.patch(f"/vms/{quote(vm, safe='/')}", body)
    else:
        from vmvault import documents

        doc = documents.vm_doc(services().inventory.update_vm(vm, excludes, includes))
    if json_:
        emit_json(doc)
        return
    excluded = ", ".join(doc["excluded_disks"]) or "none"
    out.print(f"{render.label(doc)}: disks excluded by user: {excluded}", markup=False)


def register(
    vms: Annotated[list[str], typer.Argument(help="VMs: uuid, NAME, HOST/NAME or GROUP/NAME.")],
    crash_consistent: Annotated[
        bool,
        typer.Option(
            "--crash-consistent",
            help="Accept a VM whose guest agent is missing or silent (crash-consistent only).",
        ),
    ] = False,
    exclude_disk: ExcludeDiskOpt = None,
    vault: VaultOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Register VMs with the vault: one register job per VM."""
    if remote.active():
        body = {"vms": vms, "vault": vault, "crash_consistent": crash_consistent}
        jobs = remote.post("/vms/register", body | {"exclude_disks": exclude_disk or []})
        owners = [
            None
            if json_ or j["error_code"]
            else remote.get(f"/vms/{j['vm']}")["cluster_managed_reason"]
            for j in jobs
        ]
    else:
        outcomes = services().inventory.register(
            vault, vms, allow_crash_consistent=crash_consistent, exclude_disks=exclude_disk or []
        )
        from vmvault import documents

        jobs = [documents.job_doc(o.job) for o in outcomes]
        owners = [o.result.cluster_managed if o.result else None for o in outcomes]
    if json_:
        emit_json(jobs)
    else:
        for job, owner in zip(jobs, owners, strict=True):
            render.job_result_line(job)
            if owner:
                out.print(
                    f"  cluster-managed ({owner}): vmvault never pauses, "
                    "shuts off, undefines or replaces it",
                    markup=False,
                )
    raise typer.Exit(render.exit_code_for(jobs))
