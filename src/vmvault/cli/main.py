"""The ``vmvault`` command: parse → service → render, nothing else.

Exit codes: 0 success, 1 failure, 2 bad usage/input, 3 completed with warnings.
Errors are printed as ``error CODE: message`` and ``remedy: …`` on stderr; a traceback is
shown only for a bug, and only with ``VMVAULT_DEBUG=1``.
"""

from __future__ import annotations

import copy
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
import typer.main

from vmvault import documents
from vmvault.cli import (
    audit_trail,
    backups,
    coercion,
    copies,
    dashboard,
    points,
    policies,
    process,
    remote,
    render,
    restores,
    vms,
)
from vmvault.cli.access import audit_app, token_app
from vmvault.cli.approvals import approvals_app
from vmvault.cli.context import services
from vmvault.cli.files import export, files_app
from vmvault.cli.hosts import host_app
from vmvault.cli.jobs import jobs_app
from vmvault.cli.lab import lab_app
from vmvault.cli.notify import notify_app
from vmvault.cli.options import JsonOpt
from vmvault.cli.render import emit_json, out
from vmvault.cli.vaults import vault_app
from vmvault.cli.vms import vm_app
from vmvault.domain.approval import HeldForApproval
from vmvault.domain.errors import InternalError, VmvaultError
from vmvault.domain.inputs import check_encoded

coercion.install()  # str/int parameters without pydantic (see the module)

app = typer.Typer(
    help="vmvault: backups of libvirt KVM/QEMU virtual machines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root(
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            envvar="VMVAULT_SERVER",
            metavar="URL",
            help="Run the command against this vmvault server's REST API "
            "(https://HOST:8470); docs/server.md, 'Remote CLI'.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="VMVAULT_TOKEN",
            metavar="TOKEN",
            show_default=False,
            help="API token for --server (or VMVAULT_TOKEN_FILE: a file holding it).",
        ),
    ] = None,
) -> None:
    """vmvault: backups of libvirt KVM/QEMU virtual machines."""
    remote.configure(server, token, _env_path("VMVAULT_TOKEN_FILE"), _env_path("VMVAULT_SERVER_CA"))


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


app.add_typer(vault_app, name="vault")
app.add_typer(host_app, name="host")
app.add_typer(vm_app, name="vm")
app.add_typer(jobs_app, name="jobs")
app.add_typer(lab_app, name="lab")
app.add_typer(notify_app, name="notify")
app.add_typer(points.points_app, name="points")
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")
app.add_typer(approvals_app, name="approvals")
app.add_typer(files_app, name="files")
app.command()(export)
app.command()(backups.backup)
app.command()(copies.copy)
app.command()(restores.restore)
app.command("restore-test")(restores.restore_test)
app.command()(points.verify)
app.command()(points.gc)
app.add_typer(policies.policy_app, name="policy")
app.add_typer(policies.protection_app, name="protection")
app.command()(policies.protect)
app.command()(policies.unregister)
app.command()(dashboard.dashboard)
app.command()(vms.discover)
app.command()(vms.register)


@app.command()
def serve(
    listen: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of the REST API; beyond loopback it speaks HTTPS only; "
            "default VMVAULT_LISTEN or 127.0.0.1:8470."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Jobs run at once (default VMVAULT_JOB_WORKERS, 2).")
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(help="PEM certificate (chain) to serve HTTPS with (VMVAULT_TLS_CERT)."),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="Its PEM private key (VMVAULT_TLS_KEY).")
    ] = None,
) -> None:
    """Run the server: scheduler, job workers and the REST API, until SIGTERM/SIGINT.

    Settings and the TLS certificate are checked and the port bound before
    anything starts: a bad setting or certificate exits 2, a port in use 1.
    Beyond loopback the API is HTTPS only: with --tls-cert/--tls-key, or a
    self-signed pair kept in VMVAULT_HOME/tls (its fingerprint is logged).
    Then jobs a dead process left running are closed as failed and their VMs
    cleaned up; queued jobs ('--no-wait', the API, the scheduler) then run
    here. A crashed scheduler or worker is restarted; after 6 crashes in 300 s
    the server stops with exit 1. GET /api/v1/health answers 503 while a
    component is down."""
    import logging

    from vmvault.jobs.server import serve as run_server

    remote.refuse("it runs the server itself: its workers and libvirt connections are local")

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if workers is not None and not 1 <= workers <= 32:
        raise typer.BadParameter("--workers must be between 1 and 32")
    absolute = [p.absolute() if p else None for p in (tls_cert, tls_key)]
    run_server(services().settings, listen, workers, *absolute)


@app.command("errors")
def errors_cmd(
    json_: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print docs/errors.md.")] = False,
) -> None:
    """List every error code vmvault can report, with its message and remedy."""
    rows = remote.get("/errors") if remote.active() else documents.error_catalog()
    if markdown:
        sys.stdout.write(documents.catalog_markdown(rows))
        return
    if json_:
        emit_json(rows)
        return
    for row in rows:
        out.print(f"[bold]{row['code']}[/] ({row['kind']})")
        out.print(f"  {row['message']}", markup=False)
        out.print(f"  remedy: {row['remedy']}", markup=False)


def main(argv: list[str] | None = None) -> None:
    """The ``vmvault`` command (``argv``: the arguments, default ``sys.argv[1:]``); a command
    that changes something is written to the audit log with its exit code
    (:mod:`vmvault.cli.audit_trail`)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        _command(args)
    except SystemExit as exc:
        audit_trail.record(_tree, remote.command_args(args), exc.code)
        raise
    audit_trail.record(_tree, remote.command_args(args), 0)


def _tree() -> object:
    """The click command tree of :data:`app` (built only when a command is recorded)."""
    return typer.main.get_command(app)


def _branch(words: list[str]) -> typer.Typer:
    """:data:`app` with only the command or group that ``words`` (the command line without the
    root's options) name first: typer builds the click command of every parameter of every
    command it is given (~0.1 CPU-s for the whole tree, more than a remote ``vm list`` takes
    otherwise), and a command line runs one.  The whole app when they name none, or start with
    an option (``--help``): click's help, its errors and suggestions then see every command."""
    if not words or words[0].startswith("-"):
        return app
    commands = [
        c
        for c in app.registered_commands
        if c.callback and (c.name or typer.main.get_command_name(c.callback.__name__)) == words[0]
    ]
    groups = [g for g in app.registered_groups if g.name == words[0]]
    if len(commands) + len(groups) != 1:
        return app
    branch = copy.copy(app)
    branch.registered_commands, branch.registered_groups = commands, groups
    return branch


def _command(args: list[str]) -> None:
    try:
        for arg in args:
            check_encoded(arg, "argument")
        words = remote.command_args(args)
        remote.name_commands(lambda: audit_trail.describe(_tree(), words))
        _branch(words)(args=args, prog_name="vmvault")
    except VmvaultError as exc:
        sys.exit(render.error(exc))
    except HeldForApproval as exc:  # not done: waits for an admin (docs/approvals.md)
        sys.exit(render.held(documents.approval_doc(exc.request)))
    except KeyboardInterrupt:
        render.err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("VMVAULT_DEBUG"):
            traceback.print_exc()
        sys.exit(render.error(InternalError(f"{type(exc).__name__}: {exc}")))


def run() -> None:
    """The console script: :func:`main` in a process set up and ended by
    :mod:`vmvault.cli.process`."""
    process.start()
    try:
        main()
    except SystemExit as exc:
        process.leave(exc.code)
    process.leave(0)
