"""Turning domain objects into the CLI's JSON documents and Rich tables.

JSON field names are a public contract (see documents.py): scripts and monitoring rely on them.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from vmvault.domain.errors import VmvaultError
from vmvault.domain.job import Job, JobState
from vmvault.domain.vm import VmItem

# Piped output (scripts, tests) gets wide tables instead of truncated cells.
_WIDTH = None if sys.stdout.isatty() else 250
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WARNINGS = 0, 1, 2, 3


def short_time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def error(exc: VmvaultError) -> int:
    err.print(f"error {exc.code}: {exc.text}", markup=False)
    err.print(f"remedy: {exc.remedy_text}", markup=False)
    return EXIT_USAGE if exc.kind == "usage" else EXIT_FAILED


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
    for col in ("NAME", "HOST", "GROUP", "UUID", "POWER", "STATE", "DISKS", "AGENT"):
        table.add_column(col, no_wrap=col in ("NAME", "UUID"))
    for vm in vms:
        state = vm.state.value + (" (vanished)" if vm.vanished_at else "")
        disks = ",".join(d.target + ("*" if d.excluded else "") for d in vm.disks)
        table.add_row(
            vm.name,
            vm.hostname,
            vm.group,
            vm.uuid,
            vm.power_state.value,
            state,
            disks or "-",
            vm.agent_version or ("channel" if vm.agent_channel else "none"),
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
        table.add_row(
            str(job.id),
            job.type.value,
            job.vm_name or "-",
            f"[{style}]{job.state.value}[/]",
            short_time(job.started_at),
            duration,
            result,
        )
    return table


def job_result_line(job: Job) -> None:
    style = STATE_STYLE.get(job.state.value, "")
    subject = f" {job.vm_name}" if job.vm_name else ""
    out.print(f"job {job.id} {job.type.value}{subject}: [{style}]{job.state.value}[/]")
    for w in job.warnings:
        out.print(f"  warning: {w}", markup=False)
    if job.error_code:
        err.print(f"error {job.error_code}: {job.message}", markup=False)
        err.print(f"remedy: {job.remedy}", markup=False)


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
