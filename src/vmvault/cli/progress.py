"""Live progress bars for jobs run in the foreground (terminal only): fed by the job runner
locally (:func:`live_progress`), by the polled job documents remotely
(:mod:`vmvault.cli.remote_jobs`); one drawing for both (:func:`job_bars`), which imports Rich's
progress only when it draws."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from vmvault.cli.context import services
from vmvault.cli.render import as_doc, markup, out
from vmvault.domain.job import Job

Show = Callable[[dict[str, Any]], None]


@contextmanager
def job_bars(enabled: bool) -> Iterator[Show | None]:
    """A function that shows a job document's progress, a Rich bar per job; None when not
    ``enabled`` or stdout is no terminal."""
    if not enabled or not out.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    bars: dict[int, Any] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=out.rich(),
        transient=True,
    ) as progress:

        def show(doc: dict[str, Any]) -> None:
            total = doc["bytes_total"] or None
            if doc["id"] not in bars:
                label = f"{doc['type']} {markup(doc['vm_name'] or '')}"
                bars[doc["id"]] = progress.add_task(label, total=total)
            progress.update(bars[doc["id"]], completed=doc["bytes_done"], total=total)

        yield show


@contextmanager
def live_progress(enabled: bool) -> Iterator[None]:
    """Bars fed by the job runner's progress reports (terminal only)."""
    with job_bars(enabled) as show:
        if show is None:
            yield
            return

        def observe(job: Job) -> None:
            show(as_doc(job))

        runner = services().runner
        runner.observers.append(observe)
        try:
            yield
        finally:
            runner.observers.remove(observe)
