"""Backup sets: the set's frozen window, and a set against single backups of the same VMs.

    VMVAULT_LAB_PREFIX=se VMVAULT_LAB_DIR=/var/lib/vmvault/lab-se \
        .venv/bin/python bench/sets.py [-n 10] [--keep-lab]

Boots (or reuses) three ``<prefix>-standard-N`` guests and registers them with a vault in a
temporary home.  Then, in one run:

* ``n`` sets of the three VMs one after another (the first full, the rest incremental): the
  set's window — first freeze to last thaw (``SetResult.window_ms``) — and each VM's own
  ``frozen_ms``, median and max;
* alternately ``rounds`` times: the three VMs backed up one after another as single backups,
  then as one set (both incremental after the first): wall time of each.

Prints Markdown tables (docs/performance.md, "Backup sets").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from common import lab_services
from vmvault.hypervisor.lab.vms import lab_prefix


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10, help="sets measured for the window")
    ap.add_argument("--rounds", type=int, default=3, help="single-vs-set rounds")
    ap.add_argument("--keep-lab", action="store_true", help="leave the guests running")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sets-") as home:
        services = lab_services(home)
        vms = [f"{lab_prefix()}-standard-{i}" for i in (1, 2, 3)]
        running = {v["name"] for v in services.lab.status() if v["state"] == "running"}
        missing = [vm for vm in vms if vm not in running]
        if missing:
            services.lab.up(len(missing), ["standard"])  # numbers continue after the highest
        services.vaults.create("main", "local", None)
        services.inventory.discover(None)
        for out in services.inventory.register(None, vms):
            assert out.error is None, out.error

        windows: list[int] = []
        frozen: list[int] = []
        for _ in range(args.n):
            outcome = services.backup_sets.backup_set(None, vms)
            result = outcome.result
            assert result is not None, services.jobs.show(outcome.job.id)[1]
            windows.append(result.window_ms)
            frozen += [p.frozen_ms for p in result.points]

        singles: list[float] = []
        single_frozen: list[int] = []
        sets: list[float] = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for out in services.backups.backup(None, vms):
                assert out.result is not None, services.jobs.show(out.job.id)[1]
                single_frozen.append(out.result.frozen_ms)
            singles.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            outcome = services.backup_sets.backup_set(None, vms)
            assert outcome.result is not None, services.jobs.show(outcome.job.id)[1]
            sets.append(time.perf_counter() - t0)

        load = os.getloadavg()[0]
        print(f"3-VM sets, {args.n} runs, load {load:.1f}")
        print("| what | n | median ms | max ms | all |")
        print("|---|---|---|---|---|")
        print(
            f"| set window (first freeze → last thaw) | {len(windows)} "
            f"| {statistics.median(windows):.0f} | {max(windows)} "
            f"| {' '.join(map(str, windows))} |"
        )
        print(
            f"| each VM's own frozen_ms in the sets | {len(frozen)} "
            f"| {statistics.median(frozen):.0f} | {max(frozen)} | |"
        )
        print(
            f"| a single backup's frozen_ms (same VMs, same run) | {len(single_frozen)} "
            f"| {statistics.median(single_frozen):.0f} | {max(single_frozen)} | |"
        )
        print()
        print("| 3 VMs, incremental | rounds | median s | min s | max s |")
        print("|---|---|---|---|---|")
        for label, xs in (("3 single backups, one after another", singles), ("one set", sets)):
            print(
                f"| {label} | {len(xs)} | {statistics.median(xs):.1f} | {min(xs):.1f} "
                f"| {max(xs):.1f} |"
            )
        if not args.keep_lab:
            services.lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
