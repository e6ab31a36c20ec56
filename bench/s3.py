"""Benchmark of an S3 vault on a real Ceph RGW: vmvault vs. a plain parallel PUT/GET ceiling.

    .venv/bin/python bench/s3.py [--vdc-gib 2] [--random-mib 512] [--rounds 3] [--baseline DIR]

``--baseline DIR`` (another checkout with its ``.venv``, e.g. ``/work/main``) adds, in each
round, that code's local full and S3 full of the same VM: a change judged against the code
before it under the same load (on this shared machine, runs minutes apart are not comparable).

Runs as root on the lab's libvirtd with its own lab (``VMVAULT_LAB_PREFIX=bs``,
``VMVAULT_LAB_DIR=/var/lib/vmvault/lab-bs``: guest ``bs-standard-1`` and a Ceph cluster under
``lab-bs/ceph``), private ``VMVAULT_HOME``s and ``VMVAULT_WORK_DIR`` under a temporary
directory, and always ends with ``vmvault lab storage down`` and ``vmvault lab down``. One run
takes 4-6 minutes on 2 shared cores (4.3 min on 2026-12-02):

0. ``vmvault lab storage up --json`` (one mon, one OSD on a sparse BlueStore file, RGW; its
   daemons' pids come from ``lab storage status``) and ``vmvault lab up --variant standard
   --count 1``. The guest gets a data disk vdc (``--vdc-gib``, 2 GiB qcow2 with an empty ext4
   made on the host) and writes on it what bench/vm.py writes (``common.FILL``):
   ``random.bin`` (``--random-mib``, 512 MiB of /dev/urandom), ``binaries.bin`` (the guest's
   binaries 24 times, ~220 MB), ``text.bin`` (64 MiB, very compressible) and ``zeros.bin``
   (128 MiB): ~1 GB allocated over vda + vdb + vdc, ~0.7 GB stored.
1. An S3 full into a throwaway S3 vault, in-process under ``common.op_probe``: seconds by
   phase (``S3_PROBES``: the backup's phases and the S3 backend's leases, batch commits and
   touches), RSS after the imports / when ``backup_disk`` starts / at the peak, and every S3
   request counted and timed by operation (``S3Client._send``). It runs first: a
   throwaway backup after the kept full would prune that full's checkpoint.
2. In ``--rounds`` interleaved rounds (median shown, all listed):
   (a) *local full*: ``vmvault backup`` into a local vault (a throwaway home), then a
       no-change incremental into it: the fixed cost every backup pays, against which the
       S3 no-change incremental (3) is judged;
   (b) *S3 full*: ``vmvault backup`` into an S3 vault (``vault create --storage s3``, bucket
       ``bench``, its own prefix per round; the last round's vault is kept for rows 3);
   (c) *ceiling PUT*: after the first S3 full, its ``chunks/``, ``indexes/`` and
       ``manifests/`` objects are listed (key and size); a child process PUTs objects of
       exactly those keys and sizes (bytes sliced from one random buffer: RGW neither
       compresses nor deduplicates) into bucket ``ceiling`` with vmvault's own S3 client, made
       by ``S3Client`` as the backend makes it (path style, pool, no retries, no
       payload signing) and as many threads as the S3 backend uploads at once
       (``vmvault.storage.s3.UPLOADS``), plain PutObject, no vmvault logic; and again with
       ``INFO_THREADS`` (8) threads: what more concurrency would give (info, not the bound);
   (d) *ceiling GET*: the same objects read back (whole bodies) with as many threads as
       ``vmvault restore`` reads chunks with (``VMVAULT_WORKERS``: min(CPUs, 8)), and with 8;
   (e) *S3 restore*: ``vmvault restore --disks-only --format qcow2`` of that round's S3 full.
   Local and S3 fulls start with the guest images' page cache dropped; the ceph directory's
   page cache is dropped before every GET and restore (BlueStore reads with O_DIRECT; its
   own cache in the OSD cannot be dropped without a restart and serves both alike).
   The S3 full is judged against the ceiling PUT or, when the local full is slower than
   that PUT, against the local full (the issue's rule); the restore against the GET. The
   report adds the CPU floor: every process's CPU seconds during a row (vmvault, RGW, OSD,
   QEMU, mon) over the cores — on a host that runs the object store too, the S3 full cannot
   take less, whatever vmvault does.
3. On the kept S3 vault: an incremental with no change (the fixed overhead on S3; then once
   more under ``op_probe``), then one after ~1 % of the allocated data was rewritten in the
   guest (1 MiB ``dd`` of /dev/urandom at seeded offsets of random.bin): bytes read, objects
   and bytes sent (the bucket is listed before and after: what was added under the prefix).
4. Copies local -> S3, in a fresh home with a local vault and an S3 vault (bucket
   ``offsite``): a full backup into the local vault and ``vmvault copy --from loc --to
   offsite`` (nothing present); then the first N MiB of random.bin are rewritten in the
   guest, N = 4 MiB x half the chunks the S3 vault now holds, a backup into the local vault
   (incremental) and the copy again: about half of that point's chunks are present on S3.
   The row shows the copy's report (chunks sent / present, bytes sent) and what the bucket
   gained (listed before and after), judged against how many chunk files the local vault
   gained with the second point (what S3 lacked). (Pre-seeding half the chunk objects cannot
   work: chunk ids are keyed per vault, so S3's ids of the same data differ from the local
   vault's.)

Every measured operation runs in its own process; CPU seconds come from ``wait4`` of that
process (children included), peak RSS from GNU time (``common.measure``: the process's own);
the table adds the CPU seconds the RGW, the OSD and the guest's QEMU spent meanwhile (from
/proc/PID/stat) and how busy the whole machine was (it is shared with other engineers).
Restores write their images to /var/tmp and fsync them within the measured time; the ceiling
GET writes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import (
    FILL,
    LOAD,
    PROBES,
    ROOT,
    URI,
    VMVAULT,
    GiB,
    Lab,
    MiB,
    Row,
    allocated,
    change_script,
    drop_cache,
    make_ext4_qcow2,
    measure,
    median_of,
    op_probe,
    qemu_pid,
    vmvault,
    vmvault_json,
)

PREFIX = os.environ.get("BENCH_LAB_PREFIX", "bs")  # another prefix: a private lab
LAB_DIR = f"/var/lib/vmvault/lab-{PREFIX}"
BUCKET = "bench"
CEILING_BUCKET = "ceiling"
COPY_BUCKET = "offsite"
INFO_THREADS = 8  # the info rows: what more concurrency than vmvault's would give
STORED = ("chunks/", "indexes/", "manifests/")  # what a backup adds to a vault
S3_PROBES = [  # the phases of a backup (common.PROBES) and what the S3 backend does in them
    *PROBES,
    ("vmvault.storage.s3", "S3Backend.probe", "  S3: probe (endpoint, keys, bucket)"),
    ("vmvault.storage.s3_leases", "Leases._acquire_shared", "  S3: acquire shared leases"),
    ("vmvault.storage.s3_leases", "Leases._acquire_exclusive", "  S3: acquire exclusive leases"),
    ("vmvault.storage.s3_leases", "Leases._drop", "  S3: drop leases"),
    ("vmvault.storage.s3_leases", "Leases.live_writers", "  S3: list live writers"),
    ("vmvault.storage.s3_batch", "S3Batch.commit", "  S3: batch commits (wait for uploads)"),
    ("vmvault.storage.s3_batch", "ByteBudget.acquire", "  S3: waits for the upload budget"),
    ("vmvault.dataplane.vault", "VaultStore.touch_chunks", "  touch reused chunks (many)"),
    ("vmvault.dataplane.vault", "VaultStore.touch_chunk", "  touch reused chunks (one)"),
]  # fmt: skip

os.environ["VMVAULT_LAB_PREFIX"] = PREFIX  # before anything imports vmvault
os.environ["VMVAULT_LAB_DIR"] = LAB_DIR
sys.path.insert(0, str(ROOT / "src"))


# --- S3 from the benchmark (and its children) -----------------------------------------------


def client(env: dict[str, str], connections: int = 10) -> Any:
    """vmvault's S3 client, made exactly as the S3 backend makes its own."""
    from vmvault.storage.s3_client import S3Client
    from vmvault.storage.s3_credentials import Credentials

    creds = Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    return S3Client(
        env["BENCH_S3_ENDPOINT"], env["BENCH_S3_REGION"], creds, connections=connections
    )


