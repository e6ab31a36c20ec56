"""Turning domain objects into the CLI's JSON documents and tables (:class:`Listing`).

JSON field names are a public contract (see documents.py): scripts and monitoring rely on them.
``out`` and ``err`` print plain lines and listings without importing Rich, and make their Rich
console for anything else (:mod:`vmvault.cli.plain`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from vmvault.cli import plain
from vmvault.cli.plain import LazyConsole, Listing
from vmvault.domain.errors import VmvaultError
from vmvault.domain.inputs import MAX_PAGE, shown

if TYPE_CHECKING:  # the domain model is imported where a command uses it, not by every one
    from rich.text import Text

    from vmvault.domain.job import Job


def _out() -> Any:
    from vmvault.cli.consoles import make_out

    return make_out(_WIDTH)


def _err() -> Any:
    from vmvault.cli.consoles import make_err

    return make_err()


# Piped output (scripts, tests) gets wide tables instead of truncated cells.
_WIDTH = None if sys.stdout.isatty() else 250
#: The consoles of stdout and stderr (vmvault.cli.consoles), made when Rich is needed.
out: Any = LazyConsole(_out, stderr=False, fixed=_WIDTH)
err: Any = LazyConsole(_err, stderr=True, fixed=None)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WARNINGS = 0, 1, 2, 3


def short_time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def held(doc: dict[str, Any]) -> int:
    """A call held for approval (its request's document, docs/approvals.md) on stderr — stdout
    stays empty, ``--json`` too — locally and remotely alike; the exit code 4."""
    from vmvault.domain.approval import EXIT_HELD

    err.print(f"held for approval: request {doc['id']} ({doc['summary']})", markup=False)
    due, expires = (
        datetime.fromisoformat(t) if t else None for t in (doc["due_at"], doc["expires_at"])
    )
    if due is not None:
        when = f"runs at {short_time(due)} unless an admin rejects it"
    else:
        when = f"expires at {short_time(expires)}"
    err.print(
        f"another admin approves it with 'vmvault approvals approve {doc['id']}'; {when}",
        markup=False,
    )
    return EXIT_HELD


def page_note(shown: int, offset: int, total: int) -> None:
    """Under one page of a longer listing, its table or its ``--json``: which items of how
    many, and how to see the next ones (on stderr: stdout stays what a script parses)."""
    if shown == 0 and offset >= total > 0:  # past the end
        err.print(f"no items at --offset {offset}: there are {total}", markup=False)
    elif shown < total and (offset or shown):
        more = f"; --offset {offset + shown} for the next" if offset + shown < total else ""
        err.print(
            f"{offset + 1}-{offset + shown} of {total} shown{more} "
            f"(--limit: up to {MAX_PAGE} a page)",
            markup=False,
        )


def listing(
    docs: list[dict[str, Any]],
    offset: int,
    total: int,
    json_: bool,
    table: Callable[[list[dict[str, Any]]], Listing],
) -> None:
    """One page of a listing on stdout — its documents as ``--json``, or ``table(docs)`` —
    then its :func:`page_note`: how every paged list prints."""
    if json_:
        emit_json(docs)
    else:
        print_table(table(docs))
    page_note(len(docs), offset, total)


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def error(exc: VmvaultError) -> int:
    """An error's two lines on stderr; its exit code."""
    error_lines(exc.as_dict())
    return EXIT_USAGE if exc.kind == "usage" else EXIT_FAILED


def error_lines(e: dict[str, Any]) -> None:
    """The two lines of an error's document (code, message, remedy) on stderr, each one line:
    line breaks escaped too."""
    err.print(f"error {e['code']}: {shown(e['message'] or '')}", markup=False)
    err.print(f"remedy: {shown(e['remedy'] or '')}", markup=False)


def markup(value: object) -> str:
    """``value`` for a string printed with Rich markup on: its brackets are not markup."""
    return plain.escape(str(value))


# --- tables ------------------------------------------------------------------------------------


def print_table(listing: Listing) -> None:
    """Print a listing's table on stdout, laid out as Rich lays out ``listing.table()``.

    Rich measures, pads, wraps and crops every cell through its renderables: ~1-2 ms per row
    of nine cells, more than the rest of a remote ``vm list`` of 100 VMs takes.  So a listing
    that fits the console's width is written without Rich when it can be
    (:meth:`LazyConsole.print_listing`: plain cells and a bold or plain header, or piped),
    else laid out here
    (:meth:`Listing.laid_out`, the same rule) in one :class:`Text` of the same characters and
    styles; one too wide (Rich then wraps its cells) or holding what Rich lays out itself (no
    header, a ``[`` in a header, a character that is not printable) is printed by Rich. tests/unit/test_cli_tables.py compares them all with Rich's."""
    if isinstance(out, LazyConsole) and out.print_listing(listing):
        return
    lines = _listing(listing, out.width)
    if lines is None:
        out.print(listing.table())
    else:
        out.print(lines, soft_wrap=True, crop=False)


def _listing(listing: Listing, width: int) -> Text | None:
    """``listing`` laid out as Rich lays out its table in ``width``, styles included; None
    where Rich lays it out otherwise (:meth:`Listing.laid_out`)."""
    from rich.text import Text

    laid = listing.laid_out(width)
    if laid is None:
        return None
    styles = [[""] * len(listing.headers), *([s for _, s in row] for row in listing.rows)]
    lines = []
    for i, (row, row_styles) in enumerate(zip(laid, styles, strict=True)):
        line = Text(style=listing.header_style if i == 0 else "")
        for (text, pad), style in zip(row, row_styles, strict=True):
            line.append(" ")  # padded to its column's width in its own style, as Rich does
            line.append(text, style=style)
            line.append(" " * pad, style=style)
            line.append(" ")
        lines.append(line)
    return Text("\n").join(lines)


STATE_STYLE = {
    "completed": "green",
    "completed-with-warnings": "yellow",
    "failed": "red",
    "in-progress": "cyan",
    "queued": "blue",
    "cancelling": "magenta",
    "cancelled": "magenta",
}


def when(value: str | None) -> str:
    """A document's ISO timestamp as :func:`short_time` shows it."""
    return short_time(datetime.fromisoformat(value)) if value else "-"


def as_doc(job: Job | dict[str, Any]) -> dict[str, Any]:
    """A job's document (the renderers below work from documents, local and remote alike)."""
    if isinstance(job, dict):
        return job
    from vmvault.documents import job_doc

    return job_doc(job)


def vm_table(vms: list[dict[str, Any]]) -> Listing:
    """VM documents (:func:`documents.vm_doc`) as a table."""
    headers = ("NAME", "HOST", "GROUP", "UUID", "POWER", "STATE", "DISKS", "AGENT", "CLUSTER")
    table = Listing(headers, no_wrap=frozenset(("NAME", "UUID")))
    for vm in vms:
        state = vm["state"] + (" (vanished)" if vm["vanished_at"] else "")
        disks = ",".join(d["target"] + ("*" if d["excluded"] else "") for d in vm["disks"])
        table.add(
            vm["name"],
            vm["host"],
            vm["group"],
            vm["uuid"],
            vm["power_state"],
            state,
            disks or "-",
            agent(vm),
            "managed" if vm["cluster_managed"] else "-",
        )
    return table


def label(vm: dict[str, Any]) -> str:
    """A VM document's name in messages, as :attr:`VmItem.label`: HOST/NAME."""
    return f"{vm['host']}/{vm['name']}"


def agent(vm: dict[str, Any]) -> str:
    """A VM document's guest agent: its version, ``channel`` or ``none``."""
    return str(vm["agent_version"] or ("channel" if vm["agent_channel"] else "none"))


def job_table(jobs: list[dict[str, Any]]) -> Listing:
    """Job documents (:func:`documents.job_doc`) as a table."""
    table = Listing(("ID", "TYPE", "VM", "STATE", "STARTED", "DURATION", "RESULT"))
    for job in jobs:
        duration = f"{job['duration_s']:.1f}s" if job["duration_s"] is not None else "-"
        warnings = job["warnings"]
        result = job["error_code"] or (f"{len(warnings)} warning(s)" if warnings else "")
        parent = job["parent"]
        table.add(
            str(job["id"]),
            job["type"] + (f" (of {parent})" if parent is not None else ""),
            job["vm_name"] or "-",
            (job["state"], STATE_STYLE.get(job["state"], "")),
            when(job["started_at"]),
            duration,
            result,
        )
    return table


def job_result_line(job: Job | dict[str, Any]) -> None:
    doc = as_doc(job)
    style = STATE_STYLE.get(doc["state"], "")
    subject = f" {markup(doc['vm_name'])}" if doc["vm_name"] else ""
    out.print(f"job {doc['id']} {doc['type']}{subject}: [{style}]{doc['state']}[/]")
    for w in doc["warnings"]:
        out.print(f"  warning: {shown(w)}", markup=False)
    if doc["error_code"]:
        error_lines({"code": doc["error_code"], "message": doc["message"], "remedy": doc["remedy"]})


def exit_code_for(jobs: Sequence[Job | dict[str, Any]]) -> int:
    from vmvault.domain.job import JobState

    docs = [as_doc(j) for j in jobs]
    if any(d["error_code"] or d["state"] == JobState.CANCELLED.value for d in docs):
        return EXIT_FAILED
    if any(d["warnings"] for d in docs):
        return EXIT_WARNINGS
    return EXIT_OK


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)
