"""The ``vmvault`` command: parse → service → render, nothing else.

Exit codes: 0 success, 1 failure, 2 bad usage/input, 3 completed with warnings.
Errors are printed as ``error CODE: message`` and ``remedy: …`` on stderr; a traceback is
shown only for a bug, and only with ``VMVAULT_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeGuard

import typer
import typer.main

from vmvault.cli import audit_trail, coercion, process, remote, render
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt
from vmvault.cli.render import emit_json, out
from vmvault.domain.errors import InternalError, VmvaultError
from vmvault.domain.inputs import check_encoded

if TYPE_CHECKING:
    from vmvault.domain.approval import HeldForApproval

coercion.install()  # str/int parameters without pydantic (see the module)


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


def errors_cmd(
    json_: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print docs/errors.md.")] = False,
) -> None:
    """List every error code vmvault can report, with its message and remedy."""
    from vmvault import documents

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


#: The command tree, in the order of ``--help``: a command's or group's name, the module that
#: defines it and its name there.  A command line imports only the module of the command it
#: names (:func:`_branch`): each module imports what its commands use, so a remote ``vm list``
#: never imports another command's documents, domain model or services.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("vault", "vmvault.cli.vaults", "vault_app"),
    ("host", "vmvault.cli.hosts", "host_app"),
    ("vm", "vmvault.cli.vms", "vm_app"),
    ("jobs", "vmvault.cli.jobs", "jobs_app"),
    ("lab", "vmvault.cli.lab", "lab_app"),
    ("notify", "vmvault.cli.notify", "notify_app"),
    ("points", "vmvault.cli.points", "points_app"),
    ("token", "vmvault.cli.access", "token_app"),
    ("audit", "vmvault.cli.access", "audit_app"),
    ("approvals", "vmvault.cli.approvals", "approvals_app"),
    ("files", "vmvault.cli.files", "files_app"),
    ("export", "vmvault.cli.files", "export"),
    ("backup", "vmvault.cli.backups", "backup"),
    ("copy", "vmvault.cli.copies", "copy"),
    ("restore", "vmvault.cli.restores", "restore"),
    ("restore-test", "vmvault.cli.restores", "restore_test"),
    ("verify", "vmvault.cli.points", "verify"),
    ("gc", "vmvault.cli.points", "gc"),
    ("policy", "vmvault.cli.policies", "policy_app"),
    ("protection", "vmvault.cli.protection", "protection_app"),
    ("protect", "vmvault.cli.protection", "protect"),
    ("unregister", "vmvault.cli.protection", "unregister"),
    ("dashboard", "vmvault.cli.dashboard", "dashboard"),
    ("discover", "vmvault.cli.vms", "discover"),
    ("register", "vmvault.cli.vms", "register"),
    ("serve", __name__, "serve"),
    ("errors", __name__, "errors_cmd"),
)


def tree(names: frozenset[str] | None = None) -> typer.Typer:
    """The ``vmvault`` app with the commands and groups of :data:`COMMANDS` named in ``names``
    (None: every one), their modules imported now."""
    built = typer.Typer(
        help="vmvault: backups of libvirt KVM/QEMU virtual machines.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    built.callback()(root)
    for name, module, attr in COMMANDS:
        if names is None or name in names:
            __import__(module)  # as an import statement: -X importtime lists it (import_module not)
            command = getattr(sys.modules[module], attr)
            if isinstance(command, typer.Typer):
                built.add_typer(command, name=name)
            else:
                built.command(name)(command)
    return built


@cache
def _whole() -> typer.Typer:
    return tree()


def __getattr__(name: str) -> Any:
    """``app``: the whole command tree, built (every command module imported) when first
    asked for."""
    if name == "app":
        return _whole()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    """The click command tree of the whole app (built only when a command is recorded)."""
    return typer.main.get_command(_whole())


def _branch(words: list[str]) -> typer.Typer:
    """The app with only the command or group that ``words`` (the command line without the
    root's options) name first: its module alone is imported, and typer builds the click
    command of that branch alone (of every parameter of every command it is given: ~0.1
    CPU-s for the whole tree).  The whole app when they name none, or start with an option
    (``--help``): click's help, its errors and suggestions then see every command."""
    if not words or words[0].startswith("-") or words[0] not in {c[0] for c in COMMANDS}:
        return _whole()
    return tree(frozenset(words[:1]))


def _command(args: list[str]) -> None:
    try:
        for arg in args:
            check_encoded(arg, "argument")
        words = remote.command_args(args)
        remote.name_commands(lambda: audit_trail.describe(_tree(), words))
        _branch(words)(args=args, prog_name="vmvault")
    except remote.LocalGone:
        # the local socket's server stopped during a read, before anything was printed (a
        # read asks first, then prints): the same command again, reading the catalog itself
        remote.read_locally()
        _command(args)
    except VmvaultError as exc:
        sys.exit(render.error(exc))
    except KeyboardInterrupt:
        render.err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if _held(exc):  # not done: waits for an admin (docs/approvals.md)
            from vmvault.documents import approval_doc

            sys.exit(render.held(approval_doc(exc.request)))
        if os.environ.get("VMVAULT_DEBUG"):
            import traceback  # a bug's only: ~4 ms of every command's start otherwise

            traceback.print_exc()
        sys.exit(render.error(InternalError(f"{type(exc).__name__}: {exc}")))


def _held(exc: Exception) -> TypeGuard[HeldForApproval]:
    """Whether ``exc`` is a call held for approval: only a command that imported the approvals'
    model can raise one, so a command that did not (a listing) does not import it here."""
    approval = sys.modules.get("vmvault.domain.approval")
    return approval is not None and isinstance(exc, approval.HeldForApproval)


def run() -> None:
    """The console script: :func:`main` in a process set up and ended by
    :mod:`vmvault.cli.process`."""
    process.start()
    try:
        main()
    except SystemExit as exc:
        process.leave(exc.code)
    process.leave(0)
