"""The local socket (docs/server.md, "The local socket"): on the server's host, the CLI's
listings and dashboard are answered by the running ``vmvault serve`` of its home on
``$VMVAULT_HOME/api.sock`` — the same stdout, stderr and exit code as when the CLI reads the
catalog itself (``VMVAULT_LOCAL_SOCKET=0``), without importing the catalog's modules; a CLI
of another catalog, a socket nobody answers on and a server killed fall back to reading the
catalog itself; the socket answers reads only, of clients of its own catalog and version, and
only its user may connect."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import CliRunner, Result, catalog_imports
from tests.e2e.conftest import free_port
from tests.e2e.served import Served, serve_home
from tests.e2e.test_cli_remote import DIRECT, _same, timeless
from vmvault.config import LOCAL_IDENTITY_HEADER, Settings

#: The commands the local socket answers (cli/remote.py ``reads``). Their shapes and options
#: are compared with the catalog's answers through the remote CLI (test_cli_remote.py), whose
#: code the local socket's commands run: here each once.
ROUTED = [
    ("vm", "list"),
    ("vm", "list", "--json"),
    ("protection", "list"),
    ("points", "list", "web"),
    ("points", "list", "--deleted"),
    ("jobs", "list", "--vm", "web", "--limit", "1"),
    ("host", "list"),
    ("dashboard",),
    ("dashboard", "--limit", "1", "--offset", "1"),
]


#: No token is sent on the socket (``_same`` checks that a token never shows).
NO_TOKEN = "vmv_no_token"


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(self.path))


def _ask(path: Path, method: str, target: str, identity: str | None) -> tuple[int, Any]:
    connection = _Unix(path)
    headers = {LOCAL_IDENTITY_HEADER: identity} if identity is not None else {}
    connection.request(method, target, headers=headers)
    answer = connection.getresponse()
    status, body = answer.status, json.loads(answer.read())
    connection.close()
    return status, body


def _imports(cli: CliRunner, *args: str, env: dict[str, str] | None = None) -> set[str]:
    r = cli(*args, env={**(env or {}), "PYTHONPROFILEIMPORTTIME": "1"})
    assert r.code == 0 and r.stdout and r.without_imports() == "", (args, r.stderr[-2000:])
    return r.imported()


def test_reads_are_answered_on_the_socket_as_the_catalog_answers_them(
    cli: CliRunner, served: Served, home: Path
) -> None:
    sock = home / "api.sock"
    assert stat.S_ISSOCK(sock.lstat().st_mode) and stat.S_IMODE(sock.lstat().st_mode) == 0o600
    for args in ROUTED:
        _same(cli(*args, env=DIRECT), cli(*args), args, NO_TOKEN)
    a, b = cli("dashboard", "--json", env=DIRECT), cli("dashboard", "--json")
    assert a.code == b.code == 0 and timeless(a.json()) == timeless(b.json())
    # the answers came from the server: no catalog module was imported for them, nor Rich
    # (plain lines and listings piped are written without it: cli/plain.py) …
    for args in (("vm", "list"), ("protection", "list"), ("dashboard",), ("dashboard", "--json")):
        modules = _imports(cli, *args)
        assert catalog_imports(modules) == set(), args
        assert {m for m in modules if m.partition(".")[0] == "rich"} == set(), args
        # … nor http.client (its email parser), urllib or ssl: cli/local_http.py asks
        assert not {"http.client", "email.parser", "ssl", "urllib.request"} & modules, args
    # … as they are when the CLI reads the catalog itself
    assert catalog_imports(_imports(cli, "protection", "list", env=DIRECT))
    # the CLI's default vault is the one asked for, and its settings are checked as locally
    for env in ({"VMVAULT_VAULT": "nowhere"}, {"VMVAULT_MAX_DISKS": "many"}):
        direct, answered = cli("vm", "list", env=env | DIRECT), cli("vm", "list", env=env)
        assert direct.code == 2, direct
        _same(direct, answered, ("vm", "list"), NO_TOKEN)
    # a CLI of another catalog reads its own: the server's VMs are not shown to it
    other = {"VMVAULT_CATALOG_URL": f"sqlite:///{home.parent / 'other.db'}"}
    mine = cli("vm", "list", "--json", env=other)
    assert mine.code == 2 and mine.stderr.startswith("error NO_VAULT: no vault exists"), mine
    assert cli("vm", "list", "--json").json() != []
    # two vaults: a default vault of the CLI's own is not the server's (it has none), so the
    # CLI reads the catalog itself and lists what it lists without a server
    assert cli("vault", "create", "other", "--location", "local").code == 0
    for env, args in (
        ({"VMVAULT_VAULT": "other"}, ("points", "list", "web")),
        ({"VMVAULT_VAULT": "main"}, ("points", "list")),
        ({"VMVAULT_VAULT": "main"}, ("dashboard",)),
        ({}, ("vm", "list")),
    ):
        direct, answered = cli(*args, env=env | DIRECT), cli(*args, env=env)
        _same(direct, answered, args, NO_TOKEN)
    assert cli("points", "list", "web", "--json", env={"VMVAULT_VAULT": "other"}).json()
    identity = Settings.from_env({"VMVAULT_HOME": str(home)}).local_identity
    status, body = _ask(sock, "GET", "/api/v1/whoami", identity)
    assert status == 200 and body["name"].startswith("local:") and body["role"] == "admin", body
    for method in ("POST", "DELETE", "PATCH", "PUT"):  # before any route: nothing changes
        status, body = _ask(sock, method, "/api/v1/tokens/eyes", identity)
        assert (status, body["error"]["code"]) == (405, "LOCAL_SOCKET_READ_ONLY"), body
    assert "eyes" in cli("token", "list").stdout
    for sent in (None, "0.0.1 " + identity.split()[1], identity.split()[0] + " 0" * 12):
        status, body = _ask(sock, "GET", "/api/v1/vms", sent)
        assert (status, body["error"]["code"]) == (421, "LOCAL_SOCKET_MISMATCH"), (sent, body)
    # a second server on the same home leaves the socket to the first, which keeps answering
    port = free_port()
    log = home / "second.log"
    with serve_home(home, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", log):
        assert _ask(sock, "GET", "/api/v1/whoami", identity)[0] == 200
    assert "another vmvault serve of this home holds" in log.read_text()
    assert _ask(sock, "GET", "/api/v1/whoami", identity)[0] == 200


def test_a_socket_nobody_answers_on_is_bound_again_and_none_is_bound_when_it_cannot_be(
    cli: CliRunner, home: Path, tmp_path: Path
) -> None:
    assert cli("vault", "create", "main", "--location", "local").code == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env |= {"VMVAULT_HOME": str(home), "VMVAULT_GC_SCHEDULE": "off"}
    log = home / "killed.log"
    with log.open("w") as fh:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmvault", "serve", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    sock = home / "api.sock"
    deadline = time.monotonic() + 60
    while "answers this host's CLI's reads" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    answered = cli("dashboard")
    assert catalog_imports(_imports(cli, "vm", "list")) == set()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert stat.S_ISSOCK(sock.lstat().st_mode)  # left behind: nobody answers on it
    fallback = cli("dashboard")
    assert fallback.code == 0 and fallback.stdout == answered.stdout, (answered, fallback)
    assert catalog_imports(_imports(cli, "vm", "list"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serve_home(home, f"127.0.0.1:{port}", url, home / "again.log"):
        assert catalog_imports(_imports(cli, "vm", "list")) == set()
    assert not sock.exists()  # removed by the server that bound it, when it stopped
    # none when asked for none, nor where the path is too long for a unix socket
    log = home / "off.log"
    with serve_home(home, f"127.0.0.1:{port}", url, log, DIRECT):
        assert not (home / "api.sock").exists()
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    r = cli("vault", "create", "main", "--location", "local", env={"VMVAULT_HOME": str(deep)})
    assert r.code == 0, r
    log = deep / "serve.log"
    with serve_home(deep, f"127.0.0.1:{port}", url, log):
        assert not (deep / "api.sock").exists()
        listed: Result = cli("vm", "list", env={"VMVAULT_HOME": str(deep)})
        assert listed.code == 0, listed
    assert "longer than a unix socket's 107 bytes" in log.read_text()


def test_a_server_that_stops_answering_during_a_read_is_read_around(
    cli: CliRunner, home: Path
) -> None:
    """The socket's server answers the CLI's first request, then is gone: the command is run
    again reading the catalog itself, and prints what it prints without a server."""
    assert cli("vault", "create", "main", "--location", "local").code == 0
    expected = cli("dashboard", env=DIRECT)
    path = home / "api.sock"
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(path))
    listening.listen(1)

    def answer_once() -> None:
        peer, _ = listening.accept()
        with peer:
            peer.recv(65536)
            body = b'{"name": "local:root", "role": "admin"}'
            peer.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
        listening.close()  # gone: the next connection is refused

    thread = threading.Thread(target=answer_once)
    thread.start()
    r = cli("dashboard")
    thread.join(timeout=30)
    assert (r.code, r.stdout, r.stderr) == (expected.code, expected.stdout, expected.stderr)
