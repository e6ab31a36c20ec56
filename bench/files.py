"""Time to the first file of a point vs a full disks-only restore of the same point.

    VMVAULT_LAB_PREFIX=fr VMVAULT_LAB_DIR=/var/lib/vmvault/lab-fr \\
        .venv/bin/python bench/files.py [--rounds 5] [--file-mib 4] [--vm NAME]

On the lab's standard guest (booted if needed): a file of ``--file-mib`` MiB written in
``/data`` (its vda, ext4), one backup into a fresh local vault, then, each in its own
process (wall time and peak RSS from GNU time, bench/common.py ``measure``):

* ``vmvault files get POINT /data/bench-files/f.bin --to DIR`` — ``--rounds`` times: the time
  to the first file, from the command to the file written (serve, nbdfuse, superblocks,
  debugfs), checked byte-exact against the guest's md5;
* ``vmvault files ls POINT /data`` — ``--rounds`` times;
* ``vmvault restore VM --point P --disks-only --format raw`` of the same point — 3 times.

With ``--guestfs``, the libguestfs path instead, on the lab's ``files`` guest (its vdc: xfs in
a partition, ext4 in an LVM logical volume, hypervisor/lab/files_disk.py): ``files get`` of
``/srv/xfs/docs/a.txt`` (each call starts one libguestfs appliance under TCG) and of
``/srv/lv/keep.bin`` (an LVM volume: debugfs at its offset), each ``--rounds`` times and
byte-exact against the template's content, and the full
disks-only restore of the same point (3 times).  The ``files`` guest is removed at the end.

Prints a Markdown table (medians) for docs/performance.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import libvirt

from common import VMVAULT, Lab, Run, lab_services, measure, vmvault, vmvault_json
from vmvault.hypervisor.lab.files_disk import appliance_env, contents
from vmvault.hypervisor.lab.waiting import destroy_and_undefine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--file-mib", type=int, default=4)
    ap.add_argument("--vm", default=None)
    ap.add_argument("--guestfs", action="store_true", help="xfs and LVM (libguestfs) rows")
    args = ap.parse_args()
    if args.guestfs:
        guestfs_main(args.rounds, args.vm)
        return
    home = tempfile.mkdtemp(prefix="bench-files-", dir="/var/tmp")
    services = lab_services(home)
    vms = services.lab.up(1, ["standard"])
    vm = args.vm or str(vms[0]["name"])
    env = _env(home)
    lab = Lab(env)
    out = lab.guest(
        vm,
        f"mkdir -p /data/bench-files && dd if=/dev/urandom of=/data/bench-files/f.bin bs=1M "
        f"count={args.file_mib} 2>/dev/null && sync && md5sum /data/bench-files/f.bin",
    )
    want = out.split()[0]
    try:
        point = _backup(env, vm)
        sizes = {d["target"]: d["size"] for d in point["disks"]}
        rows: list[tuple[str, list[Run]]] = []
        gets: list[Run] = []
        for n in range(args.rounds):
            to = Path(home) / f"get-{n}"
            to.mkdir()
            cmd = [VMVAULT, "files", "get", point["id"], "/data/bench-files/f.bin", "--to", str(to)]
            gets.append(measure(cmd, env))
            got = hashlib.md5((to / "f.bin").read_bytes()).hexdigest()
            assert got == want, (got, want)
        rows.append((f"files get (one {args.file_mib} MiB file)", gets))
        ls = [
            measure([VMVAULT, "files", "ls", point["id"], "/data"], env) for _ in range(args.rounds)
        ]
        rows.append(("files ls /data", ls))
        restores: list[Run] = []
        for n in range(3):
            d = Path(home) / f"restore-{n}"
            cmd = [VMVAULT, "restore", vm, "--point", point["id"], "--disks-only", "--dir", str(d),
                   "--format", "raw"]  # fmt: skip
            restores.append(measure(cmd, env, sync=[d]))
            shutil.rmtree(d)
        rows.append(
            (f"full disks-only restore (raw, {sum(sizes.values()) / 2**20:.0f} MiB)", restores)
        )
    finally:
        lab.guest(vm, "rm -rf /data/bench-files")
    _table(sizes, rows)
    shutil.rmtree(home, ignore_errors=True)


def guestfs_main(rounds: int, existing: str | None) -> None:
    """The libguestfs rows on a new ``files`` guest (removed at the end), or on ``existing``
    (a running ``files`` guest, kept: e.g. one that booted after ``lab up`` gave up)."""
    home = tempfile.mkdtemp(prefix="bench-files-", dir="/var/tmp")
    services = lab_services(home)
    os.environ.update(appliance_env(services.settings.lab_cache))
    name = existing or str(services.lab.up(1, ["files"])[0]["name"])
    env = _env(home)
    want = {p: hashlib.md5(d).hexdigest() for p, d in contents("a").items()}
    rows: list[tuple[str, list[Run]]] = []
    try:
        point = _backup(env, name)
        sizes = {d["target"]: d["size"] for d in point["disks"]}
        for label, path in (("xfs partition (libguestfs, TCG)", "/srv/xfs/docs/a.txt"),
                            ("ext4 on an LVM volume (debugfs)", "/srv/lv/keep.bin")):  # fmt: skip
            runs = []
            for n in range(rounds):
                to = Path(home) / f"get-{label[:3]}-{n}"
                to.mkdir()
                runs.append(
                    measure([VMVAULT, "files", "get", point["id"], path, "--to", str(to)], env)
                )
                got = hashlib.md5((to / Path(path).name).read_bytes()).hexdigest()
                assert got == want[path], (path, got)
            rows.append((f"files get, {label}", runs))
        restores: list[Run] = []
        for n in range(3):
            d = Path(home) / f"restore-{n}"
            cmd = [VMVAULT, "restore", name, "--point", point["id"], "--disks-only", "--dir",
                   str(d), "--format", "raw"]  # fmt: skip
            restores.append(measure(cmd, env, sync=[d]))
            shutil.rmtree(d)
        rows.append(
            (f"full disks-only restore (raw, {sum(sizes.values()) / 2**20:.0f} MiB)", restores)
        )
    finally:
        if existing is None:
            conn = libvirt.open("qemu:///system")
            try:
                destroy_and_undefine(conn.lookupByName(name))
            finally:
                conn.close()
            shutil.rmtree(Path(services.settings.lab_dir) / "vms" / name, ignore_errors=True)
    _table(sizes, rows)
    shutil.rmtree(home, ignore_errors=True)


def _backup(env: dict[str, str], vm: str) -> dict[str, Any]:
    """A fresh local vault, ``vm`` registered and backed up: its point."""
    vmvault(env, "vault", "create", "main", "--location", "local")
    vmvault(env, "discover")
    vmvault(env, "register", vm)
    point: dict[str, Any] = vmvault_json(env, "backup", vm)[0]["point"]
    return point


def _env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env |= {"VMVAULT_HOME": home, "VMVAULT_WORK_DIR": str(Path(home) / "run")}
    for key in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE", "VMVAULT_LAB_PREFIX"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def _table(sizes: dict[str, int], rows: list[tuple[str, list[Run]]]) -> None:
    print(f"disks: {', '.join(f'{t} {s / 2**20:.0f} MiB' for t, s in sizes.items())}")
    print("| operation | rounds | median s | min s | max s | peak RSS MiB (max) |")
    print("|---|---|---|---|---|---|")
    for name, runs in rows:
        walls = sorted(r.wall for r in runs)
        rss = max(r.rss_mib for r in runs)
        print(f"| {name} | {len(runs)} | {walls[len(walls) // 2]:.2f} | {walls[0]:.2f} | "
              f"{walls[-1]:.2f} | {rss:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
