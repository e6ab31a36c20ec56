"""The control plane at fleet scale (issue 15; docs/deployment.md, "Fleet scale").

    VMVAULT_LAB_PREFIX=fleet VMVAULT_LAB_DIR=/var/lib/vmvault/lab-fleet \\
        .venv/bin/python bench/fleet.py [--vms 2000 --hosts 8 --protect 1000 --rounds 5]
        [--points 10] [--engines sqlite,postgresql] [--libvirtd test+tcp://127.0.0.1:PORT]
        [--serve]

A fleet of ``--vms`` libvirt test-driver domains over ``--hosts`` hosts
(vmvault/hypervisor/lab/fleet.py, made as tests/unit/fleet_world.py makes it), in a fresh
catalog per engine (SQLite in a temporary home; PostgreSQL: a new database in the lab's
cluster, ``vmvault lab catalog up``, dropped at the end); each protected VM gets
``--points`` recovery points (one a day, inserted in one statement: ``add_many``) once
protected.  Measured, against its target:

* discovery of every VM, as the CLI runs it (``vmvault discover``: a subprocess, wall time),
  the first (all new) and a second (all unchanged); the note gives the CPU that the test
  driver's own parsing of the hosts' files at open takes (in whichever process opens them).
  With ``--libvirtd``, the hosts are reached through that libvirtd (e.g. the lab's second
  host, ``vmvault lab host up``, whose test driver opens the files): their parse is its
  work, as a real host's is, and each libvirt call a round trip;
* ``vm list``, ``protection list`` and ``dashboard`` as CLI subprocesses (default page, and
  ``--limit 1000``), median of ``--rounds``; the floor is ``vmvault vault list`` (process
  start, imports, the catalog opened) in the same run;
* the same commands through the remote CLI (``vmvault --server URL …``) against a real
  ``vmvault serve`` on a copy of the catalog, with the floors of a remote command measured
  in the same run: ``python -c pass`` and its unavoidable imports (bench/fleet_remote.py);
* the API routes ``GET /vms``, ``/protection``, ``/dashboard``, ``/points``, ``/policies``,
  ``/hosts`` and ``/metrics`` (a Prometheus scrape) in process (TestClient, a real reader
  token), median of ``--rounds``; and, for
  scale, the vault's points read whole in process (what the dashboard and the protection
  list read before they counted them in the database);
* a slot of a policy protecting ``--protect`` VMs: two schedulers of two nodes tick at the
  same instant (threads behind a barrier, their own connections, the leader lease): wall time
  of the tick that fired, jobs queued, distinct VMs;
* the catalog's cost per job: those jobs claimed by 2 and by 8 worker processes
  (``QueueService.claim_next``, the server's path: the claim and its log line), claims per
  second; the ceiling is the same processes running empty transactions (``SELECT 1``).

``--api-only``: the fleet and its points as above, then only the API routes' rows and the
points read whole (no CLI, remote CLI, slot or claim rows): a before/after of the routes.

Prints one Markdown table per engine: wall time and CPU seconds (a subprocess's from
``wait4``; in process, ``time.process_time``: on a shared machine the CPU is what the
targets are held against), the ratio of wall time to the target, peak RSS (subprocesses:
GNU time; workers: their own ``ru_maxrss``) and the 1-minute load average at the start of
each row.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import ROOT, VMVAULT, measure
from fleet_remote import pg_database, remote_rows, serve_until_stopped

sys.path.insert(0, str(ROOT))  # tests.unit.fleet_world: the fleet the tests make

TARGET_DISCOVERY = 10.0
TARGET_LIST = 0.3
TARGET_SLOT = 5.0


def load() -> float:
    return os.getloadavg()[0]


def median(times: list[float]) -> float:
    return statistics.median(times)


class Table:
    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.rows: list[tuple[str, ...]] = []

    def add(
        self,
        what: str,
        value: str,
        cpu: str,
        target: str,
        ratio: str,
        rss: str,
        load_: float,
        note: str = "",
    ) -> None:
        self.rows.append((what, value, cpu, target, ratio, rss, f"{load_:.1f}", note))
        print(f"  {what}: {value}, CPU {cpu} ({note})", file=sys.stderr, flush=True)

    def print(self) -> None:
        print(f"\n### {self.engine}\n")
        head = ("measured", "wall", "CPU", "target", "wall / target", "peak RSS", "load", "note")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in self.rows:
            print("| " + " | ".join(r) + " |")


# --- catalogs ----------------------------------------------------------------------------------


def pg_url(db: str) -> tuple[str, Callable[[], None]]:
    """A new database in the lab's PostgreSQL (``vmvault lab catalog up``), and its drop."""
    up = subprocess.run(
        [VMVAULT, "lab", "catalog", "up", "--json"], capture_output=True, text=True, check=True
    )
    run = json.loads(up.stdout)["dir"] + "/run"
    drop = pg_database(run, db)
    return f"postgresql+psycopg://vmvault@/{db}?host={run}", drop


