"""`vmvault restore --set ID`: every point of a backup set, one restore job per VM.

Two modes make sense for a set (docs/sets.md, "Restoring a set"):

* ``--as-new SUFFIX``: each VM as a new VM named ``<name>-<SUFFIX>`` (new uuid and MACs),
  on ``--host`` or the VM's own host, disks in ``--dir`` or the default pool;
* ``--disks-only --dir DIR``: every VM's images and domain XML into ``DIR``
  (``<name>-<disk>.<format>``, ``<name>.xml``: the names do not collide).

``--replace`` is refused: overwriting several running VMs one after the other would not give
back the set's single instant (each VM's switch happens at its own moment).  Every VM's
target is checked first, as a single restore checks its own (names free, the directory usable
with the space, no file in the way): one bad target refuses the whole set before anything is
restored.  The restores then run one after another; the first that fails stops the others
(those done stay, named in the output).  There is no ``--no-wait`` (restores run in the
foreground: ``restore --set --no-wait`` is refused as bad usage).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from vmvault import documents
from vmvault.cli import render
from vmvault.cli.context import services
from vmvault.cli.progress import live_progress
from vmvault.cli.render import emit_json, out
from vmvault.domain.job import Job
from vmvault.domain.restore import RestoreMode

if TYPE_CHECKING:
    from vmvault.services.jobs import JobOutcome


def restore_set(
    set_id: str,
    suffix: str | None,
    disks_only: bool,
    directory: str | None,
    host: str | None,
    start: bool,
    fmt: str,
    overwrite: bool,
    from_vault: str | None,
    json_: bool,
) -> NoReturn:
    if (suffix is not None) == disks_only:
        raise typer.BadParameter("with --set give exactly one of --as-new SUFFIX, --disks-only")
    if disks_only and directory is None:
        raise typer.BadParameter("--disks-only needs --dir DIR")
    points = services().backup_sets.points(set_id)
    runs: list[Callable[[], JobOutcome[Any]]] = []
    for p in points:  # every VM's target is checked before the first restore starts
        if disks_only:
            assert directory is not None
            runs.append(services().points.prepare_disks(
                p.vm_uuid, p.id, directory, fmt=fmt, overwrite=overwrite, from_vault=from_vault,
            ))  # fmt: skip
        else:
            runs.append(services().restores.prepare(
                p.vm_uuid, p.id, RestoreMode.AS_NEW, name=f"{p.vm_name}-{suffix}",
                directory=directory, host=host, start=start, from_vault=from_vault,
            ))  # fmt: skip
    jobs: list[Job] = []
    docs: list[dict[str, Any]] = []
    with live_progress(not json_):
        for p, run in zip(points, runs, strict=True):
            done = run()
            jobs.append(done.job)
            docs.append(documents.job_doc(done.job) | {"point": p.id, "vm_name": p.vm_name})
            if done.result is None:
                break
    if json_:
        emit_json({"set": set_id, "restores": docs})
    else:
        out.print(f"set {set_id}: {len(points)} point(s)", markup=False)
        for job in jobs:
            render.job_result_line(job)
        left = [p.vm_name for p in points[len(jobs) :]]
        if left:
            out.print(f"  not restored (stopped at the failure): {', '.join(left)}", markup=False)
    raise typer.Exit(render.exit_code_for(jobs))
