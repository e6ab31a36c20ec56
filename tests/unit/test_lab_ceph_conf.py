"""The lab cluster's ceph.conf keeps everything under its directory (several clusters coexist)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from vmvault.hypervisor.lab.ceph_conf import (
    DAEMONS,
    MAX_DIR_CHARS,
    PORT_RANGE,
    CephPaths,
    free_port,
    render_conf,
)


def settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = (part.strip() for part in line.split("=", 1))
            found.setdefault(key, []).append(value)
    return found


def test_every_path_in_the_conf_is_under_the_cluster_directory() -> None:
    root = Path("/var/lib/vmvault/lab-x/ceph")
    conf = settings(render_conf(CephPaths(root), "f5d0", 40001, 40002))
    paths = [v for values in conf.values() for v in values if "/" in v and "endpoint" not in v]
    assert len(paths) >= 12  # run dir, crash dir, log/pid file, sockets, data dirs, keyrings
    assert all(p.startswith(f"{root}/") for p in paths), paths
    for key in ("run dir", "crash dir", "log file", "pid file", "admin socket", "mon data",
                "osd data", "rgw data", "rgw luarocks location", "keyring"):  # fmt: skip
        assert key in conf, key


def test_the_conf_has_the_chosen_ports_v2_only_on_loopback_and_fast_paxos() -> None:
    conf = settings(render_conf(CephPaths(Path("/c")), "f5d0", 40001, 40002))
    assert conf["mon host"] == ["[v2:127.0.0.1:40001]"]
    assert conf["ms bind msgr1"] == ["false"]
    assert conf["rgw frontends"] == ["beast endpoint=127.0.0.1:40002"]
    assert conf["paxos propose interval"] == ["0.1"]
    assert conf["osd pool default size"] == ["1"] and conf["fsid"] == ["f5d0"]


def test_the_longest_socket_path_fits_a_unix_socket_at_the_longest_directory() -> None:
    paths = CephPaths(Path("/" + "d" * (MAX_DIR_CHARS - 1)))
    sockets = [paths.root / "run" / f"{d}.asok" for d in DAEMONS]
    assert max(len(str(s).encode()) for s in sockets) <= 107
    assert re.fullmatch(r"/d+", str(paths.root)) and len(str(paths.root)) == MAX_DIR_CHARS


def test_free_ports_are_outside_the_ephemeral_range_and_bindable() -> None:
    first = free_port()
    second = free_port(avoid=(first,))
    assert first != second
    for port in (first, second):
        assert PORT_RANGE[0] <= port < PORT_RANGE[1] <= 32768 and not 6800 <= port <= 7300
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
