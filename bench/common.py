"""What the benchmarks in bench/ share: one measured operation per process (wall time, CPU
seconds and peak RSS from ``wait4``), dropping the page cache of files before they are read,
the rows of a table and the median of rounds, and the lab guest with a data disk filled in
the guest.

Nothing here imports vmvault at import time: a benchmark sets ``VMVAULT_LAB_PREFIX`` first.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

URI = "qemu:///system"
ROOT = Path(__file__).resolve().parents[1]
VMVAULT = str(ROOT / ".venv" / "bin" / "vmvault")
MiB = 1 << 20
GiB = 1 << 30

GNU_TIME = "/usr/bin/time"  # reports a command's own peak RSS (see measure)
LOAD: list[float] = []  # 1-minute load average at the start of each measured operation


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mib: float
    rc: int
    out: str
    err: str
    busy: float = 0.0  # share of all CPUs of the machine busy meanwhile (anyone's work)
    qemu_cpu: float | None = None  # CPU seconds of the guest's QEMU process meanwhile
    ended: float = 0.0  # time.time() when the process had exited
    watched: dict[str, float] = field(default_factory=dict)  # CPU s of other processes meanwhile


def host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return sum(f) - f[3] - f[4], sum(f)


def proc_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _files(paths: list[Path]) -> Iterator[Path]:
    """These files, and every file under these directories."""
    for p in paths:
        if p.is_file():
            yield p
        else:
            yield from (Path(r) / f for r, _, fs in os.walk(p) for f in fs)


def fsync_tree(paths: list[Path]) -> None:
    for f in _files(paths):
        with contextlib.suppress(OSError):
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def drop_cache(paths: list[Path]) -> None:
    """Write back and drop the page cache of these files (or of every file under a dir)."""
    for f in _files(paths):
        with contextlib.suppress(OSError):
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def measure(
    cmd: list[str],
    env: dict[str, str],
    *,
    sync: list[Path] | None = None,
    ok: tuple[int, ...] = (0,),
    cwd: Path | None = None,
    qemu: int | None = None,
    watch: dict[str, int | None] | None = None,
) -> Run:
    """Run ``cmd`` in its own process; wall time includes fsyncing ``sync`` afterwards.

    Peak RSS is the command's own, as GNU time reports it from the ``wait4`` of a process it
    forked: ``ru_maxrss`` of a process forked from this (large) Python process and then
    exec'ed starts at this process's RSS (the kernel keeps the high-water mark of the mm it
    replaced), so our own ``wait4`` would report at least that much for any command.

    ``qemu``: pid of a guest's QEMU, whose CPU time meanwhile is recorded (it serves NBD);
    ``watch``: name -> pid of other processes whose CPU seconds meanwhile are recorded."""
    watch = watch or {}
    LOAD.append(os.getloadavg()[0])
    timed = os.access(GNU_TIME, os.X_OK)
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as rss,
    ):
        busy0, q0 = host_cpu(), proc_cpu(qemu)
        w0 = {k: proc_cpu(pid) for k, pid in watch.items()}
        started = time.perf_counter()
        argv = [GNU_TIME, "-f", "%M", "-o", rss.name, *cmd] if timed else cmd
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        ended = time.time()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if sync:
            fsync_tree(sync)
        wall = time.perf_counter() - started
        busy1, q1 = host_cpu(), proc_cpu(qemu)
        w1 = {k: proc_cpu(pid) for k, pid in watch.items()}
        out.seek(0)
        err.seek(0)
        run = Run(
            wall,
            usage.ru_utime + usage.ru_stime,
            (int(rss.read().split()[-1]) if timed else usage.ru_maxrss) / 1024,
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
            q1 - q0 if qemu is not None else None,
            ended,
            {k: w1[k] - w0[k] for k in watch},
        )
    if run.rc not in ok:
        raise RuntimeError(f"{' '.join(cmd)} exited {run.rc}:\n{run.err[-3000:]}{run.out[-2000:]}")
    return run


def du(path: Path) -> int:
    from offline import du as _du  # bench/offline.py: allocated bytes under a directory

    return _du(path)


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def map_allocated(image: Path) -> int:
    """Bytes of an image that read as data (``qemu-img map``: what base:allocation reports)."""
    proc = subprocess.run(
        ["qemu-img", "map", "-U", "--output=json", str(image)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return sum(e["length"] for e in json.loads(proc.stdout) if e["data"] and not e["zero"])


@dataclass
class Row:
    tool: str
    op: str
    data: int  # bytes the rate is computed over
    run: Run
    stored: int | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mbps(self) -> float:
        return self.data / self.run.wall / 1e6


def vmvault_json(env: dict[str, str], *args: str) -> Any:
    proc = subprocess.run([VMVAULT, *args, "--json"], env=env, capture_output=True, text=True)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"vmvault {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return json.loads(proc.stdout)


def vmvault(env: dict[str, str], *args: str) -> None:
    proc = subprocess.run([VMVAULT, *args], env=env, capture_output=True, text=True)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"vmvault {' '.join(args)} exited {proc.returncode}: {proc.stderr}")


def median_of(runs: list[Row]) -> Row:
    """The run with the median wall time, noting all of them."""
    ordered = sorted(runs, key=lambda r: r.run.wall)
    mid = ordered[len(ordered) // 2]
    if len(runs) == 1:
        return mid
    times = " / ".join(f"{r.run.wall:.2f}" for r in runs)
    note = f"median of {len(runs)} runs ({times} s)"
    return Row(
        mid.tool,
        mid.op,
        mid.data,
        mid.run,
        mid.stored,
        f"{note}; {mid.note}".rstrip("; "),
        mid.extra,
    )


def qemu_pid(name: str) -> int | None:
    try:
        return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text())
    except (OSError, ValueError):
        return None


def vm_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(ln.split()[1]) for ln in fh if ln.startswith(field + ":"))


PROBES = [  # the phases of a vmvault backup, timed by op_probe
    # (module, attribute path, label); nested phases are indented in the label
    ("vmvault.services.jobs", "JobRunner.run", "the backup job (JobRunner.run)"),
    ("vmvault.hypervisor.libvirt.driver", "LibvirtHypervisor.domain_facts", "  domain facts"),
    ("vmvault.services.backup.plan", "check_chain", "  checkpoint chain check"),
    ("vmvault.hypervisor.libvirt.backup_driver", "LibvirtBackupDriver.disk_sizes", "  disk sizes"),
    ("vmvault.hypervisor.libvirt.backup_driver", "LibvirtBackupDriver.domain_xml", "  domain XML"),
    ("vmvault.hypervisor.libvirt.backup", "PullBackup._enter", "  PullBackup.__enter__"),
    ("vmvault.hypervisor.libvirt.backup", "checkpoint_coverage", "    checkpoint_coverage"),
    ("vmvault.hypervisor.libvirt.agent", "fsinfo", "    guest-get-fsinfo"),
    ("vmvault.hypervisor.libvirt.backup", "why_not_freeze", "    guest-ping"),
    ("vmvault.hypervisor.libvirt.backup", "PullBackup._begin", "    backupBegin (frozen)"),
    ("vmvault.hypervisor.libvirt.quiesce", "thaw", "    thaw"),
    ("vmvault.hypervisor.nbd", "NbdSource.__init__", "  NBD connect"),
    ("vmvault.hypervisor.nbd", "NbdSource.dirty_extents", "  dirty extents (block status)"),
    ("vmvault.services.backup.read", "backup_disk", "  backup_disk (all disks)"),
    ("vmvault.dataplane.vault", "VaultStore.write_index", "  write indexes"),
    ("vmvault.dataplane.vault", "VaultStore.write_manifest", "  write manifest"),
    ("vmvault.hypervisor.libvirt.backup", "PullBackup._cleanup", "  end the job (abortJob, wait)"),
    ("vmvault.hypervisor.libvirt.backup_driver", "LibvirtBackupDriver.checkpoint_xml",
     "  checkpoint XML"),
    ("vmvault.persistence.catalog", "SqlUnitOfWork.commit", "  catalog commits (all)"),
    ("vmvault.services.backup.cleanup", "BackupCleanUp.prune_checkpoints",
     "  delete the previous checkpoint"),
]  # fmt: skip


def lab_services(home: str) -> Any:
    """The services of a throwaway vmvault home ``home`` on the lab this shell uses
    (``VMVAULT_LAB_DIR``/``_CACHE``/``_PREFIX`` passed on, every other ``VMVAULT_*`` left
    out), its lab daemons started."""
    from vmvault.bootstrap import bootstrap
    from vmvault.config import Settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env["VMVAULT_HOME"] = home
    for key in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE", "VMVAULT_LAB_PREFIX"):
        if key in os.environ:
            env[key] = os.environ[key]
    env["VMVAULT_WORK_DIR"] = str(Path(home) / "run")
    os.chmod(home, 0o755)
    services = bootstrap(Settings.from_env(env))
    services.lab.ensure_daemons()
    return services


def op_probe(argv: list[str], probes: list[tuple[str, str, str]]) -> None:
    """Child: ``vmvault backup ARGV --json`` in-process, with timers around ``probes``
    (module, attribute path, label), its RSS at three moments and, when it talks S3, its
    requests by operation (count, summed seconds: concurrent requests overlap); printed on
    stderr as ``PROBE``, ``PROBEMEM`` and ``PROBEREQ`` lines of JSON."""
    import importlib

    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/self/stat") as fh:
        started = int(fh.read().rsplit(")", 1)[1].split()[19]) / tick
    with open("/proc/uptime") as fh:
        startup = float(fh.read().split()[0]) - started
    t0 = time.perf_counter()
    from vmvault.cli import main as cli

    start = getattr(getattr(cli, "process", None), "start", None)  # as the console script
    if start is not None:
        start()
    times: dict[str, float] = {"interpreter start (exec to first line)": startup}
    times["import vmvault.cli.main"] = time.perf_counter() - t0
    mem = {"after import": vm_kib("VmRSS") / 1024}
    count_requests()
    for module, attr, label in probes:
        *path, name = attr.split(".")
        try:  # code moves: a probe whose target is gone is named in the table, not fatal
            owner: Any = importlib.import_module(module)
            for part in path:
                owner = getattr(owner, part)
            fn = getattr(owner, name)
        except (ImportError, AttributeError):
            times[f"{label} (probe target {module}.{attr} is gone: update PROBES)"] = 0.0
            continue
        times[label] = 0.0

        def timed(*a: Any, _fn: Any = fn, _label: str = label, **k: Any) -> Any:
            if _label.strip().startswith("backup_disk"):
                mem.setdefault("when backup_disk starts", vm_kib("VmRSS") / 1024)
            s = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                times[_label] += time.perf_counter() - s

        setattr(owner, name, timed)
    sys.argv = ["vmvault", "backup", *argv, "--json"]
    t1 = time.perf_counter()
    code: Any = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code
    times["CLI command (services, job, output)"] = time.perf_counter() - t1
    times["_end"] = time.time()
    mem["peak"] = vm_kib("VmHWM") / 1024
    print("PROBE " + json.dumps(times), file=sys.stderr)
    print("PROBEMEM " + json.dumps(mem), file=sys.stderr)
    print("PROBEREQ " + json.dumps(REQUESTS), file=sys.stderr)
    leave = getattr(getattr(cli, "process", None), "leave", None)  # as the console script
    if leave is not None:
        leave(code)


REQUESTS: dict[str, list[float]] = {}  # S3 operation -> [count, seconds] (op_probe)


def count_requests() -> None:
    """Count and time every S3 request of this process by operation name (until its answer's
    headers: a GET's body is read afterwards)."""
    try:
        from vmvault.storage.s3_client import S3Client
    except ImportError:
        return
    send = S3Client._send
    mu = threading.Lock()

    def counted(self: Any, operation: str, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return send(self, operation, *args, **kwargs)
        finally:
            with mu:
                c = REQUESTS.setdefault(operation, [0, 0.0])
                c[0] += 1
                c[1] += time.perf_counter() - t

    S3Client._send = counted  # type: ignore[method-assign]


# --- the lab and the guests -----------------------------------------------------------------


class Lab:
    def __init__(self, env: dict[str, str]) -> None:
        import libvirt

        self.env = env
        self.conn = libvirt.open(URI)

    def dom(self, name: str) -> Any:
        return self.conn.lookupByName(name)

    def disks(self, name: str) -> dict[str, tuple[Path, str]]:
        """target -> (image path, format) of the domain's file disks."""
        root = ET.fromstring(self.dom(name).XMLDesc(0))
        out = {}
        for d in root.findall("./devices/disk"):
            src, tgt, drv = d.find("source"), d.find("target"), d.find("driver")
            if src is not None and tgt is not None and src.get("file"):
                fmt = drv.get("type", "raw") if drv is not None else "raw"
                out[tgt.get("dev", "")] = (Path(src.get("file", "")), fmt)
        return out

    def paths(self, name: str) -> list[Path]:
        return [p for p, _ in self.disks(name).values()]

    def guest(self, name: str, script: str, timeout: float = 300) -> str:
        from vmvault.hypervisor.libvirt import agent

        res = agent.exec_(self.dom(name), "/bin/sh", ["-c", script], timeout=timeout)
        out = res.stdout.decode(errors="replace") if isinstance(res.stdout, bytes) else res.stdout
        if res.exitcode != 0:
            raise RuntimeError(f"guest {name}: {script!r} exited {res.exitcode}: {res.stderr!r}")
        return str(out or "")

    def destroy(self, name: str) -> None:
        dom = self.dom(name)
        if dom.isActive():
            dom.destroy()

    def start(self, name: str) -> None:
        from vmvault.hypervisor.lab.vms import wait_for_agent

        dom = self.dom(name)
        dom.create()
        wait_for_agent(dom, 120)

    def attach(self, name: str, image: Path, target: str) -> None:
        subprocess.run(
            ["virsh", "-q", "-c", URI, "attach-disk", name, str(image), target,
             "--driver", "qemu", "--subdriver", "qcow2", "--targetbus", "virtio", "--config"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip


def make_ext4_qcow2(image: Path, size: int, work: Path) -> None:
    raw = work / "vdc.raw"
    with open(raw, "wb") as fh:
        fh.truncate(size)
    subprocess.run(
        ["mkfs.ext4", "-F", "-q", "-L", "data3", "-E", "lazy_itable_init=0,lazy_journal_init=0",
         str(raw)],
        check=True,
    )  # fmt: skip
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)], check=True
    )
    raw.unlink()
    image.chmod(0o644)


FILL = """set -e
mkdir -p /data3
mount -t ext4 /dev/vdc /data3
cd /data3
dd if=/dev/urandom of=random.bin bs=1M count={random_mib} 2>/dev/null
cat /bin/busybox /usr/sbin/qemu-ga /lib/x86_64-linux-gnu/* /lib/modules/* > /tmp/bin.cat
i=0; while [ $i -lt 24 ]; do cat /tmp/bin.cat; i=$((i+1)); done > binaries.bin
i=0; while [ $i -lt 8 ]; do cat /data/seed/text.txt; i=$((i+1)); done > text.bin
dd if=/dev/zero of=zeros.bin bs=1M count=128 2>/dev/null
sync
ls -l /data3 /data/seed
"""


def change_script(count: int, file_mib: int, seed: int) -> tuple[str, int]:
    """``count`` 1 MiB runs of random data at seeded offsets of random.bin (notrunc)."""
    offsets = sorted(random.Random(seed).sample(range(file_mib), count))
    lines = [
        f"dd if=/dev/urandom of=/data3/random.bin bs=1M count=1 seek={m} conv=notrunc 2>/dev/null"
        for m in offsets
    ]
    return "set -e\n" + "\n".join(lines) + "\nsync\n", count * MiB
