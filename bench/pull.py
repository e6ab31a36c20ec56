"""Read throughput of a pull over NBD with TLS against the local read of the same disks.

    .venv/bin/python bench/pull.py [--rounds 3] [--random-mib 384] [--keep-lab]

Runs as root with its own lab (``VMVAULT_LAB_PREFIX=bp``, ``VMVAULT_LAB_DIR=/var/lib/vmvault/
lab-bp``; another prefix: ``BENCH_LAB_PREFIX``): the lab's second libvirt host (``lab host
up``: its qemu.conf serves a backup's NBD export with TLS, docs/lab.md) and one standard guest
on it (``bph-standard-1``), whose ``/data`` gets ``--random-mib`` MiB of /dev/urandom written in
the guest. It ends with ``lab host down`` (``--keep-lab``: the host and guest stay).

Why its own bench: ``bench/vm.py`` measures the main host's guest, whose libvirtd has no
backup TLS set up (and must not get one from a bench), and ``bench/nodes.py`` measures whole
backups into S3; this one isolates the read, the only part a pull changes.

Each round, interleaved, the images' page cache dropped before each read:

* **local**: a libvirt pull-mode backup job with its unix socket (``PullBackup``, quiesce
  ``none``, no checkpoint: what the node of the host reads), read by vmvault's reader
  (``NbdSource`` as a backup uses it: 4 MiB at a time, 16 x 256 KiB in flight) to memory;
* **ceiling**: in the same job, ``nbdcopy`` (4 connections x 64 requests) to ``null:``: the
  fastest reader of that export on this machine, the "vs ceiling" column's denominator;
* **pull**: the same disks through a pull's job (``PullBackup(pull=…)``: TCP on 127.0.0.1 with
  TLS, the lab's client certificates) read by the same ``NbdSource``, TLS required;
* **pull, 4 connections**: the same reader with 4 NBD connections (requests spread over them);
* **pull, nbdcopy**: ``nbdcopy`` over the pull's export (``nbds://``, the same certificates):
  the best a TLS reader gets here;
* **full backups**: ``vmvault backup`` of the guest into a new local vault (each round a new
  home, so every backup is full), once by the node of its host (``VMVAULT_NODE_HOST``: the
  unix socket) and once by a pull (``host add --pull-tls``); MB/s over the point's
  ``bytes_read``, the whole CLI process timed (its start, the freeze, the read, the store).

Each child's wall time, CPU seconds and peak RSS (GNU time), and the guest's QEMU CPU seconds
meanwhile (it serves NBD, and does the server side of TLS). The table shows the median round
and lists all. Both ends of the TLS connection are on this one 2-core machine: the pull's cost
here is the encryption's CPU, not a network.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PREFIX = os.environ.get("BENCH_LAB_PREFIX", "bp")
os.environ["VMVAULT_LAB_PREFIX"] = PREFIX  # before anything imports vmvault
os.environ["VMVAULT_LAB_DIR"] = f"/var/lib/vmvault/lab-{PREFIX}"

from common import (  # noqa: E402
    LOAD,
    ROOT,
    VMVAULT,
    MiB,
    Row,
    drop_cache,
    measure,
    median_of,
)

sys.path.insert(0, str(ROOT / "src"))
GUEST = f"{PREFIX}h-standard-1"
NBDCOPY = "nbdcopy --connections=4 --requests=64"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- child operation: every allocated extent of the exports, read by NbdSource --------------


def op_read(argv: list[str]) -> None:
    """``read SOCKET|ADDRESS:PORT:CERTDIR EXPORT...``: NbdSource as a backup reads (4 MiB at a
    time, 16 x 256 KiB in flight), unix socket or TCP with TLS required."""
    from vmvault.hypervisor.nbd import NbdSource, NbdTls

    conns = 1
    if argv[0] == "--connections":
        conns, argv = int(argv[1]), argv[2:]
    where, *exports = argv
    tls = None
    if ":" in where:
        address, port, certs = where.split(":", 2)
        tls = NbdTls(address, int(port), certs)
    buf = bytearray(4 * MiB)
    total = 0
    for export in exports:
        with NbdSource(where, export, tls=tls, connections=conns) as src:
            for o, n, data in src.extents():
                end = o + n
                while data and o < end:
                    view = memoryview(buf)[: min(len(buf), end - o)]
                    src.pread_into(view, o)
                    o += len(view)
                    total += len(view)
    print(json.dumps({"bytes": total}))


# --- the bench ---------------------------------------------------------------------------------


def qemu_of(name: str) -> int | None:
    """The global pid of the guest's QEMU (the second host's pid files hold its namespace's)."""
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"/usr/bin/qemu-system") and f"guest={name},".encode() in cmd:
                return int(p.name)
    return None


