"""``vmvault host``: the libvirt hosts of each location."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vmvault import documents
from vmvault.cli import remote, render
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt, LimitOpt, OffsetOpt
from vmvault.cli.plain import Listing
from vmvault.cli.render import emit_json, out
from vmvault.domain.host_uri import DEFAULT_HOST_URI
from vmvault.domain.inputs import DEFAULT_PAGE, check_page
from vmvault.domain.vault import DEFAULT_LOCATION

host_app = typer.Typer(help="libvirt hosts and the location they belong to.", no_args_is_help=True)


@host_app.command("add")
def host_add(
    uri: Annotated[str, typer.Argument(help="libvirt URI")] = DEFAULT_HOST_URI,
    location: Annotated[str, typer.Option(help="Location of the host.")] = DEFAULT_LOCATION,
    no_check: Annotated[bool, typer.Option("--no-check", help="Do not connect first.")] = False,
    allow_command: Annotated[
        bool,
        typer.Option(
            "--allow-command",
            help="Accept a URI that makes libvirt run a local command "
            "(the ext transport, command= or netcat=).",
        ),
    ] = False,
    pull_tls: Annotated[
        str | None,
        typer.Option(
            "--pull-tls",
            metavar="DIR",
            help="No vmvault node runs on this host: any node backs its VMs up by pulling "
            "their disks over libvirt's NBD export with TLS, with the client certificates in "
            "DIR (ca-cert.pem, client-cert.pem, client-key.pem; docs/deployment.md).",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Add a libvirt host to a location (checks that it answers first)."""
    if remote.active():
        if allow_command:
            remote.refuse_option("--allow-command", "a server never runs a command a URI names")
        body: dict[str, object] = {"uri": uri, "location": location, "check": not no_check}
        if pull_tls is not None:  # a server older than pulls refuses the field (extra=forbid)
            body["pull_tls"] = pull_tls
        doc = remote.post("/hosts", body)
    else:
        doc = documents.host_doc(
            services().vaults.add_host(
                uri, location, check=not no_check, allow_command=allow_command, pull_tls=pull_tls
            )
        )
    if json_:
        emit_json(doc)
    else:
        pulled = f", backed up by pulling over NBD with TLS ({doc.get('pull_tls')})"
        out.print(
            f"host {doc['uri']} ({doc['hostname'] or '?'}) added to location {doc['location']}"
            + (pulled if doc.get("pull_tls") else ""),
            markup=False,
        )


@host_app.command("list")
def host_list(
    limit: LimitOpt = DEFAULT_PAGE, offset: OffsetOpt = 0, json_: JsonOpt = False
) -> None:
    """List hosts by location and URI, a page at a time."""
    check_page(limit, offset)
    if remote.reads():
        docs, total = remote.page("/hosts", limit=limit, offset=offset)
    else:
        found, total = services().vaults.hosts_page(None, limit, offset)
        docs = [documents.host_doc(h) for h in found]
    render.listing(docs, offset, total, json_, _host_table)


def _host_table(docs: list[dict[str, Any]]) -> Listing:
    """Host documents (:func:`documents.host_doc`) as a table."""
    table = Listing(("URI", "LOCATION", "HOSTNAME", "CLUSTER-MANAGED VMS", "BACKED UP BY"))
    for h in docs:
        by = "a pull over NBD+TLS" if h.get("pull_tls") else "its node"
        table.add(
            h["uri"],
            h["location"],
            h["hostname"] or "-",
            ", ".join(h["cluster_managed"]) or "-",
            by,
        )
    return table


@host_app.command("update")
def host_update(
    uri: Annotated[str, typer.Argument(help="libvirt URI")],
    cluster_managed: Annotated[
        list[str] | None,
        typer.Option(
            "--cluster-managed",
            help="A VM (name or uuid) a cluster manager owns: never paused, shut off or "
            "replaced by vmvault; repeatable.",
        ),
    ] = None,
    not_cluster_managed: Annotated[
        list[str] | None,
        typer.Option("--not-cluster-managed", help="Take a VM off that list; repeatable."),
    ] = None,
    pull_tls: Annotated[
        str | None,
        typer.Option(
            "--pull-tls",
            metavar="DIR",
            help="Back this host's VMs up by pulling over NBD with TLS from any node, with "
            "the client certificates in DIR (as host add --pull-tls); also changes DIR.",
        ),
    ] = None,
    no_pull_tls: Annotated[
        bool,
        typer.Option("--no-pull-tls", help="Back this host's VMs up by its own node again."),
    ] = False,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="With --pull-tls: do not check DIR's files.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Change a host's settings: the VMs a cluster manager owns; how its VMs are backed up
    (by its node, or pulled: refused while a job of its VMs runs)."""
    marks, unmarks = cluster_managed or [], not_cluster_managed or []
    if remote.active():
        body: dict[str, Any] = {"cluster_managed": marks, "not_cluster_managed": unmarks}
        # only when given: a server older than them refuses the fields (extra=forbid)
        if pull_tls is not None:
            body["pull_tls"] = pull_tls
        if no_pull_tls:
            body["no_pull_tls"] = True
        if no_check:
            body["check"] = False
        doc = remote.patch(f"/hosts/{remote.part(uri)}", body)
    else:
        doc = documents.host_doc(
            services().inventory.update_host(
                uri, marks, unmarks, pull_tls=pull_tls, no_pull_tls=no_pull_tls, check=not no_check
            )
        )
    if json_:
        emit_json(doc)
        return
    from vmvault.domain.pull import backed_up_by  # only here: `host list` starts without it

    listed = ", ".join(doc["cluster_managed"]) or "none"
    by = backed_up_by(doc.get("pull_tls"))  # an older server's answer has none: its node
    out.print(f"host {doc['uri']}: cluster-managed VMs: {listed}; {by}", markup=False)


@host_app.command("remove")
def host_remove(uri: str) -> None:
    """Forget a host."""
    if remote.active():
        remote.delete(f"/hosts/{remote.part(uri)}")
    else:
        services().vaults.remove_host(uri)
    out.print(f"host {uri} removed", markup=False)
