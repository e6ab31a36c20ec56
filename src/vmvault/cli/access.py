"""``vmvault token …`` (API tokens) and ``vmvault audit list`` (docs/server.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from vmvault import documents
from vmvault.cli import remote, render
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt
from vmvault.cli.plain import Listing
from vmvault.cli.render import emit_json, out
from vmvault.domain.access import Role
from vmvault.domain.audit import local_actor
from vmvault.domain.job import parse_since
from vmvault.local_user import unix_user

token_app = typer.Typer(
    help="API tokens of the REST API and the web console.", no_args_is_help=True
)
audit_app = typer.Typer(
    help="The audit log: every change, by whom, from where.", no_args_is_help=True
)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="A name of the token's holder, e.g. ci-backups.")],
    role: Annotated[Role, typer.Option(help="What the token may do (docs/server.md, roles).")],
    json_: JsonOpt = False,
) -> None:
    """Create a token and print it — once: it is stored hashed and cannot be shown again.

    The token is alone on the last line of the output."""
    if remote.active():  # created by the token's holder (its name), as the API records
        doc = remote.post("/tokens", {"name": name, "role": role.value})
    else:
        token, text = services().tokens.create(name, role, local_actor(unix_user()))
        doc = documents.token_doc(token) | {"token": text}
    if json_:
        emit_json(doc)
        return
    out.print(
        f"token {doc['name']!r} created with role {doc['role']}; keep it now, it is not "
        "shown again:",
        markup=False,
    )
    out.print(doc["token"], markup=False)


@token_app.command("list")
def token_list(json_: JsonOpt = False) -> None:
    """List tokens (never their secrets), revoked ones included."""
    if remote.active():
        docs = remote.get("/tokens")
    else:
        docs = [documents.token_doc(t) for t in services().tokens.list_tokens()]
    if json_:
        emit_json(docs)
        return
    table = Listing(("NAME", "ROLE", "CREATED", "CREATED BY", "LAST USED", "REVOKED"))
    for t in docs:
        table.add(
            t["name"],
            t["role"],
            render.when(t["created_at"]),
            t["created_by"],
            render.when(t["last_used_at"]),
            render.when(t["revoked_at"]),
        )
    render.print_table(table)


@token_app.command("revoke")
def token_revoke(name: str, json_: JsonOpt = False) -> None:
    """Revoke a token: the next request that carries it is refused."""
    if remote.active():
        doc = remote.delete(f"/tokens/{remote.part(name)}")
    else:
        doc = documents.token_doc(services().tokens.revoke(name))
    if json_:
        emit_json(doc)
    else:
        out.print(f"token {doc['name']!r} revoked", markup=False)


@audit_app.command("list")
def audit_list(
    actor: Annotated[
        str | None, typer.Option(help="Only this actor: a token's name or local:USER.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only entries within, e.g. 24h.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many entries (1-1000).")] = 100,
    json_: JsonOpt = False,
) -> None:
    """List the audit log, newest first."""
    if remote.active():
        docs = remote.get("/audit", actor=actor, since=since, limit=limit)
    else:
        window = parse_since(since) if since is not None else None
        entries, _total = services().audit.list_entries(actor, window, limit)
        docs = [documents.audit_doc(e) for e in entries]
    if json_:
        emit_json(docs)
        return
    table = Listing(("AT", "ACTOR", "ROLE", "ACTION", "TARGET", "STATUS", "FROM"))
    for e in docs:
        table.add(
            render.when(e["at"]),
            e["actor"],
            e["role"] or "-",
            e["action"],
            e["target"] or "-",
            str(e["status"]),
            e["remote"],
        )
    render.print_table(table)
