"""Where a lab Ceph cluster keeps everything, and its ``ceph.conf``.

One directory holds the whole cluster: the config, the keyrings, the monitor's store, the
OSD's BlueStore file (sparse), the RGW's data, every pid file, admin socket and log. Every
command is given ``-c DIR/ceph.conf``, so nothing is read from or written to ``/etc/ceph``
and several clusters (different directories, different ports) coexist on one host.

The settings are those of ``../shared/notes/ceph-rgw.md``: a v2-only monitor on 127.0.0.1,
one OSD and pools of size 1 (with the warnings that would otherwise keep the cluster in
HEALTH_WARN switched off; a shared disk with less than 30 % free would also warn, so only
below 10 % does), and ``paxos propose interval = 0.1``, without which RGW's first
pool creations take 10-15 s more. There is no manager: S3 works without it. The gateway's
lifecycle threads are off: they poll in 5 s sleeps, which held every stop of the gateway for
5 s, and the lab sets no lifecycle rules.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from pathlib import Path

#: Daemon names, as Ceph spells them (``$name``): they name the pid files, logs and sockets.
MON, OSD, RGW = "mon.a", "osd.0", "client.rgw.gw"
DAEMONS = (MON, OSD, RGW)
#: The sparse file the OSD's BlueStore lives on (its apparent size, not what it uses).
BLOCK_BYTES = 10 * 1024**3
#: A unix socket path holds at most 107 bytes; the longest one is ``run/client.rgw.gw.asok``.
MAX_DIR_CHARS = 80
#: The file a set-up writes first into its directory: only a directory holding it is deleted.
MARKER = ".vmvault-lab-ceph"

CONF = """\
# Written by vmvault (hypervisor/lab/ceph_conf.py): a one-node lab cluster.
# Every path is under {root}; every command is run with -c {root}/ceph.conf.
[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{mon_port}]
mon initial members = a
ms bind msgr1 = false
ms bind ipv6 = false
run dir = {root}/run
crash dir = {root}/crash
log file = {root}/log/$name.log
pid file = {root}/run/$name.pid
auth allow insecure global id reclaim = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon data avail warn = 10
paxos propose interval = 0.1

[mon]
mon data = {root}/mon/$id
admin socket = {root}/run/$name.asok

[osd]
osd data = {root}/osd/$id
admin socket = {root}/run/$name.asok
public addr = 127.0.0.1
cluster addr = 127.0.0.1
osd objectstore = bluestore
bluestore block create = true
bluestore block size = {block_bytes}
bluestore fsck on mkfs = false
osd memory target = 1073741824

[client]
keyring = {root}/keyring

[client.rgw.gw]
keyring = {root}/rgw.keyring
admin socket = {root}/run/$name.asok
rgw data = {root}/rgw
rgw luarocks location = {root}/rgw/luarocks
rgw enable lc threads = false
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
"""


@dataclass(frozen=True)
class CephPaths:
    """The files of one lab cluster under ``root``."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "ceph.conf"

    @property
    def keyring(self) -> Path:
        """``mon.`` and ``client.admin`` (the ``ceph`` and ``radosgw-admin`` commands use it)."""
        return self.root / "keyring"

    @property
    def rgw_keyring(self) -> Path:
        return self.root / "rgw.keyring"

    @property
    def monmap(self) -> Path:
        return self.root / "monmap"

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def state(self) -> Path:
        """The endpoint and S3 keys, written (mode 0600) once the cluster is complete."""
        return self.root / "state.json"

    @property
    def mon_data(self) -> Path:
        return self.root / "mon" / "a"

    @property
    def osd_data(self) -> Path:
        return self.root / "osd" / "0"

    def pid_file(self, daemon: str) -> Path:
        return self.root / "run" / f"{daemon}.pid"

    def log_file(self, daemon: str) -> Path:
        return self.root / "log" / f"{daemon}.log"

    def out_file(self, daemon: str) -> Path:
        """What the daemon printed before it detached (a missing library, a bad option)."""
        return self.root / "log" / f"{daemon}.out"

    def dirs(self) -> list[Path]:
        return [
            self.root / sub for sub in ("run", "log", "crash", "rgw", "rgw/luarocks", "mon")
        ] + [self.mon_data.parent, self.osd_data]


def render_conf(paths: CephPaths, fsid: str, mon_port: int, rgw_port: int) -> str:
    return CONF.format(
        root=paths.root,
        fsid=fsid,
        mon_port=mon_port,
        rgw_port=rgw_port,
        block_bytes=BLOCK_BYTES,
    )


#: Where the monitor's and the gateway's ports are drawn from: below Linux's ephemeral range
#: (32768-60999), so that no outgoing connection takes a port between the choice at ``up`` and
#: the bind (or while a killed gateway is down), and above the OSDs' 6800-7300.
PORT_RANGE = (20000, 32768)


def free_port(avoid: tuple[int, ...] = ()) -> int:
    """A TCP port of :data:`PORT_RANGE` on 127.0.0.1 that nothing listens on now."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(*PORT_RANGE)
        if port in avoid:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free TCP port in {PORT_RANGE[0]}-{PORT_RANGE[1] - 1} on 127.0.0.1")
