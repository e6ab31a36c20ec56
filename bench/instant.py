"""Instant recovery vs a full restore: time from the command to the guest agent answering.

    VMVAULT_LAB_PREFIX=ir VMVAULT_LAB_DIR=/var/lib/vmvault/lab-ir \\
        .venv/bin/python bench/instant.py [--rounds 3] [--data-mib 256]

On the lab's standard guest (booted if needed): ``--data-mib`` MiB of random data written in
``/data`` (its vda), one backup into a fresh local vault, then, alternating, each in its own
process (wall time and peak RSS from GNU time, bench/common.py ``measure``) while a thread of
this process pings the new VM's guest agent every 0.1 s:

* ``vmvault restore VM --point P --instant --as-new NAME --dir DIR``: the command returns once
  every disk is local and pivoted (export and overlays gone);
* ``vmvault restore VM --point P --as-new NAME --dir DIR --start`` (full restore): the command
  returns once the agent answered.

The ceiling is the full restore of the same point in the same run: the table gives, per mode,
the median time from the command to the agent answering and to the command's end, the ratio
of the instant restore's time-to-agent to the full restore's, and the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from common import URI, VMVAULT, Lab, Run, lab_services, measure, vmvault, vmvault_json

DIRS = Path("/var/lib/vmvault/bench-instant")


class AgentWatch(threading.Thread):
    """Pings ``name``'s guest agent from ``start`` until it answers (or ``stop``)."""

    def __init__(self, name: str) -> None:
        super().__init__(daemon=True)
        self.name_ = name
        self.start_at = time.perf_counter()
        self.answered: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        import libvirt

        from vmvault.hypervisor.libvirt import agent

        conn = libvirt.open(URI)
        try:
            while not self.stop.is_set() and self.answered is None:
                try:
                    dom = conn.lookupByName(self.name_)
                    if dom.isActive() and agent.ping(dom, timeout=1):
                        self.answered = time.perf_counter() - self.start_at
                        return
                except libvirt.libvirtError:
                    pass
                time.sleep(0.1)
        finally:
            conn.close()


def remove(env: dict[str, str], lab: Lab, name: str, directory: Path) -> None:
    import libvirt

    try:
        lab.destroy(name)
        lab.dom(name).undefine()
    except libvirt.libvirtError:
        pass
    shutil.rmtree(directory, ignore_errors=True)
    for link in Path("/var/lib/libvirt/images").glob(f"{name}-*"):
        link.unlink()


def one(
    env: dict[str, str], lab: Lab, vm: str, point: str, name: str, instant: bool
) -> tuple[Run, float, float | None]:
    directory = DIRS / os.environ.get("VMVAULT_LAB_PREFIX", "lab") / name
    cmd = [VMVAULT, "restore", vm, "--point", point, "--as-new", name, "--dir", str(directory)]
    cmd += ["--instant", "--json"] if instant else ["--start", "--json"]
    watch = AgentWatch(name)
    watch.start()
    run = measure(cmd, env, ok=(0, 3))  # 3: done with a warning (an agent slow to answer)
    watch.stop.set()
    watch.join()
    doc = json.loads(run.out)
    if watch.answered is None:  # the guest is stuck in its early boot (TCG on a loaded host)
        watch.answered = float("nan")
    pivot = doc["result"]["pivot_seconds"]
    remove(env, lab, name, directory)
    return run, watch.answered, pivot


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data-mib", type=int, default=256)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="bench-instant-", dir="/var/tmp")
    services = lab_services(home)
    vm = str(services.lab.up(1, ["standard"])[0]["name"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env |= {"VMVAULT_HOME": home, "VMVAULT_WORK_DIR": str(Path(home) / "run")}
    for key in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE", "VMVAULT_LAB_PREFIX"):
        if key in os.environ:
            env[key] = os.environ[key]
    lab = Lab(env)
    for p in (DIRS, DIRS / os.environ.get("VMVAULT_LAB_PREFIX", "lab")):
        p.mkdir(parents=True, exist_ok=True)
        p.chmod(0o755)
    lab.guest(
        vm,
        f"dd if=/dev/urandom of=/data/bench-instant.bin bs=1M count={args.data_mib} "
        "2>/dev/null && sync",
    )
    try:
        vmvault(env, "vault", "create", "main", "--location", "local")
        vmvault(env, "discover")
        vmvault(env, "register", vm)
        point = vmvault_json(env, "backup", vm)[0]["point"]
        sizes = {d["target"]: d["size"] for d in point["disks"]}
        results: dict[str, list[tuple[Run, float, float | None]]] = {"instant": [], "full": []}
        for n in range(args.rounds):
            for mode in ("instant", "full"):
                name = f"{vm}-b{mode[0]}{n}"
                results[mode].append(one(env, lab, vm, point["id"], name, mode == "instant"))
    finally:
        lab.guest(vm, "rm -f /data/bench-instant.bin")
    data = sum(sizes.values()) / 2**20
    print(
        f"point: {', '.join(f'{t} {s / 2**20:.0f} MiB' for t, s in sizes.items())} "
        f"({data:.0f} MiB virtual, {args.data_mib} MiB random data written in /data); "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    full_agent = statistics.median(a for _, a, _ in results["full"])
    print(
        "| restore --as-new | rounds | command → agent answers (median, min–max) s | "
        "ratio to full | command → end s (median) | pivot s (median) | peak RSS MiB (max) |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode, rows in results.items():
        agents = sorted(a for _, a, _ in rows)
        ends = statistics.median(r.wall for r, _, _ in rows)
        pivots = [p for _, _, p in rows if p is not None]
        pivot = f"{statistics.median(pivots):.1f}" if pivots else "–"
        rss = max(r.rss_mib for r, _, _ in rows)
        what = "--instant" if mode == "instant" else "--start (full restore)"
        print(
            f"| {what} | {len(rows)} | {statistics.median(agents):.1f} "
            f"({agents[0]:.1f}–{agents[-1]:.1f}) | {statistics.median(agents) / full_agent:.2f} | "
            f"{ends:.1f} | {pivot} | {rss:.0f} |"
        )
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
