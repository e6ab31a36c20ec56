"""Aggregate backup throughput of 4 lab VMs into one S3 vault: one node vs one node per host.

    .venv/bin/python bench/nodes.py [--rounds 2] [--keep-lab]

Runs as root with its own lab (``VMVAULT_LAB_PREFIX=bn``, ``VMVAULT_LAB_DIR=/var/lib/vmvault/
lab-bn``; another prefix: ``BENCH_LAB_PREFIX``): the lab's PostgreSQL catalog (``lab catalog
up``), Ceph RGW (``lab storage up``, bucket ``nodes``), the second libvirt host (``lab host
up``), four standard guests on the main host (``bn-standard-1..4``) and two on the second
(``bnh-standard-1..2``). It ends with every ``lab … down`` (``--keep-lab``: the guests and
daemons stay).

**What "one node" means.** A backup reads its VM's disks on their host, so a node backs up
only the VMs of its own host (docs/deployment.md, "Remote libvirt hosts": a VM of a host with
no node is refused, ``HOST_NOT_SERVED``). One node therefore cannot back up VMs spread 2 + 2;
the one-node rows back up the same amount of work — four identical standard guests — all on
the main host, through its one ``vmvault serve``; the per-host row backs up two guests on each
host, through one ``vmvault serve`` per host. The one-node case runs twice: with the default
``VMVAULT_JOB_WORKERS=2`` (two jobs at once: what one node does), and with 4 (as many jobs at
once as the two nodes together: what is left of the difference is the nodes, not the count
of workers). Both hosts are on this one 2-core machine: the per-host row shows the cost of
the catalog coordination and a second process, not a second machine's CPU.

Each row, in interleaved rounds: a fresh PostgreSQL database (``CREATE DATABASE`` on the lab
cluster) and home, a fresh S3 vault (own prefix in bucket ``nodes``), every libvirt
checkpoint of the guests deleted (so every backup is full), the images' page cache dropped;
the serve processes started and healthy; then the clock starts, the main host's CLI queues
the 4 backups (``backup … --no-wait``) and waits for every job (``jobs wait``); the clock
stops when the last has ended. Throughput is the points' ``bytes_read`` over that wall time.
The ceiling, measured just before each row: the data extents of the same 4 VMs' disks
(``qemu-img map``) read by one ``qemu-io -r -U`` per image, all at once (cache dropped) —
no backup reads its disks' data faster. Peak RSS is each serve
process's ``VmHWM`` (the largest node shown), CPU its user+system seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

PREFIX = os.environ.get("BENCH_LAB_PREFIX", "bn")
os.environ["VMVAULT_LAB_PREFIX"] = PREFIX  # before anything imports vmvault
os.environ["VMVAULT_LAB_DIR"] = f"/var/lib/vmvault/lab-{PREFIX}"

from common import (  # noqa: E402
    ROOT,
    URI,
    VMVAULT,
    drop_cache,
    proc_cpu,
    vmvault,
    vmvault_json,
)

sys.path.insert(0, str(ROOT / "src"))
BUCKET = "nodes"
MAIN4 = [f"{PREFIX}-standard-{i}" for i in (1, 2, 3, 4)]
SECOND2 = [f"{PREFIX}h-standard-{i}" for i in (1, 2)]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    for key in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE", "VMVAULT_LAB_PREFIX"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def images(uri: str, name: str) -> list[Path]:
    import xml.etree.ElementTree as ET

    import libvirt

    conn = libvirt.open(uri)
    try:
        root = ET.fromstring(conn.lookupByName(name).XMLDesc(0))
    finally:
        conn.close()
    found = [s.get("file", "") for s in root.findall("./devices/disk/source")]
    return [Path(f) for f in found if f]


def forget_checkpoints(uri: str, name: str) -> None:
    """Every checkpoint of the guest (the next backup is full)."""
    import libvirt

    from vmvault.hypervisor.libvirt import checkpoints as cps

    conn = libvirt.open(uri)
    try:
        uuid = conn.lookupByName(name).UUIDString()
    finally:
        conn.close()
    for cp in reversed(cps.list_checkpoints(uri, uuid)):
        cps.delete_checkpoint(uri, uuid, cp)


def read_ceiling(paths: list[Path]) -> tuple[int, float]:
    """Bytes with data in these images and the seconds ``qemu-io`` takes to read exactly
    those extents (``qemu-img map``: what base:allocation reports, as the backup reads; one
    process per image, all at once, cache dropped, requests of at most 64 MiB): the disks'
    data read through QEMU's block layer, as the NBD export reads it."""
    argvs, data = [], 0
    for p in paths:
        info = json.loads(
            subprocess.run(
                ["qemu-img", "map", "-U", "--output=json", str(p)],
                capture_output=True, text=True, check=True,
            ).stdout
        )  # fmt: skip
        fmt = "raw" if p.suffix == ".raw" else "qcow2"
        reads = []
        for e in info:
            if e["data"] and not e["zero"]:
                data += e["length"]
                for off in range(e["start"], e["start"] + e["length"], 64 << 20):
                    n = min(64 << 20, e["start"] + e["length"] - off)
                    reads += ["-c", f"read -q {off} {n}"]
        if reads:
            argvs.append(["qemu-io", "-r", "-U", "-f", fmt, str(p), *reads])
    drop_cache(paths)
    t0 = time.perf_counter()
    procs = [subprocess.Popen(argv) for argv in argvs]
    if any(p.wait() != 0 for p in procs):
        raise RuntimeError("qemu-io failed")
    return data, time.perf_counter() - t0


