"""Live progress bars for jobs run in the foreground (terminal only)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from vmvault.cli.context import services
from vmvault.cli.render import markup, out
from vmvault.domain.job import Job


@contextmanager
def live_progress(enabled: bool) -> Iterator[None]:
    """A Rich progress bar fed by the job runner's progress reports (terminal only)."""
    if not enabled or not out.is_terminal:
        yield
        return
    bars: dict[int, Any] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=out,
        transient=True,
    ) as progress:

        def observe(job: Job) -> None:
            if job.id not in bars:
                bars[job.id] = progress.add_task(
                    f"{job.type.value} {markup(job.vm_name or '')}", total=job.bytes_total or None
                )
            progress.update(bars[job.id], completed=job.bytes_done, total=job.bytes_total or None)

        runner = services().runner
        runner.observers.append(observe)
        try:
            yield
        finally:
            runner.observers.remove(observe)
