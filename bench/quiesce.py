"""The frozen window of one VM on the application-consistent path: N backups of the lab's
standard guest with the lab's test hook enabled (``ok``) or without any hook.

    VMVAULT_LAB_PREFIX=co VMVAULT_LAB_DIR=/var/lib/vmvault/lab-co \\
        .venv/bin/python bench/quiesce.py [-n 10] [--hook ok|none] [--label L] [--keep-lab]

Boots (or reuses) ``<prefix>-standard-1`` and runs ``n`` backups one after another (the first
full, the rest incremental), each checked to be ``guest-quiesce`` with the level the hook
mode must give (``ok`` → application-consistent, ``none`` → file-system-consistent).  Prints
one Markdown row: label, n, ``frozen_ms`` median and max (fsFreeze returned → fsThaw
returned: what the guest's applications wait for), every value, and the median wall time of
a whole backup.  The previous behaviour (no token, no report, no dispatcher report read) is
measured with ``bench/frozen_window.py`` run from main's tree (``PYTHONPATH=/work/main/src``)
on the same guest, with ``--keep-lab``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import libvirt

from common import lab_services
from vmvault.hypervisor.lab.hooks import set_test_hook
from vmvault.hypervisor.lab.vms import lab_prefix

EXPECT = {"ok": "application-consistent", "none": "file-system-consistent"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--hook", choices=sorted(EXPECT), default="ok")
    ap.add_argument("--label", default=None)
    ap.add_argument("--keep-lab", action="store_true", help="leave the guest running")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="quiesce-") as home:
        services = lab_services(home)
        vm = f"{lab_prefix()}-standard-1"
        if not any(v["name"] == vm and v["state"] == "running" for v in services.lab.status()):
            services.lab.up(1, ["standard"])
        services.vaults.create("main", "local", None)
        services.inventory.discover(None)
        for out in services.inventory.register(None, [vm]):
            assert out.error is None, out.error
        conn = libvirt.open("qemu:///system")
        dom = conn.lookupByName(vm)
        set_test_hook(dom, None if args.hook == "none" else args.hook)
        frozen: list[int] = []
        wall: list[float] = []
        try:
            for _ in range(args.n):
                t0 = time.perf_counter()
                outcome = services.backups.backup(None, [vm])[0]
                wall.append(time.perf_counter() - t0)
                point = outcome.result
                assert point is not None, services.jobs.show(outcome.job.id)[1]
                assert point.method.value == "guest-quiesce", point.method
                assert point.consistency.value == EXPECT[args.hook], point.method_reason
                frozen.append(point.frozen_ms)
        finally:
            set_test_hook(dom, None)
            conn.close()
        label = args.label or f"this tree, hook {args.hook} ({EXPECT[args.hook]})"
        print("| path | backups | frozen_ms median | max | all | backup s median |")
        print("|---|---|---|---|---|---|")
        print(
            f"| {label} | {len(frozen)} | {statistics.median(frozen):.0f} | {max(frozen)} "
            f"| {' '.join(map(str, frozen))} | {statistics.median(wall):.1f} |"
        )
        if not args.keep_lab:
            services.lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
