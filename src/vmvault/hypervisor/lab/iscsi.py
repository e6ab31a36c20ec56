"""Pass-through LUNs for the lab, served by a lab-private user-space iSCSI target (tgtd).

A ``device='lun'`` disk makes QEMU use ``scsi-block``: the guest's SCSI commands go to the
host device unchanged, through the ``SG_IO`` ioctl. A loop device cannot do that (QEMU stops
with *cannot get SG_IO version number ... Is this a SCSI device?*), and the hosts this
project runs on have no SCSI layer at all (``CONFIG_SCSI`` off, no loadable modules, so no
``scsi_debug``, no iSCSI initiator, no LIO). What does work is QEMU's own iSCSI initiator
(libiscsi, ``qemu-block-extra``), which implements ``SG_IO`` in user space: a lab VM of the
``passthrough`` variant gets

    <disk type='network' device='lun'><source protocol='iscsi' name='IQN/1'>...

a real pass-through LUN, served by ``tgtd`` from Debian's ``tgt`` package. Like the kernel,
``tgt`` is fetched and unpacked into the lab cache, not installed (installing it would start
a system-wide target on all addresses). Our tgtd listens on 127.0.0.1:13260 only, its
management socket is ``/run/tgtd/socket.13260``, and each pass-through VM gets one target
whose LUN 1 is a sparse file in the VM's directory. ``lab down`` removes the targets and
stops tgtd.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from vmvault.domain.errors import LabFailed
from vmvault.hypervisor.daemons import start_daemons
from vmvault.hypervisor.lab import debs
from vmvault.hypervisor.lab.fsutil import locked, make_dirs, publish_dir

PORTAL_HOST = "127.0.0.1"
PORT = 13260
IQN_PREFIX = "iqn.2026-11.dev.vmvault.lab:"
LUN_SIZE = 64 << 20
MGMT_SOCKET = Path(f"/run/tgtd/socket.{PORT}")


def tgt_tools(cache_dir: Path) -> Path:
    """Directory holding ``tgtd`` and ``tgtadm`` unpacked from Debian's ``tgt`` package."""
    tools = Path(cache_dir) / "tools"
    make_dirs(tools)
    marker = tools / "tgt.current"
    if marker.is_file():
        current = tools / marker.read_text().strip()
        if (current / "usr/sbin/tgtd").is_file():
            return current / "usr/sbin"
    with locked(Path(cache_dir) / ".tools.lock"):
        pkg = debs.resolve("tgt")
        final = tools / f"tgt-{pkg.version.replace(':', '_')}"
        if not (final / "usr/sbin/tgtd").is_file():
            tmp = Path(tempfile.mkdtemp(dir=tools, prefix=".tmp-tgt-"))
            try:
                debs.extract(debs.download(pkg, Path(cache_dir) / "debs"), tmp)
                publish_dir(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        marker.write_text(final.name + "\n")
        return final / "usr/sbin"


def _adm(sbin: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(
        [str(sbin / "tgtadm"), "-C", str(PORT), "--lld", "iscsi", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if check and proc.returncode != 0:
        raise LabFailed(f"tgtadm {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout}")
    return proc.stdout if proc.returncode == 0 else ""


def tgtd_running(sbin: Path) -> bool:
    """True if the lab's tgtd answers on its management socket."""
    return (
        subprocess.run(
            [str(sbin / "tgtadm"), "-C", str(PORT), "--op", "show", "--mode", "sys"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )


def ensure_tgtd(cache_dir: Path, state_dir: Path) -> Path:
    """Start the lab's tgtd unless it answers; return the directory of its tools."""
    sbin = tgt_tools(cache_dir)
    make_dirs(state_dir)
    with locked(state_dir / "tgtd.lock"):
        if tgtd_running(sbin):
            # started by another lab: this lab still needs to know its tools to clean up
            (state_dir / "tools").write_text(f"{sbin}\n")
            return sbin
        argv = [str(sbin / "tgtd"), "-C", str(PORT), "--iscsi", f"portal={PORTAL_HOST}:{PORT}"]
        start_daemons([[*argv, "-p", str(state_dir / "tgtd.pid")]], state_dir)
        (state_dir / "tools").write_text(f"{sbin}\n")
        deadline = time.monotonic() + 10
        while not tgtd_running(sbin):
            if time.monotonic() > deadline:
                raise LabFailed(f"the lab's tgtd does not answer on {MGMT_SOCKET}")
            time.sleep(0.05)
    return sbin


def recorded_tools(state_dir: Path) -> Path | None:
    """The tools directory of the tgtd that :func:`ensure_tgtd` started, if it still exists."""
    try:
        sbin = Path((state_dir / "tools").read_text().strip())
    except OSError:
        return None
    return sbin if (sbin / "tgtadm").is_file() else None


def targets(sbin: Path) -> dict[str, int]:
    """The targets tgtd serves: IQN -> target id."""
    out = _adm(sbin, "--op", "show", "--mode", "target", check=False)
    return {m.group(2): int(m.group(1)) for m in re.finditer(r"^Target (\d+): (\S+)", out, re.M)}


def add_lun(sbin: Path, vm_name: str, backing: Path) -> str:
    """Serve ``backing`` (created sparse if missing) as LUN 1 of a new target; return its IQN."""
    if not backing.exists():
        with open(backing, "wb") as fh:
            fh.truncate(LUN_SIZE)
    iqn = IQN_PREFIX + vm_name
    existing = targets(sbin)
    if iqn in existing:
        return iqn
    tid = max(existing.values(), default=0) + 1
    _adm(sbin, "--op", "new", "--mode", "target", "--tid", str(tid), "-T", iqn)
    _adm(sbin, "--op", "new", "--mode", "logicalunit", "--tid", str(tid), "--lun", "1",
         "-b", str(backing))  # fmt: skip
    _adm(sbin, "--op", "bind", "--mode", "target", "--tid", str(tid), "-I", PORTAL_HOST)
    return iqn


def remove_target(sbin: Path, iqn: str) -> None:
    tid = targets(sbin).get(iqn)
    if tid is not None:
        _adm(sbin, "--op", "delete", "--mode", "target", "--tid", str(tid), "--force", check=False)


def stop_tgtd(state_dir: Path, sbin: Path | None) -> None:
    """Stop the lab's tgtd (after its targets are removed).

    It is asked to shut down through ``tgtadm``; if its tools are gone (the cache was
    deleted) or it does not go, the processes named by its pid file get SIGKILL (tgtd
    ignores SIGTERM).
    """
    if sbin is not None and tgtd_running(sbin):
        for tid in targets(sbin).values():
            _adm(sbin, "--op", "delete", "--mode", "target", "--tid", str(tid), "--force",
                 check=False)  # fmt: skip
        _adm(sbin, "--op", "delete", "--mode", "system", check=False)
        deadline = time.monotonic() + 5
        while tgtd_running(sbin) and time.monotonic() < deadline:
            time.sleep(0.05)
    pidfile = state_dir / "tgtd.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    for p in [pid, *_children(pid)]:
        if _is_tgtd(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def _is_tgtd(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return Path(argv[0].decode(errors="replace")).name == "tgtd" and str(PORT).encode() in argv


def _children(pid: int) -> list[int]:
    out = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(stat_file.parent.name))
    return out