class Node:
    """One ``vmvault serve`` as the node of ``host``."""

    def __init__(self, env: dict[str, str], host: str, workers: int, logfile: Path) -> None:
        self.port = free_port()
        self.env = {**env, "VMVAULT_NODE_HOST": host, "VMVAULT_JOB_WORKERS": str(workers)}
        self.env["VMVAULT_GC_SCHEDULE"] = "off"
        with logfile.open("a") as out:
            self.proc = subprocess.Popen(
                [VMVAULT, "serve", "--listen", f"127.0.0.1:{self.port}"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("serve exited:\n" + logfile.read_text()[-3000:])
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/api/v1/health", timeout=2
                ):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("serve did not answer:\n" + logfile.read_text()[-3000:])

    def peak_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Bench:
    def __init__(self, tmp: Path, env: dict[str, str], catalog: str, second: str) -> None:
        self.tmp, self.env, self.catalog, self.second = tmp, env, catalog, second
        self.n = 0

    def database(self) -> str:
        """A fresh database on the lab's cluster; its URL (the lab URL's database replaced)."""
        import psycopg

        self.n += 1
        name = f"bench_nodes_{os.getpid()}_{self.n}"
        run = self.catalog.split("host=", 1)[1]
        with psycopg.connect(host=run, user="vmvault", dbname="vmvault", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.catalog.replace("@/vmvault?", f"@/{name}?")

    def row(self, label: str, layout: dict[str, list[str]], workers: int) -> dict[str, Any]:
        home = self.tmp / f"home-{self.n + 1}"
        home.mkdir()
        env = {**self.env, "VMVAULT_HOME": str(home), "VMVAULT_CATALOG_URL": self.database()}
        env["VMVAULT_WORK_DIR"] = str(self.tmp / "run")  # one machine: one work directory
        vault = f"v{self.n}"
        vmvault(
            env, "vault", "create", vault, "--location", "local", "--storage", "s3",
            "--endpoint", env["BENCH_S3_ENDPOINT"], "--bucket", BUCKET, "--prefix", f"{vault}/",
        )  # fmt: skip
        for host in layout:
            if host != URI:  # the main host is known with the vault's location already
                vmvault(env, "host", "add", host, "--location", "local")
        vmvault(env, "discover")
        vms = [vm for names in layout.values() for vm in names]
        vmvault(env, "register", *vms)
        paths = []
        for host, names in layout.items():
            for name in names:
                forget_checkpoints(host, name)
                paths += images(host, name)
        ceiling_bytes, ceiling_s = read_ceiling(paths)
        drop_cache(paths)
        nodes = [Node(env, host, workers, home / "serve.log") for host in layout]
        try:
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            queued = vmvault_json(env, "backup", *vms, "--no-wait")
            ended = [vmvault_json(env, "jobs", "wait", str(j["id"])) for j in queued]
            wall = time.perf_counter() - t0
            peak = max(n.peak_mib() for n in nodes)
            cpu = sum(proc_cpu(n.proc.pid) for n in nodes)
        finally:
            for n in nodes:
                n.stop()
        bad = [j for j in ended if j["state"] != "completed"]
        if bad:
            raise RuntimeError(f"{label}: {json.dumps(bad)[:3000]}")
        points = vmvault_json(env, "points", "list")
        read = sum(int(p["bytes_read"] or 0) for p in points)
        ran_on = len({j["node"] for j in ended})  # how many nodes ran the 4 jobs
        return {
            "label": label, "nodes": len(nodes), "workers": workers, "wall": wall,
            "read": read, "mbps": read / wall / 1e6, "ceiling": ceiling_bytes / ceiling_s / 1e6,
            "peak": peak, "cpu": cpu, "load": load, "ran_on": ran_on,
        }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--keep-lab", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-nodes-", dir="/var/tmp"))
    tmp.chmod(0o755)
    env = base_env()
    second = ""
    try:
        log("lab catalog up, storage up, host up")
        catalog = vmvault_json(env, "lab", "catalog", "up")["url"]
        s3 = vmvault_json(env, "lab", "storage", "up")
        env.update(
            AWS_ACCESS_KEY_ID=s3["access_key"],
            AWS_SECRET_ACCESS_KEY=s3["secret_key"],
            BENCH_S3_ENDPOINT=s3["endpoint"],
        )
        second = vmvault_json(env, "lab", "host", "up")["uri"]
        from vmvault.storage.s3_client import S3Client
        from vmvault.storage.s3_credentials import Credentials

        client = S3Client(
            s3["endpoint"],
            s3["region"],
            Credentials(s3["access_key"], s3["secret_key"]),
            connections=4,
        )
        try:
            client.create_bucket(Bucket=BUCKET)
        except Exception as exc:  # it exists (a kept lab)
            if "BucketAlreadyOwnedByYou" not in str(exc):
                raise
        log("lab up: 4 guests on the main host, 2 on the second")
        # two at a time: TCG guests booting 4 at once on a loaded machine can miss the
        # kernel's IO-APIC timer check and panic (seen here at load ~20)
        vmvault(env, "lab", "up", "--variant", "standard", "--count", "2")
        vmvault(env, "lab", "up", "--variant", "standard", "--count", "2")  # -3 and -4
        vmvault(env, "lab", "up", "--variant", "standard", "--count", "2", "--host", second)
        bench = Bench(tmp, env, catalog, second)
        configs = [
            ("one node: 4 VMs on host A", {URI: MAIN4}, 2),
            ("one node: 4 VMs on host A, 4 job workers", {URI: MAIN4}, 4),
            ("one node per host: 2 on A + 2 on B", {URI: MAIN4[:2], second: SECOND2}, 2),
        ]
        rows: dict[str, list[dict[str, Any]]] = {c[0]: [] for c in configs}
        for r in range(args.rounds):
            for label, layout, workers in configs if r % 2 == 0 else reversed(configs):
                log(f"round {r + 1}: {label}")
                rows[label].append(bench.row(label, layout, workers))
        report(rows, args.rounds)
    finally:
        if not args.keep_lab:
            if second:
                vmvault(env, "lab", "down", "--host", second)
            for what in (("host", "down"), ("storage", "down"), ("catalog", "down")):
                vmvault(env, "lab", *what)
            vmvault(env, "lab", "down")
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(rows: dict[str, list[dict[str, Any]]], rounds: int) -> None:
    print(f"4 standard lab guests, full backups into one S3 vault (Ceph RGW), {rounds} rounds")
    print("| layout | nodes (ran jobs) | job workers/node | wall s (median; all) | MiB read | MB/s "
          "| ceiling MB/s | ratio | largest node peak RSS MiB | nodes' CPU s | load |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, runs in rows.items():
        mid = sorted(runs, key=lambda x: x["wall"])[len(runs) // 2]
        walls = " / ".join(f"{x['wall']:.1f}" for x in runs)
        ceiling = statistics.median(x["ceiling"] for x in runs)
        print(
            f"| {label} | {mid['nodes']} ({mid['ran_on']}) | {mid['workers']} | {mid['wall']:.1f} ({walls}) "
            f"| {mid['read'] / 2**20:.0f} | {mid['mbps']:.1f} | {ceiling:.0f} "
            f"| {mid['mbps'] / ceiling:.2f} | {max(x['peak'] for x in runs):.0f} "
            f"| {mid['cpu']:.1f} | {mid['load']:.1f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
