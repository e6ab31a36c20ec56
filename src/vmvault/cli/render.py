"""Turning domain objects into the CLI's JSON documents and Rich tables.

JSON field names are a public contract (see documents.py): scripts and monitoring rely on them.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from vmvault.domain.errors import VmvaultError
from vmvault.domain.inputs import shown
from vmvault.domain.job import Job, JobState
from vmvault.domain.vm import VmItem


class SafeConsole(Console):
    """A Rich console that never writes a control character it was handed as text.

    Names, paths, messages and log lines hold what users, guests and hosts typed; an escape
    sequence among them would drive the terminal.  Every string printed (and every table
    cell) is rendered with its control characters escaped (:func:`shown`); line breaks and
    tabs stay.  Data printed with markup on goes through :func:`markup`, table cells through
    :func:`add_row`, so brackets in data are never read as Rich markup either.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(shown(text, newlines=True), **kwargs)


# Piped output (scripts, tests) gets wide tables instead of truncated cells.
_WIDTH = None if sys.stdout.isatty() else 250
out = SafeConsole(highlight=False, soft_wrap=True, width=_WIDTH)
err = SafeConsole(stderr=True, highlight=False, soft_wrap=True)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WARNINGS = 0, 1, 2, 3


def short_time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def error(exc: VmvaultError) -> int:
    """The two lines of an error on stderr (each one line: line breaks escaped too)."""
    err.print(f"error {exc.code}: {shown(exc.text)}", markup=False)
    err.print(f"remedy: {shown(exc.remedy_text)}", markup=False)
    return EXIT_USAGE if exc.kind == "usage" else EXIT_FAILED


def markup(value: object) -> str:
    """``value`` for a string printed with Rich markup on: its brackets are not markup."""
    return escape(str(value))


def add_row(table: Table, *cells: str | Text) -> None:
    """Add a row of data: plain text (no markup), control characters escaped."""
    table.add_row(*(c if isinstance(c, Text) else Text(shown(c)) for c in cells))


# --- tables ------------------------------------------------------------------------------------

STATE_STYLE = {
    "completed": "green",
    "completed-with-warnings": "yellow",
    "failed": "red",
    "in-progress": "cyan",
    "queued": "blue",
    "cancelling": "magenta",
    "cancelled": "magenta",
}


def vm_table(vms: list[VmItem]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "HOST", "GROUP", "UUID", "POWER", "STATE", "DISKS", "AGENT", "CLUSTER"):
        table.add_column(col, no_wrap=col in ("NAME", "UUID"))
    for vm in vms:
        state = vm.state.value + (" (vanished)" if vm.vanished_at else "")
        disks = ",".join(d.target + ("*" if d.excluded else "") for d in vm.effective_disks)
        add_row(
            table,
            vm.name,
            vm.hostname,
            vm.group,
            vm.uuid,
            vm.power_state.value,
            state,
            disks or "-",
            vm.agent_version or ("channel" if vm.agent_channel else "none"),
            "managed" if vm.cluster_managed else "-",
        )
    return table


def job_table(jobs: list[Job]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("ID", "TYPE", "VM", "STATE", "STARTED", "DURATION", "RESULT"):
        table.add_column(col)
    for job in jobs:
        duration = f"{job.duration.total_seconds():.1f}s" if job.duration is not None else "-"
        result = job.error_code or (f"{len(job.warnings)} warning(s)" if job.warnings else "")
        style = STATE_STYLE.get(job.state.value, "")
        add_row(
            table,
            str(job.id),
            job.type.value + (f" (of {job.parent_id})" if job.parent_id is not None else ""),
            job.vm_name or "-",
            Text(job.state.value, style=style),
            short_time(job.started_at),
            duration,
            result,
        )
    return table


def job_result_line(job: Job) -> None:
    style = STATE_STYLE.get(job.state.value, "")
    subject = f" {markup(job.vm_name)}" if job.vm_name else ""
    out.print(f"job {job.id} {job.type.value}{subject}: [{style}]{job.state.value}[/]")
    for w in job.warnings:
        out.print(f"  warning: {shown(w)}", markup=False)
    if job.error_code:
        err.print(f"error {job.error_code}: {shown(job.message or '')}", markup=False)
        err.print(f"remedy: {shown(job.remedy or '')}", markup=False)


def exit_code_for(jobs: list[Job]) -> int:
    if any(j.error_code or j.state is JobState.CANCELLED for j in jobs):
        return EXIT_FAILED
    if any(j.warnings for j in jobs):
        return EXIT_WARNINGS
    return EXIT_OK


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)
