"""The lab's second libvirt host: an independent libvirtd in its own mount and PID namespace.

Issue 15 needs a *remote* libvirt host to test against, on one machine. ``host_up`` makes one:

* ``unshare --mount --pid --fork --kill-child=SIGTERM --mount-proc --propagation private``
  runs :data:`_INIT` as PID 1 of a new PID namespace with a private mount table. The init
  bind-mounts this host's own directories over the five places libvirt keeps state
  (``/etc/libvirt``, ``/run/libvirt``, ``/var/lib/libvirt``, ``/var/log/libvirt``,
  ``/var/cache/libvirt``, from ``HOST_DIR/root/…``), so its sockets, pid files, domain XML,
  logs and capability cache never meet the main libvirtd's. Every other path (the lab's VM
  disks, vmvault's NBD work directory) is the same file system, as on a real host that a
  node runs on.
* Inside, it starts ``virtlogd -d`` then ``libvirtd -d --listen`` whose config listens on
  ``127.0.0.1:PORT`` with ``auth_tcp = "none"``: the host is reached at
  ``qemu+tcp://127.0.0.1:PORT/system``. Lab only: anyone on this machine can drive it.
* It also listens with TLS on ``127.0.0.1:TLS_PORT``, with certificates of a CA of its own
  (host_pki.py, in ``HOST_DIR/pki``): ``qemu+tls://127.0.0.1:TLS_PORT/system?pkipath=…``
  reaches it as a production host is reached, and a client that does not trust that CA is
  refused by libvirt (tests/integration/test_remote_host.py).
* ``qemu.conf`` sets ``cgroup_controllers = [ ]``: both daemons would otherwise make cgroups
  named ``qemu-<id>-<name>`` under the same ``/machine`` partition.  It also gives QEMU the
  certificates of a pull-mode backup's NBD server with TLS (``backup_tls_x509_cert_dir =
  HOST_DIR/backup-tls``, ``backup_tls_x509_verify = 1``: same CA, same server certificate),
  so that a node can *pull* its VMs' disks (domain/pull.py) with the client certificates of
  ``HOST_DIR/pki/nbd-client`` (``lab host up --json``: ``pull_tls``).
* The init reaps orphans (QEMU is one) and, on SIGTERM (sent to it: ``unshare`` itself
  ignores SIGTERM while it waits), sends SIGTERM to every process of its namespace (SIGKILL
  after 5 s), stops the daemons and exits; when a
  PID namespace's init exits the kernel kills everything left in it. So ``host_down``
  (after destroying the host's domains through libvirt) leaves no process, and no mount: the
  mount namespace dies with its last process. Then ``HOST_DIR`` is removed.

The network namespace is not separated: the TCP listener must be reachable on loopback, and a
veth pair per lab would need addresses that cannot collide between labs on one machine.

Its storage pool ``default`` (where restores put disks unless told otherwise) is
``HOST_DIR/images``: a path that means the same inside and outside the namespace.

``HOST_DIR/host.json`` records ``{"pid": <unshare's pid>, "port": …, "uri": …, "tls_port": …,
"tls_uri": …, "pull_tls": …}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import libvirt

from vmvault.domain.errors import LabFailed
from vmvault.hypervisor.daemons import libvirtd_running, quiet_libvirt, spawn_detached
from vmvault.hypervisor.host import locked
from vmvault.hypervisor.lab.fsutil import make_dirs
from vmvault.hypervisor.lab.host_pki import write_pki
from vmvault.hypervisor.lab.waiting import destroy_and_undefine

#: libvirt's state directories that the second host gets its own copy of (bind mounts).
STATE_DIRS = (
    "/etc/libvirt",
    "/run/libvirt",
    "/var/lib/libvirt",
    "/var/log/libvirt",
    "/var/cache/libvirt",
)

LIBVIRTD_CONF = """\
# Written by vmvault (hypervisor/lab/host.py): the lab's second libvirt host.
# TCP without authentication, on loopback only: a lab, never a production setting; and TLS
# with the lab's own CA (client certificates required and checked against it).
listen_tls = 1
listen_tcp = 1
listen_addr = "127.0.0.1"
tcp_port = "{port}"
auth_tcp = "none"
tls_port = "{tls_port}"
auth_tls = "none"
ca_file = "{pki}/ca/cacert.pem"
cert_file = "{pki}/server/servercert.pem"
key_file = "{pki}/server/serverkey.pem"
log_filters="3:*"
log_outputs="2:file:/var/log/libvirt/libvirtd.log"
"""

QEMU_CONF = """\
# Written by vmvault (hypervisor/lab/host.py): no cgroups (the main libvirtd owns /machine).
cgroup_controllers = [ ]
# The NBD server of a pull-mode backup with tls='yes' (vmvault's pull, domain/pull.py): the
# lab CA's server certificate, and client certificates required and checked against the CA.
backup_tls_x509_cert_dir = "{backup_tls}"
backup_tls_x509_verify = 1
"""

#: PID 1 of the host's namespace: bind-mounts the state directories, starts the daemons,
#: prints one JSON line (``[]`` or an error), then reaps until SIGTERM or no child is left.
_INIT = r"""
# vmvault lab host init (see vmvault.hypervisor.lab.host)
import json, os, signal, subprocess, sys, time
root, dirs = sys.argv[1], json.loads(sys.argv[2])
def fail(msg):
    sys.stdout.write(json.dumps([msg]) + "\n"); sys.stdout.flush(); sys.exit(1)