# --- claim workers (a process each) --------------------------------------------------------------


def claim_worker(url: str, home: str, start_at: float, empty: int) -> None:
    """Claim queued jobs until none is left (``empty`` 0), or run ``empty`` empty
    transactions; print what was done, when, and this process's peak RSS."""
    from sqlalchemy import text
    from tests.unit.fleet_world import fleet_services

    services = fleet_services(Path(home), url)
    queue = services.queue
    with services._uow() as uow:  # connect and import before the start
        uow.conn.execute(text("SELECT 1"))
    time.sleep(max(0.0, start_at - time.time()))
    began = time.time()
    done = 0
    if empty:
        for _ in range(empty):
            with services._uow() as uow:
                uow.conn.execute(text("SELECT 1"))
                uow.commit()
            done += 1
    else:
        while queue.claim_next() is not None:
            done += 1
    ended = time.time()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"done": done, "began": began, "ended": ended, "rss_mib": rss}))
    services.close()


def run_workers(url: str, home: Path, workers: int, empty: int = 0) -> tuple[float, int, float]:
    """``workers`` claim processes started together: (per second, done, max peak RSS MiB)."""
    start_at = time.time() + 2.0 + 0.6 * workers  # every process imported and connected
    argv = [sys.executable, __file__, "--claim-worker", url, str(home), str(start_at)]
    procs = [
        subprocess.Popen([*argv, str(empty // workers if empty else 0)], stdout=subprocess.PIPE)
        for _ in range(workers)
    ]
    docs = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"claim worker exited {p.returncode}")
        docs.append(json.loads(out))
    done = sum(d["done"] for d in docs)
    began = min(d["began"] for d in docs)
    ended = max(d["ended"] for d in docs)
    return done / (ended - began), done, max(d["rss_mib"] for d in docs)


# --- one engine -----------------------------------------------------------------------------------


def cli_rows(
    table: Table, services: Any, url: str, home: Path, env: dict[str, str], args: argparse.Namespace
) -> None:
    """The listings and the dashboard, as the CLI runs them: locally, then through the remote
    CLI against a real ``vmvault serve`` (bench/fleet_remote.py)."""
    commands = [
        ("`vault list` (floor)", ["vault", "list", "--json"]),
        ("`vm list`", ["vm", "list"]),
        ("`vm list --limit 1000 --json`", ["vm", "list", "--limit", "1000", "--json"]),
        ("`protection list`", ["protection", "list"]),
        ("`protection list --limit 1000 --json`", ["protection", "list", "--limit", "1000",
                                                   "--json"]),
        ("`dashboard`", ["dashboard"]),
        ("`dashboard --json`", ["dashboard", "--json"]),
    ]  # fmt: skip
    floor = None
    for label, words in commands:
        la = load()
        runs = [measure([VMVAULT, *words], env) for _ in range(args.rounds)]
        wall = median([r.wall for r in runs])
        cpu = median([r.cpu for r in runs])
        floor = wall if floor is None else floor
        spread = " / ".join(f"{r.wall:.2f}" for r in runs)
        table.add(
            f"{label} (CLI)", f"{wall * 1000:.0f} ms", f"{cpu * 1000:.0f} ms",
            f"< {TARGET_LIST * 1000:.0f} ms",
            f"{wall / TARGET_LIST:.2f}", f"{max(r.rss_mib for r in runs):.0f} MiB", la,
            f"median of {spread} s; {wall - floor:+.3f} s over the floor",
        )  # fmt: skip

    # the same through the remote CLI, against a real `vmvault serve` (bench/fleet_remote.py)
    remote_rows(table, services, url, home, args.rounds)


def analyze(url: str) -> None:
    """PostgreSQL's planner statistics brought up to date after the bulk load, as autovacuum
    does within a minute of a load this size: without them it plans the 10,000 points as
    ~1,400 (a sort instead of a hash for the per-VM counts: 25 ms instead of 8)."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


def bench_engine(engine: str, args: argparse.Namespace, tmp: Path) -> Table:
    import libvirt
    from fastapi.testclient import TestClient
    from sqlalchemy import update
    from tests.unit.fleet_world import (
        LOCATION,
        MADE_AT,
        POLICY,
        SCHEDULE,
        SLOT_DUE,
        VAULT,
        Clock,
        add_points,
        fleet_services,
        protect_first,
    )

    from vmvault.api.app import create_app
    from vmvault.domain.access import Role
    from vmvault.domain.job import JobState, JobType
    from vmvault.domain.retention import Retention
    from vmvault.hypervisor.lab.fleet import write_fleet
    from vmvault.persistence import tables as t
    from vmvault.services.scheduler import SchedulerService

    through = f" (hosts through {args.libvirtd})" if args.libvirtd else ""
    table = Table(
        f"{engine}: {args.vms} VMs over {args.hosts} hosts{through}, {args.protect} protected"
    )
    home = tmp / engine / "home"
    drop: Callable[[], None] = lambda: None  # noqa: E731
    if engine == "postgresql":
        url, drop = pg_url(f"bench_fleet_{os.getpid()}")
    else:
        url = f"sqlite:///{home}/catalog.db"
    env = os.environ | {"VMVAULT_HOME": str(home), "VMVAULT_CATALOG_URL": url}
    env["VMVAULT_GC_SCHEDULE"] = "off"
    clock = Clock(MADE_AT)
    services = fleet_services(home, url, clock)
    try:
        made = write_fleet(tmp / engine / "fleet", args.vms, args.hosts)
        services.vaults.create(VAULT, LOCATION, None)
        services.policies.create(VAULT, POLICY, SCHEDULE, "UTC", Retention(daily=7))
        uris = [h.uri.replace("test://", args.libvirtd or "test://", 1) for h in made]
        for uri in uris:
            services.vaults.add_host(uri, LOCATION)

        # discovery, as the CLI runs it; the test driver parses a host's file when it is
        # opened, in the opening process: the hosts' own work, which a real host does in its
        # libvirtd, measured here apart (the CPU of opening every host once)
        opening = time.process_time()
        for uri in uris:
            libvirt.open(uri).close()
        opening = time.process_time() - opening
        where = "in libvirtd" if args.libvirtd else f"{opening:.2f} s CPU"
        for kind in ("all new", "all unchanged"):
            la = load()
            run = measure([VMVAULT, "discover", "--vault", VAULT, "--json"], env)
            found = json.loads(run.out)["result"]
            counts = {k: len(v) for k, v in found.items() if isinstance(v, list)}
            table.add(
                f"discovery, {kind} (CLI)", f"{run.wall:.2f} s", f"{run.cpu:.2f} s",
                f"< {TARGET_DISCOVERY:.0f} s",
                f"{run.wall / TARGET_DISCOVERY:.2f}", f"{run.rss_mib:.0f} MiB", la,
                ", ".join(f"{n} {k}" for k, n in counts.items() if n)
                + f"; the test driver's opening of the hosts: {where}",
            )  # fmt: skip
        protect_first(services, args.protect)
        points = add_points(services, args.points)
        if engine == "postgresql":
            analyze(url)
        if args.serve:
            serve_until_stopped(services, url, home)
            return table
        if not args.api_only:
            cli_rows(table, services, url, home, env, args)
        # the API routes, in process
        _, secret = services.tokens.create("bench", Role.READER, "bench")
        app = create_app(services, authenticate=services.tokens.authenticate)
        client = TestClient(app, headers={"Authorization": f"Bearer {secret}"})
        clock.now = time_now()
        for path, params in (
            ("/api/v1/vms", {}),
            ("/api/v1/vms", {"limit": 1000}),
            ("/api/v1/protection", {}),
            ("/api/v1/protection", {"limit": 1000}),
            ("/api/v1/dashboard", {}),
            ("/api/v1/points", {}),
            ("/api/v1/points", {"limit": 1000}),
            ("/api/v1/policies", {}),
            ("/api/v1/hosts", {}),
            ("/metrics", {}),
        ):
            la = load()
            times, cpus = [], []
            for _ in range(args.rounds):
                t0, c0 = time.perf_counter(), time.process_time()
                r = client.get(path, params=params)
                times.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                r.raise_for_status()
            wall, cpu = median(times), median(cpus)
            shown = f"{path}?limit={params['limit']}" if params else path
            total = r.headers.get("X-Total-Count")
            table.add(
                f"GET {shown} (API)", f"{wall * 1000:.0f} ms", f"{cpu * 1000:.0f} ms",
                f"< {TARGET_LIST * 1000:.0f} ms",
                f"{wall / TARGET_LIST:.2f}", "-", la,
                f"median of {args.rounds}" + (f"; X-Total-Count {total}" if total else ""),
            )  # fmt: skip
        la = load()
        times, cpus = [], []
        for _ in range(args.rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            with services._uow() as uow:
                whole = uow.points.held(VAULT)
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        table.add(
            "the vault's points read whole (in process; the old inputs)",
            f"{median(times) * 1000:.0f} ms", f"{median(cpus) * 1000:.0f} ms", "-", "-", "-",
            la, f"median of {args.rounds}; {len(whole)} points ({len(points)} inserted)",
        )  # fmt: skip

        if args.api_only:
            return table

        # one slot, two schedulers racing
        clock.now = SLOT_DUE
        racers = [fleet_services(home, url, clock) for _ in range(2)]
        schedulers = [
            SchedulerService(s._uow, clock, None, node=f"bench-node-{i}")
            for i, s in enumerate(racers)
        ]
        barrier = threading.Barrier(2)
        fired: list[Any] = [None, None]
        walls = [0.0, 0.0]

        def tick(i: int) -> None:
            barrier.wait()
            t0 = time.perf_counter()
            fired[i] = schedulers[i].tick()
            walls[i] = time.perf_counter() - t0

        la = load()
        c0 = time.process_time()
        threads = [threading.Thread(target=tick, args=(i,)) for i in (0, 1)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        cpu = time.process_time() - c0
        winner = max((0, 1), key=lambda i: len(fired[i] or []))
        jobs = services.jobs.list_jobs(job_type=JobType.BACKUP, limit=100_000)
        queued = [j for j in jobs if j.state is JobState.QUEUED]
        distinct = len({j.vm_uuid for j in queued})
        assert len(queued) == distinct == args.protect, (len(queued), distinct)
        table.add(
            f"slot of {args.protect} VMs, 2 schedulers racing", f"{walls[winner]:.2f} s",
            f"{cpu:.2f} s (both)", f"< {TARGET_SLOT:.0f} s", f"{walls[winner] / TARGET_SLOT:.2f}", "-", la,
            f"{len(queued)} jobs queued, {distinct} VMs, once each; the other tick "
            f"{walls[1 - winner]:.3f} s, fired {len(fired[1 - winner] or [])}",
        )  # fmt: skip
        for s in racers:
            s.close()

        # the catalog's cost per job: claims per second
        for workers in (2, 8):
            with services._uow() as uow:  # every job queued again, unclaimed
                uow.conn.execute(
                    update(t.jobs)
                    .where(t.jobs.c.type == JobType.BACKUP.value)
                    .values(state=JobState.QUEUED.value, node=None, pid=None, started_at=None)
                )
                uow.commit()
            la = load()
            rate, done, rss = run_workers(url, home, workers)
            ceiling, _, _ = run_workers(url, home, workers, empty=args.protect)
            table.add(
                f"claims, {workers} worker processes", f"{rate:.0f} /s", "-", "-",
                f"{rate / ceiling:.2f} of the ceiling", f"{rss:.0f} MiB", la,
                f"{done} jobs claimed once each; ceiling {ceiling:.0f} empty transactions/s",
            )  # fmt: skip
            assert done == args.protect, done
    finally:
        services.close()
        drop()
    return table


def time_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--claim-worker":
        url, home, start_at, empty = sys.argv[2:6]
        claim_worker(url, home, float(start_at), int(empty))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=2000)
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--protect", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--points", type=int, default=10, help="points per protected VM")
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--libvirtd", help="reach the hosts through it: test+tcp://127.0.0.1:PORT")
    ap.add_argument(
        "--api-only", action="store_true", help="only the API routes' rows (no CLI, slot, claims)"
    )
    ap.add_argument(
        "--serve",
        action="store_true",
        help="set the fleet up (the first engine), then only serve it as the remote rows do, "
        "until SIGINT/SIGTERM: for profiling a remote command by hand",
    )
    args = ap.parse_args()
    import vmvault

    # as tests/conftest.py does: each CLI process reads bytecode instead of compiling
    compileall.compile_dir(Path(vmvault.__file__).parent, quiet=2)
    print(f"load at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        engines = args.engines.split(",")[:1] if args.serve else args.engines.split(",")
        tables = [bench_engine(e, args, Path(tmp)) for e in engines]
    for table in tables:
        table.print()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nload at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          f"this process's peak RSS {rss:.0f} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
