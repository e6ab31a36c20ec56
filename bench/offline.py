"""Offline benchmark of the data path: vmvault vs. a read ceiling and borg 1.4.

    .venv/bin/python bench/offline.py [--size-gib 4] [--workdir /tmp/vmvault-bench]

Builds a raw disk image holding an ext4 file system filled (~40 %) with files of /usr
(``mkfs.ext4 -d``), the rest empty.  Nothing is dropped from the page cache; the ceiling is
measured in the same run: ``cat img > /dev/null`` and a read of the allocated extents only.
Then, each operation in its own process (wall time includes a final ``sync``; CPU and peak
RSS come from ``wait4`` of that process):

* vmvault: full backup (FileSource), incremental after ~1 % of the allocated bytes changed
  (1 MiB runs of random data written with ``dd conv=notrunc``; their extents are passed as the
  dirty map, as a checkpoint bitmap would), the same without a bitmap (full re-read, dedup),
  restore of the incremental point to a sparse raw file;
* borg 1.4 (``--chunker-params fixed,4194304``, same zstd level, ``-e none``): full,
  incremental, ``extract --sparse``.

borg comes from ``--borg PATH``, or from a venv that this script makes (once, reused by later
runs) under ``--borg-venv`` (``/var/tmp/vmvault-bench-borg``) with ``pip install
'borgbackup==1.4.*'``. PyPI has no wheels of borg, only its source: pip compiles it against
the C headers of Debian's ``libacl1-dev liblz4-dev libzstd-dev libxxhash-dev libssl-dev
pkg-config python3-dev``. A fresh machine lacks them: there the build failed, and the only
word of it went to stderr, which ``bench/vm.py`` does not print, so its borg row silently said
"not run". Missing packages are installed with ``apt-get`` when running as root (else the
command is printed); when borg still cannot be had, the output ends with a ``borg not run:
WHY`` line, which ``bench/vm.py`` shows in its target table. ``--no-borg`` skips borg.
borg's code never enters this repository.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20


@dataclass
class Row:
    tool: str
    op: str
    seconds: float
    cpu: float
    rss_mib: float
    stored: int | None = None
    note: str = ""


def run_measured(
    cmd: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdout: int | None = None,
) -> tuple[float, float, float]:
    """Run ``cmd``, then ``sync``; returns (wall seconds, CPU seconds, peak RSS MiB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=stdout)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    os.sync()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


# --- the image ---------------------------------------------------------------------------


