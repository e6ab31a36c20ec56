"""``vmvault approvals …``: requests held for approval (docs/approvals.md); a held call is
printed by :func:`vmvault.cli.render.held` (exit 4), locally and remotely.

The CLI's principal is the local user, ``local:<user>``, an admin
(:func:`~vmvault.local_user.local_principal`): it may approve a request made through a token
or by another local user, never its own.  With ``--server URL --token T`` (docs/server.md,
"Remote CLI") ``list``, ``show``, ``approve`` and ``reject`` run as that token's holder
through the API, rendered from the same documents.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from vmvault import documents
from vmvault.cli import remote, render
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt
from vmvault.cli.plain import Listing
from vmvault.cli.render import emit_json, out
from vmvault.local_user import local_principal

approvals_app = typer.Typer(
    help="Operations that reduce protection, held for an admin's approval.",
    no_args_is_help=True,
)


@approvals_app.command("list")
def approvals_list(
    state: Annotated[
        str | None,
        typer.Option(
            help="Only this state: pending, approved, executed, failed, rejected, expired."
        ),
    ] = None,
    vault: Annotated[str | None, typer.Option(help="Only this vault's requests.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (1-1000).")] = 100,
    json_: JsonOpt = False,
) -> None:
    """List requests, newest first."""
    if remote.active():
        asked = {"state": state, "vault": vault, "limit": limit}
        docs = remote.get("/approvals", **{k: v for k, v in asked.items() if v is not None})
    else:
        found, _total = services().approvals.list_requests(state, vault, limit)
        docs = [documents.approval_doc(r) for r in found]
    if json_:
        emit_json(docs)
        return
    table = Listing(("ID", "STATE", "VAULT", "REQUESTED BY", "AT", "MODE", "WHAT"))
    for d in docs:
        at = datetime.fromisoformat(d["requested_at"])
        table.add(
            str(d["id"]), d["state"], d["vault"], d["requested_by"],
            render.short_time(at), d["mode"], d["summary"],
        )  # fmt: skip
    render.print_table(table)


@approvals_app.command("show")
def approvals_show(request_id: int, json_: JsonOpt = False) -> None:
    """Show one request and what became of it."""
    if remote.active():
        _show(remote.get(f"/approvals/{request_id}"), json_)
    else:
        _show(documents.approval_doc(services().approvals.get(request_id)), json_)


@approvals_app.command("approve")
def approvals_approve(request_id: int, json_: JsonOpt = False) -> None:
    """Approve a request (not your own) and run it at once; exit 1 when it then failed."""
    if remote.active():
        ended = remote.post(f"/approvals/{request_id}/approve")
    else:
        ended = documents.approval_doc(services().approvals.approve(request_id, local_principal()))
    _show(ended, json_)
    if ended["error_code"]:
        raise typer.Exit(1)


@approvals_app.command("reject")
def approvals_reject(request_id: int, json_: JsonOpt = False) -> None:
    """Reject a request (your own too: a withdrawal); nothing of it is done."""
    if remote.active():
        _show(remote.post(f"/approvals/{request_id}/reject"), json_)
    else:
        _show(
            documents.approval_doc(services().approvals.reject(request_id, local_principal())),
            json_,
        )


@approvals_app.command("run-due")
def approvals_run_due(json_: JsonOpt = False) -> None:
    """Run the delay-mode requests whose delay has passed and record the lapsed ones as
    expired (``vmvault serve`` does this every few seconds)."""
    done = services().approvals.run_due()
    if json_:
        emit_json([documents.approval_doc(r) for r in done])
        return
    for r in done:
        out.print(
            f"request {r.id}: {r.state.value} ({r.outcome or r.operation.summary})", markup=False
        )
    if not done:
        out.print("nothing due", markup=False)


def _show(doc: dict[str, Any], json_: bool) -> None:
    if json_:
        emit_json(doc)
        return
    for key in ("id", "state", "summary", "vault", "mode", "requested_by", "requested_at",
                "expires_at", "due_at", "decided_by", "decided_at", "executed_at", "outcome"):  # fmt: skip
        out.print(f"{key:13} {doc[key] if doc[key] is not None else '-'}", markup=False)
