"""Starting the local libvirt daemons on hosts without systemd.

These machines have no systemd, dbus or udev, so nothing starts libvirtd for us. Debian 12
packages only the monolithic ``libvirtd`` (no modular ``virtqemud``), and a privileged
libvirtd does not spawn ``virtlogd`` itself, yet every domain start needs virtlogd (it owns
the console and QEMU log files). So we start, in this order:

1. ``virtlogd -d -p STATE/run/virtlogd.pid``
2. ``libvirtd -d -f STATE/etc/libvirtd.conf -p STATE/run/libvirtd.pid``; the config file only
   sets logging (``STATE/logs/libvirtd.log``) so failures can be read afterwards.

Both daemonize (``-d``), so they outlive the process that started them. They are started
under a small reaper process (``STATE/run/vmvault-reaper.py``, see :data:`_REAPER`) that reaps
the QEMU processes libvirtd leaves orphaned: this host's PID 1 reaps only every ~2 s, and
libvirt waits for a destroyed QEMU's pid to disappear, so without it every destroy takes 2 s.
The same helper starts the lab's tgtd. The first API call
after a cold start makes libvirtd probe QEMU's capabilities (about 8.5 s here, then cached in
``/var/cache/libvirt/qemu/capabilities``), which is why :func:`ensure_libvirtd` waits for an
answer to ``getVersion()`` rather than just for the socket file.

A host-wide file lock (:data:`START_LOCK`) serializes concurrent callers, so two processes that
both find the daemons down start them once, whatever state directories they pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import libvirt

from vmvault.domain.errors import LabFailed
from vmvault.hypervisor.host import locked

LIBVIRTD_SOCKET = Path("/run/libvirt/libvirt-sock")
VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")
#: One lock for the whole host: callers with different state directories must not both start
#: a libvirtd (the second would take over the socket of the first).
START_LOCK = Path("/run/lock/vmvault-libvirtd.lock")

#: Directories libvirtd and virtlogd expect; the packages create most of them, but /run is a
#: tmpfs on some hosts and a stripped image may lack the log directory.
LIBVIRT_DIRS = (
    Path("/run/libvirt"),
    Path("/var/log/libvirt/qemu"),
    Path("/var/lib/libvirt/qemu"),
    Path("/var/cache/libvirt/qemu"),
)

LIBVIRTD_CONF = """\
# Written by vmvault (hypervisor/daemons.py). Only logging; everything else is the default.
log_filters="2:qemu.qemu_process 2:qemu.qemu_backup 2:qemu.qemu_checkpoint 2:qemu.qemu_agent 3:*"
log_outputs="2:file:{log}"
"""


def quiet_libvirt() -> None:
    """Stop libvirt-python from printing every error to stderr (we raise our own errors)."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def libvirtd_running(uri: str = "qemu:///system") -> bool:
    """True if a libvirtd answers ``getVersion()`` at ``uri``."""
    quiet_libvirt()
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return False
    try:
        conn.getVersion()
        return True
    except libvirt.libvirtError:
        return False
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def _socket_answers(path: Path) -> bool:
    """True if something accepts connections on the unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def _mkdir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o755)


#: Runs the daemons and then reaps every process that ends up orphaned below it. PID 1 on
#: these hosts (``/process_api``) reaps orphans only every ~2 s, and libvirt waits for a
#: destroyed QEMU's pid to vanish, so without a reaper every ``virDomainDestroy`` takes 2 s.
#: libvirtd daemonizes its QEMU processes, so they are orphans: with this process set as the
#: "child subreaper" (prctl PR_SET_CHILD_SUBREAPER) they are reparented to it and reaped at
#: once. It forks first so that the caller can wait for it; it exits when no child is left.
_REAPER = r"""
# vmvault-reaper: runs daemons and reaps the orphans below them (see vmvault.hypervisor.daemons)
import ctypes, json, os, subprocess, sys
if os.fork():
    os._exit(0)
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
results = []
for argv in json.loads(sys.argv[1]):
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=60)
        results.append([p.returncode, p.stderr.decode(errors="replace")[-2000:]])
    except Exception as exc:
        results.append([-1, repr(exc)])
    if results[-1][0] != 0:
        break
sys.stdout.write(json.dumps(results) + "\n")
sys.stdout.flush()
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
    except InterruptedError:
        pass
"""


def spawn_detached(argv: list[str], what: str) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own (it outlives us), stdout piped for the report
    line it writes; ``LabFailed`` naming ``what`` if it cannot start."""
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        raise LabFailed(f"could not start {what}: {exc}") from None


def start_daemons(argvs: list[list[str]], run_dir: Path) -> None:
    """Run the daemonizing commands ``argvs`` in order under a fresh reaper process.

    The reaper's code is written to ``run_dir/vmvault-reaper.py`` so ``ps`` shows what it is.
    """
    script = run_dir / "vmvault-reaper.py"
    tmp = script.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(_REAPER.lstrip())
    tmp.rename(script)
    proc = spawn_detached([sys.executable, str(script), json.dumps(argvs)], argvs[0][0])
    assert proc.stdout is not None
    proc.wait()
    line = proc.stdout.readline()
    proc.stdout.close()
    try:
        results = json.loads(line)
    except ValueError:
        raise LabFailed(f"starting {', '.join(a[0] for a in argvs)} failed: {line!r}") from None
    for argv, (code, err) in zip(argvs, results, strict=False):
        if code != 0:
            raise LabFailed(f"{' '.join(argv)} exited with {code}: {err.strip()}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def ensure_libvirtd(state_dir: Path, timeout: float = 30.0) -> bool:
    """Start virtlogd then libvirtd if the local libvirtd does not answer; return True if it did.

    Idempotent and safe to call concurrently. Raises :class:`LabFailed` (with the tail of
    libvirtd's log) if the daemons cannot be started or do not answer within ``timeout``.
    """
    state_dir = Path(state_dir)
    for sub in ("etc", "run", "logs"):
        _mkdir(state_dir / sub)
    for d in LIBVIRT_DIRS:
        _mkdir(d)
    started = False
    log = state_dir / "logs" / "libvirtd.log"
    _mkdir(START_LOCK.parent)
    with locked(START_LOCK):
        argvs = []
        if not _socket_answers(VIRTLOGD_SOCKET):
            argvs.append(["virtlogd", "-d", "-p", str(state_dir / "run" / "virtlogd.pid")])
        if not _socket_answers(LIBVIRTD_SOCKET):
            conf = state_dir / "etc" / "libvirtd.conf"
            conf.write_text(LIBVIRTD_CONF.format(log=log))
            pid = state_dir / "run" / "libvirtd.pid"
            argvs.append(["libvirtd", "-d", "-f", str(conf), "-p", str(pid)])
        if argvs:
            start_daemons(argvs, state_dir / "run")
            started = True
        deadline = time.monotonic() + timeout
        while not libvirtd_running():
            if time.monotonic() > deadline:
                raise LabFailed(
                    f"libvirtd did not answer on qemu:///system within {timeout:.0f}s; "
                    f"last lines of {log}:\n{_tail(log)}"
                )
            time.sleep(0.1)
        deadline = time.monotonic() + timeout
        while not _socket_answers(VIRTLOGD_SOCKET):
            if time.monotonic() > deadline:
                raise LabFailed(f"virtlogd did not create {VIRTLOGD_SOCKET} within {timeout:.0f}s")
            time.sleep(0.05)
    return started


__all__ = ["ensure_libvirtd", "libvirtd_running", "quiet_libvirt"]