def run(cmd: list[str], env: dict[str, str]) -> str:
    import subprocess

    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--random-mib", type=int, default=384, help="MiB written to the guest's /data")
    ap.add_argument("--keep-lab", action="store_true")
    ap.add_argument("--op", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.op:
        op_read(args.op[1:])
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env |= {k: os.environ[k] for k in ("VMVAULT_LAB_PREFIX", "VMVAULT_LAB_DIR")}
    started = time.time()
    host = json.loads(run([VMVAULT, "lab", "host", "up", "--json"], env))
    try:
        rows = bench(args, env, host)
    finally:
        if not args.keep_lab:
            run([VMVAULT, "lab", "host", "down", "--json"], env)
    report(rows, time.time() - started, args)


def bench(args: argparse.Namespace, env: dict[str, str], host: dict[str, Any]) -> list[Row]:
    import libvirt

    from vmvault.domain.pull import PullTarget
    from vmvault.hypervisor.libvirt import agent
    from vmvault.hypervisor.libvirt.backup import DiskSpec, PullBackup

    uri, certs = host["uri"], host["pull_tls"]
    [vm] = json.loads(
        run([VMVAULT, "lab", "up", "--host", uri, "--variant", "standard", "--json"], env)
    )
    log(f"guest {vm['name']} on {uri}; writing {args.random_mib} MiB in /data")
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName(GUEST)
        script = f"dd if=/dev/urandom of=/data/bench.bin bs=1M count={args.random_mib}; sync"
        res = agent.exec_(dom, "/bin/sh", ["-c", script], timeout=900)
        assert res.exitcode == 0, res.stderr
    finally:
        conn.close()
    images = [Path(p) for p in vm["disks"]]
    specs = [DiskSpec("vda", str(images[0]), "qcow2"), DiskSpec("vdb", str(images[1]), "qcow2")]
    me = [sys.executable, str(Path(__file__).resolve()), "--op", "read"]
    work = Path(f"/var/lib/vmvault/lab-{PREFIX}/bench-run")
    qemu = qemu_of(GUEST)
    data = 0
    by: dict[str, list[Row]] = {}

    def timed(label: str, transport: str, cmd: list[str]) -> None:
        drop_cache(images)
        r = measure(cmd, env, qemu=qemu)
        row = Row(label, transport, data, r)
        by.setdefault(f"{label}|{transport}", []).append(row)
        log(f"{label} ({transport}): {row.mbps:,.0f} MB/s, RSS {r.rss_mib:.0f} MiB")

    for k in range(args.rounds):
        common: dict[str, Any] = dict(checkpoint=None, incremental_from=None, work_dir=work)
        with PullBackup(uri, vm["uuid"], specs, quiesce="none", **common) as pb:
            if k == 0:
                data = sum(n for t in ("vda", "vdb") for _, n, d in pb.source(t).extents() if d)
                for t in ("vda", "vdb"):
                    pb.source(t).close()
                log(f"allocated extents of vda + vdb: {data / MiB:,.0f} MiB")
            sock = str(pb.socket)
            timed("vmvault NbdSource", "local: unix socket", [*me, sock, "vda", "vdb"])
            copy = " && ".join(
                f"{NBDCOPY} 'nbd+unix:///{t}?socket={sock}' null:" for t in ("vda", "vdb")
            )
            timed("nbdcopy (ceiling)", "local: unix socket", ["sh", "-c", copy])
        pull = PullTarget.of("127.0.0.1", certs, None)
        with PullBackup(uri, vm["uuid"], specs, quiesce="none", pull=pull, **common) as pb:
            assert pb.tls is not None
            where = f"127.0.0.1:{pb.tls.port}:{certs}"
            exports = [pull.export("vda"), pull.export("vdb")]
            timed("vmvault NbdSource", "pull: TCP + TLS", [*me, where, *exports])
            more = [*me, "--connections", "4", where, *exports]
            timed("vmvault NbdSource, 4 connections", "pull: TCP + TLS", more)
            copy = " && ".join(
                f"{NBDCOPY} 'nbds://127.0.0.1:{pb.tls.port}/{e}?tls-certificates={certs}' null:"
                for e in exports
            )
            timed("nbdcopy", "pull: TCP + TLS", ["sh", "-c", copy])
        for transport, how in (("local: unix socket", "node"), ("pull: TCP + TLS", "pull")):
            by.setdefault(f"backup|{transport}", []).append(
                full_backup(env, uri, certs, how, images, qemu, work.parent / f"home-{k}-{how}")
            )
    shutil.rmtree(work, ignore_errors=True)  # the run directories' lock files
    return [median_of(runs) for runs in by.values()]


def full_backup(
    env: dict[str, str],
    uri: str,
    certs: str,
    how: str,
    images: list[Path],
    qemu: int | None,
    home: Path,
) -> Row:
    """``vmvault backup`` of the guest into a new local vault (so: full), by the node of its
    host (``how="node"``: ``VMVAULT_NODE_HOST``, the unix socket) or by a pull."""
    shutil.rmtree(home, ignore_errors=True)
    env = env | {"VMVAULT_HOME": str(home)}
    if how == "node":
        env["VMVAULT_NODE_HOST"] = uri
    run([VMVAULT, "vault", "create", "main", "--location", "dc1"], env)
    pull = ["--pull-tls", certs] if how == "pull" else []
    run([VMVAULT, "host", "add", uri, "--location", "dc1", *pull], env)
    run([VMVAULT, "discover"], env)
    run([VMVAULT, "register", GUEST], env)
    drop_cache(images)
    r = measure([VMVAULT, "backup", GUEST, "--json"], env, qemu=qemu)
    [job] = json.loads(r.out)
    point = job["point"]
    row = Row("vmvault backup (full, CLI)", f"{'pull' if how == 'pull' else 'local'}", 0, r)
    row.data = int(point["bytes_read"])
    row.op = "pull: TCP + TLS" if how == "pull" else "local: unix socket"
    log(f"full backup by {how}: {row.mbps:,.0f} MB/s of bytes read, RSS {r.rss_mib:.0f} MiB")
    shutil.rmtree(home, ignore_errors=True)
    return row


def report(rows: list[Row], seconds: float, args: argparse.Namespace) -> None:
    ceiling = next(r for r in rows if r.tool.startswith("nbdcopy (ceiling)")).mbps
    print(
        f"\nbench/pull.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rounds} "
        f"rounds, {rows[0].data / MiB:,.0f} MiB of allocated extents (vda + vdb of {GUEST}, "
        f"{args.random_mib} MiB random in /data); load {statistics.median(LOAD):.1f} (max "
        f"{max(LOAD):.1f}); run {seconds:.0f} s. Ceiling = nbdcopy of the local export to "
        f"null: ({ceiling:,.0f} MB/s, median).\n"
    )
    print("| reader | transport | MB/s | vs ceiling | CPU s | peak RSS MiB | QEMU CPU s | runs |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        q = f"{r.run.qemu_cpu:.2f}" if r.run.qemu_cpu is not None else "-"
        print(
            f"| {r.tool} | {r.op} | {r.mbps:,.0f} | {r.mbps / ceiling:.2f} | {r.run.cpu:.2f} "
            f"| {r.run.rss_mib:.0f} | {q} | {r.note} |"
        )
    local = next(r for r in rows if r.tool == "vmvault NbdSource" and r.op.startswith("local"))
    pulled = next(r for r in rows if r.tool == "vmvault NbdSource" and r.op.startswith("pull"))
    print(f"\npull / local (vmvault's reader): {pulled.mbps / local.mbps:.2f}")


if __name__ == "__main__":
    main()
