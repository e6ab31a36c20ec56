"""A real S3 service for the lab: a single-node Ceph cluster with the RADOS Gateway.

:class:`CephCluster` brings up, reports and tears down one cluster that lives entirely under
one directory (see :mod:`ceph_conf`), from Debian's packages and without systemd, as
``../shared/notes/ceph-rgw.md`` records it. ``up`` runs, in order:

1. the monitor: fsid, a keyring with ``mon.`` and ``client.admin``, a monmap with one v2
   address on a free port of 127.0.0.1, ``ceph-mon --mkfs``, then ``ceph-mon``;
2. the OSD: ``ceph osd new`` with a fresh cephx key, ``ceph-osd --mkfs`` on a sparse 10 GiB
   BlueStore file, its keyring written by us (``--mkfs`` does not), then ``ceph-osd``, and a
   wait until the map counts it up;
3. the gateway: its cephx key, ``radosgw`` with beast on another free port of 127.0.0.1, a wait
   until it answers HTTP (it creates its pools first);
4. an S3 user (``radosgw-admin user create``); the endpoint and keys go to ``state.json``
   (mode 0600), written last: a directory without it is a set-up that did not finish.

``up`` is idempotent: when ``state.json`` exists it only starts the daemons that are not
running and returns the same endpoint and keys.  The first file a set-up writes is the marker
:data:`~ceph_conf.MARKER`: ``up`` (restarting a set-up that did not finish) and ``down``
delete the directory only when it holds the marker (or is empty), so a ``VMVAULT_LAB_DIR``
pointed at a directory of something else (``/var/lib``, whose ``ceph`` is Debian's) is
refused untouched (``LAB_STORAGE_DIR_FOREIGN``). A failed ``up`` stops what it started and
keeps the directory for its logs (``down`` removes it). Concurrent calls on one directory are
serialised by a lock file beside it. ``down`` stops the gateway, then the OSD, then the
monitor, each with TERM and, after a timeout, KILL, and removes the directory. One at a time
on purpose: a gateway that has run a while unregisters its watches from the OSD when it
stops, and with the OSD stopped at the same moment it hung until the KILL (15 s instead of
0.3 s, measured); an OSD whose monitor is gone waits ~5 s longer too.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vmvault.domain.errors import StorageLabFailed
from vmvault.domain.errors.lab import StorageLabDirForeign
from vmvault.hypervisor.host import locked
from vmvault.hypervisor.lab.ceph_conf import (
    DAEMONS,
    MARKER,
    MAX_DIR_CHARS,
    MON,
    OSD,
    RGW,
    CephPaths,
    free_port,
    render_conf,
)
from vmvault.hypervisor.lab.ceph_procs import (
    failed,
    http_answers,
    pid_of,
    run,
    signal_all,
    start,
    stop,
    wait_gone,
)
from vmvault.hypervisor.lab.fsutil import write_private

#: The S3 user every lab cluster gets.
S3_USER = "vmvault-lab"
#: The region clients sign with (RGW's default zonegroup accepts any).
REGION = "us-east-1"

MON_TIMEOUT = 30.0
OSD_TIMEOUT = 90.0
RGW_TIMEOUT = 90.0
#: How long a started radosgw may go without its pid file before it counts as not running.
PID_GRACE = 20.0
STOP_TIMEOUT = 15.0


class CephCluster:
    """One lab cluster under ``root``; see the module docstring for what each step does."""

    def __init__(self, root: Path) -> None:
        self.paths = CephPaths(Path(root).absolute())

    @property
    def root(self) -> Path:
        return self.paths.root

    # --- the three verbs ---------------------------------------------------------------------

    def up(self) -> dict[str, Any]:
        """Start the cluster (or what of it is not running); its endpoint and S3 keys."""
        self._check_root()
        with self._lock():
            state = self._state()
            if state is None:
                if self.root.exists():  # an up that did not finish: start afresh
                    self._remove()
                return self._create()
            self._revive(state)
            return state

    def status(self) -> dict[str, Any]:
        """``state`` is up (every daemon runs, RGW answers), down (none runs) or partial."""
        state = self._state()
        pids = {d: pid_of(self.paths, d) for d in DAEMONS}
        running = [d for d, p in pids.items() if p is not None]
        answers = state is not None and http_answers(int(state["rgw_port"]))
        if len(running) == len(DAEMONS) and answers:
            word = "up"
        elif not running:
            word = "down"
        else:
            word = "partial"
        doc: dict[str, Any] = {
            "state": word,
            "dir": str(self.root),
            "exists": self.root.exists(),
            "daemons": pids,
            "endpoint": state["endpoint"] if state else None,
        }
        if state:
            doc |= {k: state[k] for k in ("access_key", "secret_key", "region")}
        return doc

    def down(self) -> bool:
        """Stop every daemon and remove the directory; False if there was nothing."""
        self._check_root()
        with self._lock():
            if not self.root.exists():
                return False
            self._remove()
            return True

    # --- the gateway alone, for fault tests ----------------------------------------------------

    def stop_rgw(self) -> None:
        """Kill the gateway as a crash would (SIGKILL) and wait until it is gone."""
        pid = pid_of(self.paths, RGW)
        if pid is None:
            return
        signal_all([pid], signal.SIGKILL)
        if wait_gone(self.paths, {RGW: pid}, 10):
            raise failed(self.paths, "radosgw", f"pid {pid} survived SIGKILL for 10s")

    def start_rgw(self) -> None:
        """Start the gateway again (if it is not running) and wait until it answers."""
        state = self._state()
        if state is None:
            raise failed(self.paths, "radosgw", f"no complete cluster in {self.root}")
        for attempt in (1, 2):  # a gateway started right after a kill can exit at once
            if pid_of(self.paths, RGW) is None:
                start(self.paths, RGW, ["radosgw", "-n", RGW])
            try:
                self._wait_rgw(int(state["rgw_port"]))
                return
            except StorageLabFailed:
                if attempt == 2 or pid_of(self.paths, RGW) is not None:
                    raise
            time.sleep(1.0)

    def _remove(self) -> None:
        """Stop the daemons and delete the directory: only one this class created (it holds
        the marker), or an empty one; anything else is refused untouched."""
        state = self._state() or {}
        ours = self.paths.marker.is_file() or state.get("dir") == str(self.root)  # or older
        if not ours:
            try:
                self.root.rmdir()  # empty: nothing of anyone's to lose
            except OSError:
                raise StorageLabDirForeign(root=self.root, marker=MARKER) from None
            return
        self._stop_all()
        shutil.rmtree(self.root)

    def _stop_all(self) -> None:
        """Stop the gateway, then the OSD, then the monitor (see the module docstring)."""
        for daemon in (RGW, OSD, MON):
            stop(self.paths, (daemon,), STOP_TIMEOUT)

    # --- set-up ------------------------------------------------------------------------------

    def _create(self) -> dict[str, Any]:
        t0 = time.monotonic()
        try:
            self.root.mkdir(parents=True, mode=0o700)
            self.paths.marker.write_text("a vmvault lab Ceph cluster: 'vmvault lab storage down'\n")
            for d in self.paths.dirs():
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise failed(
                self.paths, f"the directory {self.root}", exc.strerror or str(exc)
            ) from None
        try:
            mon_port = free_port()
            rgw_port = free_port(avoid=(mon_port,))
        except OSError as exc:
            raise failed(self.paths, "choosing ports", str(exc)) from None
        fsid = str(uuid.uuid4())
        self.paths.conf.write_text(render_conf(self.paths, fsid, mon_port, rgw_port))
        try:
            self._create_mon(fsid, mon_port)
            self._create_osd()
            keys = self._create_rgw(rgw_port)
        except BaseException:
            with contextlib.suppress(Exception):
                self._stop_all()
            raise
        state = {
            "endpoint": f"http://127.0.0.1:{rgw_port}",
            **keys,
            "region": REGION,
            "dir": str(self.root),
            "fsid": fsid,
            "mon_port": mon_port,
            "rgw_port": rgw_port,
            "seconds": round(time.monotonic() - t0, 1),
        }
        write_private(self.paths.state, json.dumps(state, indent=2).encode())
        return state

    def _create_mon(self, fsid: str, port: int) -> None:
        p, kr = self.paths, str(self.paths.keyring)
        run(p, ["ceph-authtool", "--create-keyring", kr, "--gen-key", "-n", "mon.",
                "--cap", "mon", "allow *"])  # fmt: skip
        run(p, ["ceph-authtool", kr, "--gen-key", "-n", "client.admin", "--cap", "mon", "allow *",
                "--cap", "osd", "allow *", "--cap", "mgr", "allow *"])  # fmt: skip
        run(p, ["monmaptool", "--create", "--fsid", fsid, "--addv", "a",
                f"[v2:127.0.0.1:{port}]", str(p.monmap)])  # fmt: skip
        run(p, ["ceph-mon", "--mkfs", "-i", "a", "--monmap", str(p.monmap), "--keyring", kr],
            daemon=MON)  # fmt: skip
        start(p, MON, ["ceph-mon", "-i", "a"])
        self._wait_mon()

    def _create_osd(self) -> None:
        p = self.paths
        key = run(p, ["ceph-authtool", "--gen-print-key"]).strip()
        osd_uuid = str(uuid.uuid4())
        osd_id = self._ceph(["osd", "new", osd_uuid, "-i", "-"],
                            stdin=json.dumps({"cephx_secret": key})).strip()  # fmt: skip
        if osd_id != "0":
            raise failed(p, "ceph osd new", f"the new OSD got id {osd_id!r}, not 0")
        run(p, ["ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid, "--key", key],
            timeout=120, daemon=OSD)  # fmt: skip
        run(p, ["ceph-authtool", str(p.osd_data / "keyring"), "--create-keyring", "-n", OSD,
                "--add-key", key])  # fmt: skip
        start(p, OSD, ["ceph-osd", "-i", "0"])
        self._wait_osd()

    def _create_rgw(self, port: int) -> dict[str, str]:
        p = self.paths
        self._ceph(["auth", "get-or-create", RGW, "mon", "allow rw", "osd", "allow rwx",
                    "mgr", "allow rw", "-o", str(p.rgw_keyring)])  # fmt: skip
        start(p, RGW, ["radosgw", "-n", RGW])
        self._wait_rgw(port)
        out = run(p, ["radosgw-admin", "user", "create", f"--uid={S3_USER}",
                      "--display-name=vmvault lab"], daemon=RGW)  # fmt: skip
        try:
            key = json.loads(out)["keys"][0]
            return {"access_key": str(key["access_key"]), "secret_key": str(key["secret_key"])}
        except (ValueError, KeyError, IndexError, TypeError):
            raise failed(p, "radosgw-admin user create", f"no keys in {out[:200]!r}") from None

    def _revive(self, state: dict[str, Any]) -> None:
        """Start, in order, the daemons of a complete cluster that are not running; on failure
        stop those it started (the others keep running, as they were)."""
        started: list[str] = []
        try:
            if pid_of(self.paths, MON) is None:
                started.append(MON)
                start(self.paths, MON, ["ceph-mon", "-i", "a"])
                self._wait_mon()
            if pid_of(self.paths, OSD) is None:
                # The map may still count the dead OSD up (the monitor has not noticed yet):
                # mark it down so that "1 OSD up" below means the new one has booted.
                self._ceph(["osd", "down", "0"])
                started.append(OSD)
                start(self.paths, OSD, ["ceph-osd", "-i", "0"])
                self._wait_osd()
            if pid_of(self.paths, RGW) is None:
                started.append(RGW)
                start(self.paths, RGW, ["radosgw", "-n", RGW])
            self._wait_rgw(int(state["rgw_port"]))
        except BaseException:
            with contextlib.suppress(Exception):
                for daemon in (RGW, OSD, MON):
                    if daemon in started:
                        stop(self.paths, (daemon,), STOP_TIMEOUT)
            raise

    # --- waiting -----------------------------------------------------------------------------

    def _ceph(self, args: list[str], stdin: str | None = None, timeout: float = 30) -> str:
        return run(self.paths, ["ceph", "--connect-timeout", str(int(timeout)), *args],
                   stdin=stdin, timeout=timeout + 10, daemon=MON)  # fmt: skip

    def _wait_mon(self) -> None:
        self._alive_or_fail(MON, "ceph-mon")
        self._ceph(["mon", "stat"], timeout=MON_TIMEOUT)

    def _wait_osd(self) -> None:
        deadline = time.monotonic() + OSD_TIMEOUT
        while True:
            self._alive_or_fail(OSD, "ceph-osd")
            doc = json.loads(self._ceph(["osd", "stat", "-f", "json"]) or "{}")
            if doc.get("num_up_osds") == 1:
                return
            if time.monotonic() > deadline:
                raise failed(self.paths, "ceph-osd (osd.0)",
                             f"not up after {OSD_TIMEOUT:.0f}s", OSD)  # fmt: skip
            time.sleep(0.5)

    def _wait_rgw(self, port: int) -> None:
        start = time.monotonic()
        deadline = start + RGW_TIMEOUT
        seen = False
        while not http_answers(port):
            # the pid file may appear only some time after radosgw detaches (CI saw "not
            # running" for a gateway whose log showed it still starting, under load): a
            # missing one means "not running" once it was there, or after PID_GRACE
            if pid_of(self.paths, RGW) is not None:
                seen = True
            elif seen or time.monotonic() - start > PID_GRACE:
                self._alive_or_fail(RGW, "radosgw")
            if time.monotonic() > deadline:
                raise failed(self.paths, f"radosgw ({RGW})",
                             f"no HTTP answer on 127.0.0.1:{port} after {RGW_TIMEOUT:.0f}s",
                             RGW)  # fmt: skip
            time.sleep(0.2)

    def _alive_or_fail(self, daemon: str, program: str) -> None:
        if pid_of(self.paths, daemon) is None:
            raise failed(self.paths, f"{program} ({daemon})", "the daemon is not running", daemon)

    # --- files -------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.paths.state.read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def _check_root(self) -> None:
        if len(str(self.root)) > MAX_DIR_CHARS:
            raise failed(self.paths, f"the directory {self.root}",
                         f"its path is longer than {MAX_DIR_CHARS} characters: the daemons' "
                         "unix sockets under it would exceed the 107-byte limit")  # fmt: skip

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise up/down on one directory (the lock file lives beside it, not in it)."""
        lock = self.root.parent / f".{self.root.name}.lock"
        held = contextlib.ExitStack()
        try:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            held.enter_context(locked(lock))
        except OSError as exc:
            raise failed(self.paths, f"the directory {self.root}",
                         f"{exc.strerror}: {exc.filename}") from None  # fmt: skip
        with held:
            yield