def listing(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    """key -> size of the objects under ``prefix``."""
    out: dict[str, int] = {}
    token = None
    while True:
        page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, ContinuationToken=token)
        out.update({o["Key"]: o["Size"] for o in page.get("Contents", ())})
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return out


def stored_objects(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    """The chunk, index and manifest objects of the vault at ``prefix`` (vault keys)."""
    objs = listing(s3, bucket, prefix)
    return {k[len(prefix) :]: n for k, n in objs.items() if k[len(prefix) :].startswith(STORED)}


def delete_prefix(s3: Any, bucket: str, prefix: str) -> None:
    keys = list(listing(s3, bucket, prefix))
    for i in range(0, len(keys), 1000):
        s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]}
        )


def op_s3(argv: list[str]) -> None:
    """Child: ``put|get BUCKET PREFIX OBJECTS_JSON THREADS``: a plain parallel PUT or GET of
    the objects (vault key -> size) under PREFIX; prints counts and request latencies."""
    verb, bucket, prefix, objects_file, threads = argv
    objects: dict[str, int] = json.loads(Path(objects_file).read_text())
    s3 = client(dict(os.environ), connections=int(threads) + 8)
    noise = os.urandom(max(objects.values()))
    latencies: list[float] = []

    def put(item: tuple[str, int]) -> int:
        key, size = item
        body = noise[:size]  # one copy of the bytes, as the backend's batch makes
        t = time.perf_counter()
        s3.put_object(Bucket=bucket, Key=prefix + key, Body=body)
        latencies.append(time.perf_counter() - t)
        return size

    def get(item: tuple[str, int]) -> int:
        t = time.perf_counter()
        body = s3.get_object(Bucket=bucket, Key=prefix + item[0])["Body"]
        with body:
            n = len(body.read())
        latencies.append(time.perf_counter() - t)
        return n

    with ThreadPoolExecutor(int(threads)) as pool:
        total = sum(pool.map(put if verb == "put" else get, sorted(objects.items())))
    latencies.sort()
    print(
        json.dumps(
            {
                "objects": len(objects),
                "bytes": total,
                "p50_ms": 1000 * latencies[len(latencies) // 2],
                "p90_ms": 1000 * latencies[int(len(latencies) * 0.9)],
            }
        )
    )


# --- the rows -------------------------------------------------------------------------------


class Bench:
    def __init__(self, tmp: Path, env: dict[str, str], log: Any) -> None:
        self.tmp = tmp
        self.env = env
        self.log = log
        self.s3 = client(env)
        self.vm = f"{PREFIX}-standard-1"
        self.lab: Lab | None = None
        self.me = [sys.executable, str(Path(__file__).resolve()), "--op"]
        self.daemons: dict[str, int | None] = {}

    def watch(self) -> dict[str, int | None]:
        return {**self.daemons, "qemu": qemu_pid(self.vm)}

    def home(self, name: str, *vaults: tuple[str, str | None]) -> dict[str, str]:
        """A fresh VMVAULT_HOME with these vaults (name, ``BUCKET/PREFIX/`` of an S3 vault or
        None: a local one), the VM registered; the first vault is the default."""
        env = {**self.env, "VMVAULT_HOME": str(self.tmp / name), "VMVAULT_VAULT": vaults[0][0]}
        for vault, where in vaults:
            if where is None:
                vmvault(env, "vault", "create", vault, "--location", "local")
            else:
                bucket, prefix = where.split("/", 1)
                vmvault(
                    env, "vault", "create", vault, "--location", "local", "--storage", "s3",
                    "--endpoint", env["BENCH_S3_ENDPOINT"], "--bucket", bucket,
                    "--prefix", prefix,
                )  # fmt: skip
        vmvault(env, "discover")
        vmvault(env, "register", self.vm)
        return env

    def forget_checkpoints(self, before: set[str]) -> None:
        """Delete the checkpoints made since ``before`` (a throwaway home's chain)."""
        from vmvault.hypervisor.libvirt import checkpoints as cps

        assert self.lab is not None
        uuid = self.lab.dom(self.vm).UUIDString()
        for name in set(cps.list_checkpoints(URI, uuid)) - before:
            cps.delete_checkpoint(URI, uuid, name)

    def checkpoints(self) -> set[str]:
        from vmvault.hypervisor.libvirt import checkpoints as cps

        assert self.lab is not None
        return set(cps.list_checkpoints(URI, self.lab.dom(self.vm).UUIDString()))

    def backup(
        self,
        env: dict[str, str],
        vault: str,
        op: str,
        tool: str,
        prefix: str | None,
        exe: str = VMVAULT,
    ) -> Row:
        """``vmvault backup --vault`` (``exe``: another checkout's, ``--baseline``); for an S3
        vault, the objects it added to the bucket."""
        assert self.lab is not None
        drop_cache(self.lab.paths(self.vm))
        before = listing(self.s3, BUCKET, prefix) if prefix is not None else {}
        run = measure(
            [exe, "backup", self.vm, "--vault", vault, "--json"],
            env, ok=(0, 3), watch=self.watch(),
        )  # fmt: skip
        point = json.loads(run.out)[0]["point"]
        extra: dict[str, Any] = {"point": point}
        note = f"read {point['bytes_read'] / 1e6:,.0f} MB, new {point['bytes_new'] / 1e6:,.1f} MB"
        stored = None
        if prefix is not None:
            after = listing(self.s3, BUCKET, prefix)
            added = {k: n for k, n in after.items() if k not in before}
            stored = sum(added.values())
            extra["sent_objects"] = len(added)
            note += f"; sent {len(added)} objects, {stored / 1e6:,.1f} MB"
        row = Row(tool, op, point["bytes_read"], run, stored, note, extra)
        self.log(f"  {tool} {op}: {run.wall:.2f}s, {note}")
        return row

    def probe(self, env: dict[str, str]) -> dict[str, Any]:
        """``vmvault backup`` in-process under ``op_probe``: seconds by phase, RSS, and S3
        requests by operation."""
        assert self.lab is not None
        drop_cache(self.lab.paths(self.vm))
        run = measure(
            [*self.me, "probe", self.vm, "--vault", "s3"], env, ok=(0, 3), watch=self.watch()
        )
        err = run.err

        def line(tag: str) -> Any:
            return json.loads(err.split(f"{tag} ", 1)[1].splitlines()[0])

        times = line("PROBE")
        times["interpreter exit"] = run.ended - times.pop("_end")
        times["(process wall)"] = run.wall
        return {"times": times, "mem": line("PROBEMEM"), "requests": line("PROBEREQ"), "run": run}

    def lab_guest(self, script: str) -> None:
        assert self.lab is not None
        self.lab.guest(self.vm, script, 600)

    def copy(self, env: dict[str, str], op: str, expected: int | None) -> Row:
        """``vmvault copy --from loc --to offsite``: what it added to the bucket (listed
        before and after) and what it says it did; ``expected``: how many chunks B lacked."""
        before = listing(self.s3, COPY_BUCKET, "copy/")
        drop_cache([Path(env["VMVAULT_HOME"]) / "vaults" / "loc"])
        run = measure(
            [VMVAULT, "copy", "--from", "loc", "--to", "offsite", self.vm, "--json"],
            env, ok=(0, 3), watch=self.daemons,
        )  # fmt: skip
        after = listing(self.s3, COPY_BUCKET, "copy/")
        said: dict[str, int] = {}
        for doc in json.loads(run.out):
            for k in ("chunks_sent", "chunks_present", "bytes_sent"):
                said[k] = said.get(k, 0) + int((doc.get("copy") or {}).get(k, 0))
        added = {k: n for k, n in after.items() if k not in before}
        chunks = {k: n for k, n in added.items() if k.startswith("copy/chunks/")}
        total = said["chunks_sent"] + said["chunks_present"]
        note = (
            f"the point has {total} chunks; {said['chunks_present']} present, "
            f"{said['chunks_sent']} sent ({said['bytes_sent'] / 1e6:,.1f} MB, its report); "
            f"bucket: +{len(chunks)} chunk objects ({sum(chunks.values()) / 1e6:,.1f} MB) "
            f"+{len(added) - len(chunks)} others"
        )
        if expected is not None:
            note += f"; chunks the local vault gained with this point: {expected}"
        row = Row(
            "vmvault", op, sum(added.values()), run, sum(added.values()), note,
            {**said, "objects": len(chunks), "expected": expected, "total": total},
        )  # fmt: skip
        self.log(f"  {op}: {run.wall:.2f}s, {note}")
        return row

    def transfer(self, verb: str, prefix: str, objects: Path, threads: int, op: str) -> Row:
        if verb == "get":
            drop_cache([Path(LAB_DIR) / "ceph"])
        run = measure(
            [*self.me, "s3", verb, CEILING_BUCKET, prefix, str(objects), str(threads)],
            self.env, watch=self.watch(),
        )  # fmt: skip
        doc = json.loads(run.out)
        note = (
            f"{doc['objects']} objects, {threads} threads; per request p50 "
            f"{doc['p50_ms']:.0f} ms, p90 {doc['p90_ms']:.0f} ms"
        )
        self.log(f"  ceiling {op}: {run.wall:.2f}s, {note}")
        return Row("ceiling (plain client)", op, doc["bytes"], run, None, note, doc)

    def restore(self, env: dict[str, str], point: str, op: str) -> Row:
        out = self.tmp / "restore"
        drop_cache([Path(LAB_DIR) / "ceph"])
        run = measure(
            [VMVAULT, "restore", self.vm, "--point", point, "--disks-only", "--dir", str(out),
             "--format", "qcow2", "--json"],
            env, ok=(0, 3), sync=[out], watch=self.watch(),
        )  # fmt: skip
        files = [Path(f) for f in json.loads(run.out)["files"]]
        data = sum(allocated(f) for f in files if f.suffix == ".qcow2")
        shutil.rmtree(out, ignore_errors=True)
        row = Row("vmvault", op, data, run, None, f"{data / 1e6:,.0f} MB allocated written")
        self.log(f"  restore: {run.wall:.2f}s")
        return row


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--vdc-gib", type=int, default=2, help="virtual size of the data disk")
    ap.add_argument("--random-mib", type=int, default=512, help="MiB of random data on vdc")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the full/ceiling rows")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (with its .venv) whose local and S3 fulls run in each round too",
    )
    ap.add_argument("--op", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.op:
        if args.op[0] == "s3":
            op_s3(args.op[1:])
        elif args.op[0] == "probe":
            op_probe(args.op[1:], S3_PROBES)
        return

    from vmvault.config import Settings
    from vmvault.storage.s3 import UPLOADS

    tmp = Path(tempfile.mkdtemp(prefix="vmvault-bench-s3-", dir="/var/tmp"))
    tmp.chmod(0o755)  # QEMU (libvirt-qemu) reaches the NBD socket under the work dir
    env = {
        **os.environ,
        "VMVAULT_HOME": str(tmp / "home"),
        "VMVAULT_WORK_DIR": str(tmp / "run"),
    }
    os.environ.update({k: env[k] for k in ("VMVAULT_HOME", "VMVAULT_WORK_DIR")})
    readers = Settings.from_env(env).workers
    t_start = time.monotonic()
    load = [os.getloadavg()]

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    facts: dict[str, Any] = {"uploads": UPLOADS, "readers": readers}
    rounds: dict[str, list[Row]] = {}
    rows: list[Row] = []
    vmvault(env, "lab", "down")  # leftovers of an interrupted run of this prefix
    vmvault(env, "lab", "storage", "down")
    lab: Lab | None = None
    try:
        log("lab storage up")
        doc = vmvault_json(env, "lab", "storage", "up")
        env.update(
            AWS_ACCESS_KEY_ID=doc["access_key"],
            AWS_SECRET_ACCESS_KEY=doc["secret_key"],
            BENCH_S3_ENDPOINT=doc["endpoint"],
            BENCH_S3_REGION=doc["region"],
        )
        status = vmvault_json(env, "lab", "storage", "status")
        bench = Bench(tmp, env, log)
        names = {"mon.a": "mon", "osd.0": "osd", "client.rgw.gw": "rgw"}
        bench.daemons = {names.get(d, d): pid for d, pid in status["daemons"].items()}
        for b in (BUCKET, CEILING_BUCKET, COPY_BUCKET):
            bench.s3.create_bucket(Bucket=b)
        log("lab up: 1 standard guest")
        vmvault(env, "lab", "up", "--variant", "standard", "--count", "1")
        lab = bench.lab = Lab(env)
        vm = bench.vm
        vm_dir = lab.paths(vm)[0].parent
        lab.destroy(vm)
        make_ext4_qcow2(vm_dir / "data3.qcow2", args.vdc_gib * GiB, tmp)
        lab.attach(vm, vm_dir / "data3.qcow2", "vdc")
        lab.start(vm)
        t0 = time.monotonic()
        facts["fill_listing"] = lab.guest(vm, FILL.format(random_mib=args.random_mib), 600)
        log(f"vdc filled in {time.monotonic() - t0:.0f}s")
        facts["sizes"] = {t: lab.dom(vm).blockInfo(t)[0] for t in lab.disks(vm)}
        objects_file = tmp / "objects.json"

        # a throwaway backup after the kept full would prune that full's checkpoint: first
        log("probe: an S3 full in-process, timed by phase (throwaway vault)")
        had = bench.checkpoints()
        probe_env = bench.home("home-probe", ("s3", f"{BUCKET}/probe/"))
        facts["probe_full"] = bench.probe(probe_env)
        bench.forget_checkpoints(had)
        delete_prefix(bench.s3, BUCKET, "probe/")

        # 1. interleaved rounds
        main_env: dict[str, str] = {}
        for k in range(args.rounds):
            last = k == args.rounds - 1
            log(f"round {k + 1}/{args.rounds}: local full")
            had = bench.checkpoints()
            loc_env = bench.home(f"home-local{k}", ("loc", None))
            rounds.setdefault("local full", []).append(
                bench.backup(loc_env, "loc", "full backup to a local vault", "vmvault", None)
            )
            log(f"round {k + 1}/{args.rounds}: local incremental, no change")
            rounds.setdefault("local noop", []).append(
                bench.backup(
                    loc_env, "loc", "incremental to a local vault, no change", "vmvault", None
                )
            )
            bench.forget_checkpoints(had)
            shutil.rmtree(tmp / f"home-local{k}")
            if args.baseline is not None:
                base_rows(bench, tmp, args.baseline, k, rounds)
            log(f"round {k + 1}/{args.rounds}: S3 full")
            prefix = "vault/" if last else f"rep{k}/"
            had = bench.checkpoints()
            s3_env = bench.home("home" if last else f"home-s3{k}", ("s3", f"{BUCKET}/{prefix}"))
            full = bench.backup(s3_env, "s3", "full backup to the S3 vault", "vmvault", prefix)
            rounds.setdefault("s3 full", []).append(full)
            if k == 0:
                objects = stored_objects(bench.s3, BUCKET, prefix)
                objects_file.write_text(json.dumps(objects))
                facts["objects"] = len(objects)
                facts["object_bytes"] = sum(objects.values())
                facts["object_kinds"] = {
                    kind: sum(1 for o in objects if o.startswith(kind)) for kind in STORED
                }
            ceiling_prefix = f"r{k}/"
            rounds.setdefault("put", []).append(
                bench.transfer("put", ceiling_prefix, objects_file, UPLOADS, "PUT of the objects")
            )
            rounds.setdefault("get", []).append(
                bench.transfer("get", ceiling_prefix, objects_file, readers, "GET of the objects")
            )
            rounds.setdefault("put8", []).append(
                bench.transfer(
                    "put", f"x{k}/", objects_file, INFO_THREADS,
                    f"PUT of the objects, {INFO_THREADS} threads (info)",
                )
            )  # fmt: skip
            rounds.setdefault("get8", []).append(
                bench.transfer(
                    "get", ceiling_prefix, objects_file, INFO_THREADS,
                    f"GET of the objects, {INFO_THREADS} threads (info)",
                )
            )  # fmt: skip
            rounds.setdefault("restore", []).append(
                bench.restore(
                    s3_env, full.extra["point"]["id"], "restore --disks-only from the S3 vault"
                )
            )
            delete_prefix(bench.s3, CEILING_BUCKET, ceiling_prefix)
            delete_prefix(bench.s3, CEILING_BUCKET, f"x{k}/")
            if last:
                main_env = s3_env
            else:
                bench.forget_checkpoints(had)
                shutil.rmtree(tmp / f"home-s3{k}")
                delete_prefix(bench.s3, BUCKET, prefix)
        medians = {name: median_of(runs) for name, runs in rounds.items()}

        # 2. incrementals on the kept S3 vault
        log("S3 incremental, no change")
        rows.append(bench.backup(main_env, "s3", "incremental, no change", "vmvault", "vault/"))
        log("probe: one more no-change S3 incremental, timed by phase")
        facts["probe_inc"] = bench.probe(main_env)
        allocated_bytes = medians["local full"].data
        change = max(1, round(allocated_bytes / 100 / MiB))
        script, changed = change_script(change, args.random_mib, seed=7)
        facts["changed"] = changed
        lab.guest(vm, script)
        log(f"S3 incremental after {change} MiB rewritten")
        rows.append(
            bench.backup(
                main_env, "s3", f"incremental, {change} MiB (~1 %) changed", "vmvault", "vault/"
            )
        )

        # 3. the copy
        try:
            rows.extend(copy_rows(bench, tmp, args.random_mib))
        except RuntimeError as e:  # a failed copy is a result: reported, not hidden
            failed = Row(
                "vmvault", "copy local -> S3", 0, measure(["true"], env), None,
                f"FAILED: {str(e)[:400]}",
            )  # fmt: skip
            rows.append(failed)
    finally:
        log("lab down, lab storage down")
        if lab is not None:
            with contextlib.suppress(Exception):
                lab.conn.close()
        vmvault(env, "lab", "down")
        vmvault(env, "lab", "storage", "down")
        load.append(os.getloadavg())
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    facts["seconds"] = time.monotonic() - t_start
    if args.baseline is not None:
        facts["baseline"] = f"{args.baseline} at {git_head(args.baseline)}"
    report(medians, rows, facts, load)


def git_head(checkout: Path) -> str:
    import subprocess

    out = subprocess.run(
        ["git", "-C", str(checkout), "log", "-1", "--format=%h"], capture_output=True, text=True
    )
    return out.stdout.strip() or "?"


def base_rows(bench: Bench, tmp: Path, checkout: Path, k: int, rounds: dict[str, Any]) -> None:
    """Round ``k`` of the baseline checkout's local and S3 fulls (``--baseline``): the same
    VM, fresh homes and vaults (made by this checkout: one format), its own ``vmvault``."""
    exe = str(checkout / ".venv" / "bin" / "vmvault")
    for kind, where in (("local", None), ("s3", f"{BUCKET}/base{k}/")):
        bench.log(f"round {k + 1}: baseline {kind} full")
        had = bench.checkpoints()
        env = bench.home(f"home-base-{kind}{k}", (kind, where))
        op = f"full backup to {'a local' if kind == 'local' else 'the S3'} vault, baseline code"
        prefix = None if where is None else f"base{k}/"
        rounds.setdefault(f"base {kind} full", []).append(
            bench.backup(env, kind, op, "vmvault (baseline)", prefix, exe)
        )
        bench.forget_checkpoints(had)
        shutil.rmtree(tmp / f"home-base-{kind}{k}")
        if prefix is not None:
            delete_prefix(bench.s3, BUCKET, prefix)


def local_chunks(vault_dir: Path) -> set[str]:
    return {str(f.relative_to(vault_dir)) for f in (vault_dir / "chunks").rglob("*") if f.is_file()}


def copy_rows(bench: Bench, tmp: Path, random_mib: int) -> list[Row]:
    """Copies local -> S3 of a first point (nothing present) and of a second point with about
    half of its chunks changed (the rest present): see the docstring, 3."""
    bench.log("copy: full backup into a local vault, copied to an empty S3 vault")
    env = bench.home("home-copy", ("loc", None), ("offsite", f"{COPY_BUCKET}/copy/"))
    vault_dir = tmp / "home-copy" / "vaults" / "loc"
    bench.backup(env, "loc", "full backup to a local vault", "vmvault", None)
    first = bench.copy(env, "copy local -> S3 of a first point, nothing present", None)
    b_chunks = sum(1 for k in listing(bench.s3, COPY_BUCKET, "copy/chunks/"))
    mib = min(random_mib, 4 * round(b_chunks / 2))
    bench.log(f"copy: {mib} MiB of random.bin rewritten (half of {b_chunks} chunks), backup")
    bench.lab_guest(
        f"dd if=/dev/urandom of=/data3/random.bin bs=1M count={mib} conv=notrunc 2>/dev/null"
        " && sync"
    )
    had = local_chunks(vault_dir)
    bench.backup(env, "loc", "incremental to a local vault", "vmvault", None)
    new_in_a = len(local_chunks(vault_dir) - had)
    second = bench.copy(env, "copy local -> S3 of a second point, ~half present", new_in_a)
    return [first, second]


# --- the report -----------------------------------------------------------------------------


def print_rows(rows: list[Row], bound: dict[str, float]) -> None:
    print(
        "| tool | operation | data MB | seconds | MB/s | vs bound | CPU s | RGW CPU s "
        "| OSD CPU s | QEMU CPU s | peak RSS MiB | sent MB | host busy | notes |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        w = r.run.watched
        cell = {k: f"{w[k]:.2f}" if w.get(k) is not None else "" for k in ("rgw", "osd", "qemu")}
        vs = f"{bound[r.op]:.2f}" if r.op in bound else ""
        sent = f"{r.stored / 1e6:,.1f}" if r.stored is not None else ""
        mbps = f"{r.mbps:,.0f}" if r.run.wall > 0 and r.data else ""
        print(
            f"| {r.tool} | {r.op} | {r.data / 1e6:,.0f} | {r.run.wall:.2f} | {mbps} | {vs} | "
            f"{r.run.cpu:.2f} | {cell['rgw']} | {cell['osd']} | {cell['qemu']} | "
            f"{r.run.rss_mib:.0f} | {sent} | {r.run.busy:.0%} | {r.note} |"
        )


def cpu_total(r: Row) -> float:
    """CPU seconds of the command and of everything it made work: RGW, OSD, QEMU, mon."""
    w = r.run.watched
    return r.run.cpu + sum(float(w.get(k) or 0) for k in ("rgw", "osd", "qemu", "mon"))


def report(
    m: dict[str, Row], rows: list[Row], facts: dict[str, Any], load: list[tuple[float, ...]]
) -> None:
    put, get, s3_full, loc_full, restore = (
        m["put"], m["get"], m["s3 full"], m["local full"], m["restore"]
    )  # fmt: skip
    local_slower = loc_full.run.wall > put.run.wall
    bound_full = loc_full if local_slower else put
    full_ratio = bound_full.run.wall / s3_full.run.wall
    restore_ratio = get.run.wall / restore.run.wall
    sizes = facts["sizes"]
    print()
    print(
        f"Guest {PREFIX}-standard-1: "
        + " + ".join(f"{t} {n / GiB:g} GiB" for t, n in sizes.items())
        + f"; allocated {loc_full.data / 1e6:,.0f} MB; the S3 full stored "
        f"{facts['objects']} objects ("
        + ", ".join(f"{k.rstrip('/')} {n}" for k, n in facts["object_kinds"].items())
        + f"), {facts['object_bytes'] / 1e6:,.1f} MB. {os.cpu_count()} CPUs; load average "
        + " -> ".join(f"{a[0]:.1f}" for a in load)
        + f" (1-min load at the start of each measured operation: {min(LOAD):.1f}-"
        f"{max(LOAD):.1f}); run {facts['seconds']:.0f}s. S3 backend: {facts['uploads']} "
        f"uploads in flight; restore reads with {facts['readers']} threads (VMVAULT_WORKERS)."
    )
    print()
    print("Data on vdc (ls -l in the guest):")
    for ln in facts["fill_listing"].splitlines():
        if ln.endswith(".bin"):
            print(f"    {' '.join(ln.split()[4:])}")
    print()
    bound = {
        s3_full.op: full_ratio,
        restore.op: restore_ratio,
        put.op: 1.0,
        get.op: 1.0,
    }
    loc_noop = m["local noop"]
    base = [m[n] for n in ("base local full", "base s3 full") if n in m]
    if base:
        bound[base[-1].op] = bound_full.run.wall / base[-1].run.wall
    print_rows(
        [put, m["put8"], get, m["get8"], loc_full, s3_full, restore, loc_noop, *rows, *base],
        bound,
    )
    print()
    noop, inc, copy = rows[0], rows[1], rows[-1]
    noop_ratio = loc_noop.run.wall / noop.run.wall
    rss = max(r.run.rss_mib for r in (s3_full, loc_full, noop, inc))
    pinc = inc.extra["point"]
    put_rate = put.data / put.run.wall
    expected = noop.run.wall + (inc.stored or 0) / put_rate
    checks = [
        (
            "S3 full within 1.25 x its bound (ratio >= 0.8); bound = "
            + (
                "the local full (slower than the ceiling PUT)"
                if local_slower
                else "the ceiling PUT (the local full is faster)"
            ),
            f"{bound_full.run.wall:.2f} s / {s3_full.run.wall:.2f} s = {full_ratio:.2f} "
            f"(ceiling PUT {put.run.wall:.2f} s, local full {loc_full.run.wall:.2f} s)",
            full_ratio >= 0.8,
        ),
        (
            "restore from S3 within 1.25 x the ceiling GET",
            f"{get.run.wall:.2f} s / {restore.run.wall:.2f} s = {restore_ratio:.2f}",
            restore_ratio >= 0.8,
        ),
        (
            "incremental: bytes read and sent ~ changed bytes (4 MiB chunks: a 1 MiB change "
            "costs up to one chunk)",
            f"{facts['changed'] / 1e6:,.1f} MB changed in {facts['changed'] // MiB} runs of "
            f"1 MiB; read {pinc['bytes_read'] / 1e6:,.1f} MB, sent "
            f"{(inc.stored or 0) / 1e6:,.1f} MB in {inc.extra['sent_objects']} objects",
            (inc.stored or 0) <= 4 * MiB * (facts["changed"] // MiB) + 4 * MiB,
        ),
        (
            "incremental: time ~ changed bytes: what does not depend on them (the no-change "
            "incremental) within 1.25 x the same on a local vault, and the rest ~ the bytes sent",
            f"no-change: local {loc_noop.run.wall:.2f} s / S3 {noop.run.wall:.2f} s = "
            f"{noop_ratio:.2f}; {inc.run.wall:.2f} s = no-change {noop.run.wall:.2f} s + "
            f"{inc.run.wall - noop.run.wall:.2f} s (sent bytes at the ceiling PUT rate: "
            f"{(inc.stored or 0) / put_rate:.2f} s; overhead + that = {expected:.2f} s)",
            noop_ratio >= 0.8 and inc.run.wall <= 1.25 * expected,
        ),
        (
            "peak RSS of backups <= 100 MiB",
            f"max {rss:.0f} MiB (S3 full {s3_full.run.rss_mib:.0f}, local full "
            f"{loc_full.run.rss_mib:.0f})",
            rss <= 100,
        ),
    ]
    if copy.extra:
        c = copy.extra
        exact = c["chunks_sent"] == c["objects"] == c["expected"]
        checks.append(
            (
                "copy of a point with ~half its chunks on S3 sends only the missing ones",
                f"{c['chunks_sent']} of {c['total']} chunks sent "
                f"({c['chunks_sent'] / max(1, c['total']):.0%}); {c['objects']} chunk objects "
                f"added to the bucket; {c['expected']} chunks were new in the local vault",
                exact and c["chunks_present"] > 0,
            )
        )
    else:
        checks.append(("copy sends only the missing chunks", copy.note, False))
    print("| target | measured | |")
    print("|---|---|---|")
    for name, measured, ok in checks:
        print(f"| {name} | {measured} | {'pass' if ok else '**FAIL**'} |")
    print()
    cores = os.cpu_count() or 1
    floor_full, floor_put = cpu_total(s3_full) / cores, cpu_total(put) / cores
    print(
        f"CPU floor on these {cores} cores (every process's CPU seconds during the row, RGW "
        f"and OSD included, / {cores}): S3 full >= {floor_full:.2f} s, ceiling PUT >= "
        f"{floor_put:.2f} s; so the best S3 full ratio this machine allows is "
        f"{put.run.wall:.2f} / {floor_full:.2f} = {put.run.wall / floor_full:.2f}."
    )
    if "base s3 full" in m and "base local full" in m:
        b_s3, b_loc = m["base s3 full"], m["base local full"]
        print()
        print(
            f"Baseline code in the same rounds ({facts.get('baseline')}): S3 full "
            f"{b_s3.run.wall:.2f} s (ratio {bound_full.run.wall / b_s3.run.wall:.2f} against "
            f"the same bound), peak RSS {b_s3.run.rss_mib:.0f} MiB; local full "
            f"{b_loc.run.wall:.2f} s, peak RSS {b_loc.run.rss_mib:.0f} MiB. This code: S3 full "
            f"{s3_full.run.wall:.2f} s (ratio {full_ratio:.2f}), {s3_full.run.rss_mib:.0f} MiB; "
            f"local full {loc_full.run.wall:.2f} s, {loc_full.run.rss_mib:.0f} MiB."
        )
    print()
    print("CPU seconds during each row (median run), process / RGW / OSD / QEMU / mon:")
    for r in (put, get, loc_full, s3_full, restore, loc_noop, noop, inc):
        w = r.run.watched
        print(
            f"    {r.op[:44]:44} {r.run.cpu:6.2f} / {w.get('rgw', 0):6.2f} / "
            f"{w.get('osd', 0):6.2f} / {w.get('qemu') or 0:6.2f} / {w.get('mon', 0):5.2f}"
            f"  in {r.run.wall:.2f} s"
        )

    probes = [
        ("full (throwaway vault)", facts["probe_full"]),
        ("no-change inc", facts["probe_inc"]),
    ]
    print()
    print("In-process probes (``op_probe``): seconds by phase")
    print()
    print("| phase | " + " | ".join(name for name, _ in probes) + " |")
    print("|---|" + "---:|" * len(probes))
    labels = list(dict.fromkeys(k for _, p in probes for k in p["times"]))
    for label in labels:
        name = label.strip()
        indent = "&nbsp;&nbsp;" * ((len(label) - len(name)) // 2)
        cells = " | ".join(
            f"{p['times'][label]:.3f}" if label in p["times"] else "" for _, p in probes
        )
        print(f"| {indent}{name} | {cells} |")
    print()
    print("S3 requests of those runs: count, summed seconds (concurrent requests overlap)")
    print()
    print("| operation | " + " | ".join(name for name, _ in probes) + " |")
    print("|---|" + "---:|" * len(probes))
    ops = sorted({k for _, p in probes for k in p["requests"]})
    for op in ops:
        cells = " | ".join(
            "{:,} / {:.2f} s".format(*p["requests"][op]) if op in p["requests"] else ""
            for _, p in probes
        )
        print(f"| {op} | {cells} |")
    print()
    for name, p in probes:
        r = p["run"]
        print(
            f"RSS of the {name} probe (MiB): "
            + ", ".join(f"{k} {v:.0f}" for k, v in p["mem"].items())
            + f"; its process {r.cpu:.2f} CPU s, RGW {r.watched.get('rgw', 0):.2f}, OSD "
            f"{r.watched.get('osd', 0):.2f}, QEMU {r.watched.get('qemu') or 0:.2f} in {r.wall:.2f} s"
        )


if __name__ == "__main__":
    main()