for d in dirs:
    r = subprocess.run(["mount", "--bind", root + d, d], capture_output=True, text=True)
    if r.returncode:
        fail(f"mount --bind {root + d} {d}: {r.stderr.strip()}")
for argv in (["virtlogd", "-d", "-p", "/run/libvirt/virtlogd.pid"],
             ["libvirtd", "-d", "--listen", "-f", "/etc/libvirt/libvirtd.conf",
              "-p", "/run/libvirt/libvirtd.pid"]):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode:
        fail(f"{argv[0]} exited with {r.returncode}: {r.stderr.strip()[-1000:]}")
sys.stdout.write("[]\n"); sys.stdout.flush()
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
stopping, sent = [], []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(time.monotonic()))
def others():  # this /proc is the namespace's own (--mount-proc): every pid is ours
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and p != "1"]
def signal_all(sig):
    for pid in others():
        try:
            os.kill(pid, sig)
        except OSError:
            pass
while True:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        if stopping:
            break
    if stopping:
        waited = time.monotonic() - stopping[0]
        if not others():
            break
        if not sent or waited > 5:
            signal_all(signal.SIGKILL if sent else signal.SIGTERM)
            sent.append(waited)
    time.sleep(0.1)
"""

DEFAULT_PORT = 16519
DEFAULT_TLS_PORT = 16619


def host_dir(lab_dir: Path) -> Path:
    return Path(lab_dir).absolute() / "host"


def host_uri(port: int) -> str:
    return f"qemu+tcp://127.0.0.1:{port}/system"


def host_tls_uri(port: int, pkipath: Path) -> str:
    """The TLS URI of a client whose certificates are in ``pkipath`` (host_pki.py's layout)."""
    return f"qemu+tls://127.0.0.1:{port}/system?pkipath={pkipath}"


def _record(hdir: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((hdir / "host.json").read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as libvirtd binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_port(setting: str, first: int, taken: int | None = None) -> int:
    """A free loopback port: the one given by the environment's ``setting``, else the first
    free one from ``first`` but ``taken`` (two labs on one machine get two ports)."""
    wanted = os.environ.get(setting)
    if wanted:
        if not wanted.isdigit() or not _port_free(int(wanted)) or int(wanted) == taken:
            raise LabFailed(f"{setting}={wanted!r} is not a free port")
        return int(wanted)
    for port in range(first, first + 100):
        if port != taken and _port_free(port):
            return port
    raise LabFailed(f"no free port in {first}-{first + 99} for the lab host's libvirtd")


def host_status(lab_dir: Path) -> dict[str, Any]:
    """``{"state": up|down|partial, "uri", "tls_uri", "dir", "pid"}``: up when the daemon
    answers."""
    hdir = host_dir(lab_dir)
    rec = _record(hdir)
    doc: dict[str, Any] = {
        "state": "down", "uri": None, "tls_uri": None, "pull_tls": None, "dir": str(hdir),
        "pid": None,
    }  # fmt: skip
    if rec is None:
        return doc | ({"state": "partial"} if hdir.exists() else {})
    alive = _running(int(rec["pid"]))
    doc |= {"uri": rec["uri"], "tls_uri": rec.get("tls_uri"), "pull_tls": rec.get("pull_tls")}
    doc["pid"] = rec["pid"] if alive else None
    doc["state"] = "up" if alive and libvirtd_running(rec["uri"]) else "partial"
    return doc


def host_up(lab_dir: Path, timeout: float = 60.0) -> dict[str, Any]:
    """Start the second host (idempotent: one that is up is returned as it is)."""
    lab_dir = Path(lab_dir).absolute()
    hdir = host_dir(lab_dir)
    make_dirs(lab_dir)
    with locked(lab_dir / ".host.lock"):
        status = host_status(lab_dir)
        if status["state"] == "up":
            return status
        if status["state"] == "partial":
            _down(hdir)
        port = _pick_port("VMVAULT_LAB_HOST_PORT", DEFAULT_PORT)
        tls_port = _pick_port("VMVAULT_LAB_HOST_TLS_PORT", DEFAULT_TLS_PORT, taken=port)
        pki = write_pki(hdir / "pki", qemu_dir=hdir / "backup-tls")
        root = hdir / "root"
        for d in STATE_DIRS:
            make_dirs(root / d.lstrip("/"))
        make_dirs(root / "var/log/libvirt/qemu")
        make_dirs(root / "var/lib/libvirt/qemu")
        conf = LIBVIRTD_CONF.format(port=port, tls_port=tls_port, pki=hdir / "pki")
        (root / "etc/libvirt/libvirtd.conf").write_text(conf)
        (root / "etc/libvirt/qemu.conf").write_text(QEMU_CONF.format(backup_tls=pki.qemu_server))
        caps = Path("/var/cache/libvirt/qemu/capabilities")  # skips QEMU's 8 s probe
        if caps.is_dir():
            shutil.copytree(caps, root / "var/cache/libvirt/qemu/capabilities")
        init = hdir / "vmvault-host-init.py"
        init.write_text(_INIT.lstrip())
        argv = [
            "unshare", "--mount", "--pid", "--fork", "--kill-child=SIGTERM", "--mount-proc",
            "--propagation", "private", sys.executable, str(init), str(root), json.dumps(STATE_DIRS),
        ]  # fmt: skip
        proc = spawn_detached(argv, "the lab host")
        uri = host_uri(port)
        tls_uri = host_tls_uri(tls_port, pki.client)
        record = {"pid": proc.pid, "port": port, "uri": uri, "tls_port": tls_port}
        more = {"tls_uri": tls_uri, "pull_tls": str(pki.nbd_client)}
        (hdir / "host.json").write_text(json.dumps(record | more))
        assert proc.stdout is not None
        line = proc.stdout.readline().decode(errors="replace")
        proc.stdout.close()
        errors = json.loads(line) if line.startswith("[") else [f"init said {line!r}"]
        if errors:
            _down(hdir)
            raise LabFailed(f"the lab host did not start: {errors[0]}")
        deadline = time.monotonic() + timeout
        while not libvirtd_running(uri):
            if time.monotonic() > deadline or proc.poll() is not None:
                log = root / "var/log/libvirt/libvirtd.log"
                tail = (
                    "\n".join(log.read_text(errors="replace").splitlines()[-10:])
                    if log.exists()
                    else ""
                )
                _down(hdir)
                raise LabFailed(f"the lab host's libvirtd did not answer on {uri}:\n{tail}")
            time.sleep(0.1)
        _default_pool(uri, hdir / "images")
        return host_status(lab_dir)


POOL_XML = "<pool type='dir'><name>default</name><target><path>{path}</path></target></pool>"


def _default_pool(uri: str, path: Path) -> None:
    """Define and start the host's storage pool ``default`` in ``path``: where a restore puts
    disks by default. Its own ``/var/lib/libvirt/images`` is a path only its namespace sees,
    while the node process (outside) writes the disks: both see ``HOST_DIR/images``."""
    make_dirs(path, 0o711)
    quiet_libvirt()
    conn = libvirt.open(uri)
    try:
        pool = conn.storagePoolDefineXML(POOL_XML.format(path=path), 0)
        pool.setAutostart(1)
        pool.create(0)
    except libvirt.libvirtError as exc:
        raise LabFailed(f"the lab host's storage pool: {exc.get_error_message()}") from None
    finally:
        conn.close()


def _destroy_domains(uri: str) -> list[str]:
    quiet_libvirt()
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return []
    try:
        names = []
        for dom in conn.listAllDomains(0):
            names.append(dom.name())
            destroy_and_undefine(dom)
        return names
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def _down(hdir: Path) -> None:
    rec = _record(hdir)
    if rec is not None:
        pid = int(rec["pid"])
        if _running(pid) and _is_ours(pid, hdir):
            _signal(_children(pid), signal.SIGTERM)  # unshare ignores SIGTERM; its init stops
            deadline = time.monotonic() + 15
            while _running(pid) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.05)
            if _running(pid):  # killing a namespace's init kills all of the namespace
                _signal(_children(pid), signal.SIGKILL)
                _signal([pid], signal.SIGKILL)
                _reap(pid)
    shutil.rmtree(hdir, ignore_errors=True)


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _running(pid: int) -> bool:
    """Alive and not a zombie (the process that started the host, our parent or not, may
    not have reaped its ``unshare`` yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _is_ours(pid: int, hdir: Path) -> bool:
    """Whether ``pid`` is still the unshare that runs this host's init (pids are reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(hdir / "vmvault-host-init.py").encode() in cmdline


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def host_down(lab_dir: Path) -> list[str] | None:
    """Destroy the host's domains, stop it and remove its directory. Returns the names of the
    domains removed, ``None`` when there was no host."""
    lab_dir = Path(lab_dir).absolute()
    hdir = host_dir(lab_dir)
    make_dirs(lab_dir)
    with locked(lab_dir / ".host.lock"):
        if not hdir.exists():
            return None
        rec = _record(hdir)
        names = _destroy_domains(rec["uri"]) if rec else []
        _down(hdir)
        return names
