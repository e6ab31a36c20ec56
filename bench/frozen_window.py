"""How long a backup keeps the guest frozen: N backups of the lab's standard guest.

    VMVAULT_LAB_PREFIX=bk VMVAULT_LAB_DIR=/var/lib/vmvault/lab-bk \
        .venv/bin/python bench/frozen_window.py [-n 15] [--label after] [--keep-lab]

Boots (or reuses) ``<prefix>-standard-1``, registers it with a vault in a temporary home and
runs ``n`` backups one after another (the first full, the rest incremental).  Each point's
``frozen_ms`` is the window from the moment ``fsFreeze`` returned to the moment ``fsThaw``
returned (``hypervisor/libvirt/quiesce.py``): what the guest's applications wait for.  It
also times entering a job phase (``ctx.phase``: a log line, a journal step and a cancel read
in SQLite) 30 times: the catalog work that main's window held until 2026-12-01.  Prints one
Markdown row: label, n, median, min, max, every value, ctx.phase median / max.  Run it with another tree's interpreter and
``PYTHONPATH`` to compare two versions on the same lab.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from common import lab_services
from vmvault.domain.job import JobType
from vmvault.hypervisor.lab.vms import lab_prefix
from vmvault.services.jobs import JobContext


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=15)
    ap.add_argument("--label", default="this tree")
    ap.add_argument("--keep-lab", action="store_true", help="leave the guest running")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="frozen-window-") as home:
        services = lab_services(home)
        vm = f"{lab_prefix()}-standard-1"
        if not any(v["name"] == vm and v["state"] == "running" for v in services.lab.status()):
            services.lab.up(1, ["standard"])  # adds a guest: only when the first is not up
        services.vaults.create("main", "local", None)
        services.inventory.discover(None)
        for out in services.inventory.register(None, [vm]):
            assert out.error is None, out.error
        frozen: list[int] = []
        for _ in range(args.n):
            outcome = services.backups.backup(None, [vm])[0]
            point = outcome.result
            assert point is not None, services.jobs.show(outcome.job.id)[1]
            assert point.method.value == "guest-quiesce", point.method
            frozen.append(point.frozen_ms)
        # what main's window also held: entering a phase (log line + journal + cancel read)
        phase_ms: list[float] = []

        def phases(ctx: JobContext) -> None:
            for _ in range(30):
                t0 = time.perf_counter()
                ctx.phase("freezing")
                phase_ms.append((time.perf_counter() - t0) * 1000)

        uuid = services.point_listing.find_vm(vm).uuid
        services.runner.run(JobType.BACKUP, "main", uuid, vm, phases)
        print("| tree | backups | frozen_ms median | min | max | all | ctx.phase ms median / max |")
        print("|---|---|---|---|---|---|---|")
        print(
            f"| {args.label} | {len(frozen)} | {statistics.median(frozen):.0f} | {min(frozen)} "
            f"| {max(frozen)} | {' '.join(map(str, frozen))} "
            f"| {statistics.median(phase_ms):.1f} / {max(phase_ms):.1f} |"
        )
        if not args.keep_lab:
            services.lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
