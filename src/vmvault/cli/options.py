"""Options every command shares (one definition each)."""

from __future__ import annotations

from typing import Annotated

import typer

VmsArg = Annotated[list[str], typer.Argument(help="VMs: uuid, NAME, HOST/NAME or GROUP/NAME.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait", help="Run in the foreground (default) or queue it for 'vmvault serve'."
    ),
]
VaultOpt = Annotated[
    str | None,
    typer.Option("--vault", help="Vault to use (default: VMVAULT_VAULT or the only one)."),
]
ExcludeDiskOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude-disk",
        help="Leave this disk (target: vdb, sdc …) out of every backup; repeatable.",
    ),
]
RequireOpt = Annotated[
    str | None,
    typer.Option(
        "--require",
        metavar="LEVEL",
        help="application-consistent | file-system-consistent: a VM that cannot give that "
        "level fails its backup (CONSISTENCY_NOT_MET) and keeps no point.",
    ),
]
#: A page of a long listing (``vm list``, ``protection list``), as the API's ``limit`` and
#: ``offset`` (domain.inputs.check_page is the rule).
LimitOpt = Annotated[int, typer.Option("--limit", help="At most this many (1-1000).")]
OffsetOpt = Annotated[int, typer.Option("--offset", help="Skip this many first.")]