def build_image(img: Path, size: int, fill: float, work: Path) -> None:
    """An ext4 image of ``size`` bytes holding ~``fill`` of it in files copied from /usr."""
    stage = work / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    budget = int(size * fill)
    used = 0
    for root, dirs, files in os.walk("/usr"):
        dirs.sort()
        rel = Path(root).relative_to("/usr")
        (stage / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            src = Path(root) / name
            dst = stage / rel / name
            try:
                st = src.lstat()
                if src.is_symlink():
                    os.symlink(os.readlink(src), dst)
                    continue
                if not src.is_file() or used + st.st_size > budget:
                    continue
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
                used += st.st_size
            except OSError:
                continue
        if used >= budget * 0.99:
            break
    img.unlink(missing_ok=True)
    with open(img, "wb") as fh:
        fh.truncate(size)
    subprocess.run(["mkfs.ext4", "-F", "-q", "-d", str(stage), str(img)], check=True)
    shutil.rmtree(stage)


def allocated_runs(img: Path) -> list[tuple[int, int]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from vmvault.dataplane import FileSource

    with FileSource(img) as src:
        return [(o, n) for o, n, data in src.extents() if data]


def change_one_percent(img: Path, runs: list[tuple[int, int]], seed: int = 1) -> list[list[int]]:
    """Write random 1 MiB runs into allocated areas: 1 % of the allocated bytes."""
    rng = random.Random(seed)
    allocated = sum(n for _, n in runs)
    mib_slots = [m for o, n in runs for m in range(-(-o // MiB), (o + n) // MiB)]
    count = max(1, allocated // 100 // MiB)
    dirty = []
    for m in sorted(rng.sample(mib_slots, count)):
        subprocess.run(
            [
                "dd",
                "if=/dev/urandom",
                f"of={img}",
                "bs=1M",
                "count=1",
                f"seek={m}",
                "conv=notrunc",
                "status=none",
            ],
            check=True,
        )
        dirty.append([m * MiB, MiB])
    return dirty


# --- child operations (run in their own process) -------------------------------------------


def op(argv: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from vmvault.dataplane import (
        DiskEntry,
        FileSource,
        Manifest,
        VaultStore,
        backup_disk,
        restore_disk,
    )

    name, vault_dir, *rest = argv
    if name == "read-extents":
        buf = bytearray(4 * MiB)
        with FileSource(Path(vault_dir)) as src:
            for o, n, data in src.extents():
                if not data:
                    continue
                end = o + n
                while o < end:
                    view = memoryview(buf)[: min(4 * MiB, end - o)]
                    src.pread_into(view, o)
                    o += len(view)
        return
    store = VaultStore.open(Path(vault_dir))
    if name == "backup":
        img, point, workers = Path(rest[0]), rest[1], int(rest[2])
        previous = dirty = None
        if len(rest) > 3:  # previous point + dirty map
            m = store.read_manifest(rest[3])
            previous = store.read_point_index(m, "vda")
            dirty = [tuple(x) for x in json.loads(Path(rest[4]).read_text())]
        with store.writer(point), FileSource(img) as src:
            r = backup_disk(store, src, previous=previous, dirty=dirty, workers=workers)  # type: ignore[arg-type]
            d = store.write_index(point, "vda", r.index)
            store.write_manifest(
                Manifest(
                    point,
                    "bench",
                    "bench",
                    "2026-01-01T00:00:00+00:00",
                    "<domain/>",
                    "offline",
                    "crash-consistent",
                    disks=[DiskEntry("vda", src.size, "vda.fidx", d, r.bytes_read, r.bytes_new)],
                )
            )
        print(
            json.dumps(
                {
                    "read": r.bytes_read,
                    "new": r.bytes_new,
                    "chunks_new": r.chunks_new,
                    "zero": r.chunks_zero,
                    "reused": r.chunks_reused,
                    "dedup": r.chunks_dedup,
                }
            ),
            file=sys.stderr,
        )
    elif name == "restore":
        point, out, workers = rest[0], Path(rest[1]), int(rest[2])
        fmt = rest[3] if len(rest) > 3 else "raw"
        m = store.read_manifest(point)
        restore_disk(store, store.read_point_index(m, "vda"), out, fmt=fmt, workers=workers)


# --- main ------------------------------------------------------------------------------------


BORG_VENV = Path("/var/tmp/vmvault-bench-borg")
#: Debian packages pip needs to build borg 1.4 from its source distribution.
BORG_BUILD_DEBS = [
    "pkg-config", "python3-dev", "libacl1-dev", "liblz4-dev", "libzstd-dev", "libxxhash-dev",
    "libssl-dev",
]  # fmt: skip


def missing_debs(names: list[str]) -> list[str]:
    def installed(name: str) -> bool:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True
        )
        return proc.returncode == 0 and "install ok installed" in proc.stdout

    return [n for n in names if not installed(n)]


def ensure_borg(venv: Path, given: str | None) -> tuple[str | None, str]:
    """(path of a working borg 1.4, its version) or (None, why there is none)."""
    borg = given or str(venv / "bin" / "borg")
    if not given and not Path(borg).exists():
        missing = missing_debs(BORG_BUILD_DEBS)
        if missing:
            cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                   "-o", "DPkg::Lock::Timeout=600", *missing]  # fmt: skip
            if os.geteuid() != 0:
                return None, f"building borg needs: sudo {' '.join(cmd)}"
            print(f"installing borg's build dependencies: {' '.join(missing)}", file=sys.stderr)
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
            if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
                return None, f"'{' '.join(cmd)}' failed"
        print(f"installing borg 1.4 from PyPI into {venv} (builds it) ...", file=sys.stderr)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        log = venv / "pip-install.log"
        with log.open("w") as fh:
            res = subprocess.run(
                [str(venv / "bin" / "pip"), "install", "borgbackup==1.4.*"],
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        if res.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:]
            return None, f"pip install 'borgbackup==1.4.*' failed ({log}): {' '.join(tail)}"
    proc = subprocess.run([borg, "--version"], capture_output=True, text=True)
    version = proc.stdout.strip()
    if proc.returncode != 0 or not version.startswith("borg 1.4"):
        return None, f"{borg} --version gave {version or proc.stderr.strip()!r}, not borg 1.4"
    return borg, version


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-gib", type=float, default=4.0)
    ap.add_argument("--fill", type=float, default=0.40, help="fraction of the image in files")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vmvault-bench"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--borg", help="path of a borg 1.4 binary")
    ap.add_argument("--borg-venv", type=Path, default=BORG_VENV, help="where borg is installed")
    ap.add_argument("--no-borg", action="store_true")
    ap.add_argument("--op", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.op:
        op(args.op)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from vmvault.dataplane import DEFAULT_LEVEL, VaultStore

    # First: installing borg (apt-get, a C build) must not run into the measurements.
    if args.no_borg:
        borg, borg_version = None, "skipped (--no-borg)"
    else:
        borg, borg_version = ensure_borg(args.borg_venv, args.borg)
    if borg is None:
        print(f"borg not run: {borg_version}", file=sys.stderr)
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("vault", "borg-repo", "borg-base", "restore"):
        shutil.rmtree(work / sub, ignore_errors=True)
    img = work / "disk.img"
    size = int(args.size_gib * (1 << 30))
    print(f"building a {args.size_gib:g} GiB ext4 image from /usr ...", file=sys.stderr)
    build_image(img, size, args.fill, work)
    os.sync()  # the image is on disk and in the page cache; warm the holes' pages too
    subprocess.run(["sh", "-c", f"cat '{img}' > /dev/null"], check=True)
    runs = allocated_runs(img)
    allocated = sum(n for _, n in runs)
    me = [sys.executable, str(Path(__file__).resolve()), "--op"]
    rows: list[Row] = []

    wall, cpu, rss = run_measured(["sh", "-c", f"cat '{img}' > /dev/null"])
    ceiling = size / wall
    rows.append(Row("ceiling", "cat img > /dev/null", wall, cpu, rss))
    wall, cpu, rss = run_measured([*me, "read-extents", str(img)])
    rows.append(Row("ceiling", "read allocated extents", wall, cpu, rss))

    vault = work / "vault"
    VaultStore.create(vault)
    w = str(args.workers)
    wall, cpu, rss = run_measured([*me, "backup", str(vault), str(img), "full", w])
    rows.append(Row("vmvault", "full backup", wall, cpu, rss, du(vault)))

    env = {
        **os.environ,
        "BORG_BASE_DIR": str(work / "borg-base"),
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
    }
    repo = work / "borg-repo"
    borg_create = [
        str(borg),
        "create",
        "--chunker-params",
        "fixed,4194304",
        "--compression",
        f"zstd,{DEFAULT_LEVEL}",
    ]
    if borg:
        subprocess.run([borg, "init", "-e", "none", str(repo)], env=env, check=True)
        wall, cpu, rss = run_measured([*borg_create, f"{repo}::full", img.name], cwd=work, env=env)
        rows.append(Row("borg 1.4", "full backup", wall, cpu, rss, du(repo)))

    dirty = change_one_percent(img, runs)
    dirty_file = work / "dirty.json"
    dirty_file.write_text(json.dumps(dirty))
    before = du(vault)
    wall, cpu, rss = run_measured(
        [*me, "backup", str(vault), str(img), "incr", w, "full", str(dirty_file)]
    )
    rows.append(Row("vmvault", "incremental, 1 % (dirty map)", wall, cpu, rss, du(vault) - before))
    before = du(vault)
    wall, cpu, rss = run_measured([*me, "backup", str(vault), str(img), "reread", w])
    rows.append(
        Row("vmvault", "incremental, 1 % (full re-read)", wall, cpu, rss, du(vault) - before)
    )
    if borg:
        before = du(repo)
        wall, cpu, rss = run_measured([*borg_create, f"{repo}::incr", img.name], cwd=work, env=env)
        rows.append(
            Row("borg 1.4", "incremental, 1 % (re-read)", wall, cpu, rss, du(repo) - before)
        )

    out = work / "restore" / "disk.raw"
    out.parent.mkdir()
    wall, cpu, rss = run_measured([*me, "restore", str(vault), "incr", str(out), w])
    rows.append(Row("vmvault", "restore (sparse raw)", wall, cpu, rss, out.stat().st_blocks * 512))
    same = subprocess.run(["cmp", "-s", str(img), str(out)]).returncode == 0
    rows[-1].note = "identical" if same else "DIFFERENT"
    out.unlink()
    qcow = out.with_suffix(".qcow2")
    wall, cpu, rss = run_measured([*me, "restore", str(vault), "incr", str(qcow), w, "qcow2"])
    rows.append(Row("vmvault", "restore (qcow2)", wall, cpu, rss, qcow.stat().st_blocks * 512))
    same = subprocess.run(["qemu-img", "compare", "-q", str(img), str(qcow)]).returncode == 0
    rows[-1].note = "identical" if same else "DIFFERENT"
    qcow.unlink()
    if borg:
        wall, cpu, rss = run_measured(
            [str(borg), "extract", "--sparse", f"{repo}::incr"], cwd=out.parent, env=env
        )
        rows.append(
            Row(
                "borg 1.4",
                "restore (extract --sparse)",
                wall,
                cpu,
                rss,
                (out.parent / img.name).stat().st_blocks * 512,
            )
        )
        (out.parent / img.name).unlink()

    print()
    print(
        f"image {size / (1 << 30):g} GiB, allocated {allocated / (1 << 30):.2f} GiB "
        f"({allocated / size:.0%}), 1 % change = {len(dirty)} MiB; {os.cpu_count()} CPUs; "
        f"zstd level {DEFAULT_LEVEL}; {args.workers} workers; page cache warm; "
        + (borg_version if borg else "no borg")
    )
    print()
    print(
        "| tool | operation | seconds | GB/s (disk size / s) | vs ceiling | CPU s | peak RSS MiB | bytes on disk |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rate = size / r.seconds / 1e9
        stored = f"{r.stored / 1e6:,.0f} MB" if r.stored is not None else ""
        note = f" ({r.note})" if r.note else ""
        print(
            f"| {r.tool} | {r.op}{note} | {r.seconds:.2f} | {rate:.2f} | "
            f"{size / r.seconds / ceiling:.2f} | {r.cpu:.2f} | {r.rss_mib:.0f} | {stored} |"
        )
    if borg is None:  # bench/vm.py reads this line: the borg target shows why it is missing
        print()
        print(f"borg not run: {borg_version}")


if __name__ == "__main__":
    main()
