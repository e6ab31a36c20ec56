"""``vmvault notify``: notification targets per vault and event (docs/notifications.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from vmvault import documents
from vmvault.cli import remote, render
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt, VaultOpt
from vmvault.cli.plain import Listing
from vmvault.cli.render import emit_json, out
from vmvault.domain.errors import InvalidInput
from vmvault.domain.notification import Channel, parse_events

notify_app = typer.Typer(
    help="Notifications: webhooks and e-mail on failed, overdue … backups.",
    no_args_is_help=True,
)


@notify_app.command("add")
def add(
    vault: VaultOpt = None,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="POST JSON messages to this http(s) URL.")
    ] = None,
    email: Annotated[
        str | None, typer.Option("--email", help="Send e-mail to this address.")
    ] = None,
    events: Annotated[
        str,
        typer.Option(
            "--events",
            help="Comma-separated: failed, overdue, warnings, verify-failed, approval (or all).",
        ),
    ] = "failed,overdue,verify-failed",
    json_: JsonOpt = False,
) -> None:
    """Add a target: one webhook or one e-mail address, for one vault and some events."""
    if (webhook is None) == (email is None):
        raise InvalidInput("give exactly one of --webhook URL and --email ADDRESS", what="target")
    wanted = parse_events(events)
    channel = Channel.WEBHOOK if webhook is not None else Channel.EMAIL
    if remote.active():
        body = {"vault": vault, "webhook": webhook, "email": email}
        doc = remote.post("/notifications", body | {"events": [e.value for e in wanted]})
    else:
        target = services().notifications.add_target(vault, channel, webhook or email or "", wanted)
        doc = documents.notify_target_doc(target)
    if json_:
        emit_json(doc)
    else:
        out.print(
            f"target {doc['id']}: {doc['channel']} {doc['address']} "
            f"(vault {doc['vault']}; {', '.join(doc['events'])})",
            markup=False,
        )


@notify_app.command("list")
def list_targets(
    vault: Annotated[str | None, typer.Option("--vault", help="Only this vault's targets.")] = None,
    json_: JsonOpt = False,
) -> None:
    """The notification targets."""
    if remote.active():
        docs = remote.get("/notifications", vault=vault)
    else:
        docs = [
            documents.notify_target_doc(t) for t in services().notifications.list_targets(vault)
        ]
    if json_:
        emit_json(docs)
        return
    if not docs:
        out.print("no notification target (add one with 'vmvault notify add')")
        return
    table = Listing(("id", "vault", "channel", "address", "events"))
    for d in docs:
        table.add(str(d["id"]), d["vault"], d["channel"], d["address"], ",".join(d["events"]))
    render.print_table(table)


@notify_app.command("remove")
def remove(target_id: Annotated[int, typer.Argument(help="The target's id.")]) -> None:
    """Remove a target (its undelivered messages with it)."""
    if remote.active():
        remote.delete(f"/notifications/{target_id}")
    else:
        services().notifications.remove_target(target_id)
    out.print(f"target {target_id} removed", markup=False)


@notify_app.command("outbox")
def outbox(
    target_id: Annotated[
        int | None, typer.Option("--target", help="Only this target's messages.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many of the newest (1-1000).")] = 100,
    json_: JsonOpt = False,
) -> None:
    """The newest messages of the outbox: pending, sent or failed, attempts, last error."""
    docs = [documents.outbox_doc(o) for o in services().notifications.outbox(limit, target_id)]
    if json_:
        emit_json(docs)
        return
    if not docs:
        out.print("the outbox is empty")
        return
    table = Listing(("id", "created", "target", "event", "state", "attempts", "last error"))
    for d in docs:
        t = d["target"]
        table.add(
            str(d["id"]), render.when(d["created_at"]),
            f"{t['id']} {t['channel']} {t['address']}", d["event"], d["state"],
            str(d["attempts"]), d["last_error"] or "-",
        )  # fmt: skip
    render.print_table(table)


@notify_app.command("test")
def test(
    target_id: Annotated[
        int | None, typer.Argument(help="One target's id (default: every target).")
    ] = None,
    vault: Annotated[
        str | None, typer.Option("--vault", help="Every target of this vault.")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Send a test message now; exit 1 when a target did not get it."""
    if remote.active():
        docs = remote.post("/notifications/test", {"id": target_id, "vault": vault})
    else:
        results = services().notifications.test(target_id, vault)
        docs = [documents.notify_test_doc(r) for r in results]
    if json_:
        emit_json(docs)
    else:
        for d in docs:
            t = d["target"]
            where = f"target {t['id']} ({t['channel']} {t['address']})"
            out.print(f"{where}: {'sent' if d['ok'] else 'not sent'}", markup=False)
            if d["error"] is not None:
                render.error_lines(d["error"])
    if not all(d["ok"] for d in docs):
        raise typer.Exit(render.EXIT_FAILED)
