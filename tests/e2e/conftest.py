"""Real receivers for the notification tests: a local SMTP server (aiosmtpd) and a local HTTP
server that records every POST and answers what a test scripted (status codes per path); and
the console tests' one served site and browser (``site``)."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import CliRunner
from tests.e2e.served import Served, seed_catalog, serve_home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: Any
    status: int


@dataclass
class WebhookReceiver:
    port: int
    posts: list[Post] = field(default_factory=list)
    #: path → the statuses of its next answers (then 200)
    script: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_path(self, *statuses: int) -> str:
        """A path of its own for one test, answering ``statuses`` first, then 200."""
        path = f"/hook/{uuid.uuid4().hex}"
        self.script[path] = list(statuses)
        return path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Post]:
        with self.lock:
            return [p for p in self.posts if p.path == path]


@dataclass
class MailReceiver:
    port: int
    mails: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for _sender, rcpts, m in self.mails if address in rcpts]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One ``vmvault serve`` and one headless Chromium for every console test of the session
    (tests/e2e/console_site.py: what the home holds)."""
    from tests.e2e.console_site import console_site  # it imports modules that import this one

    with console_site(tmp_path_factory.mktemp("console-pages")) as made:
        yield made


@pytest.fixture(scope="session")
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                queue = receiver.script.get(self.path, [])
                status = queue.pop(0) if queue else 200
                receiver.posts.append(Post(self.path, dict(self.headers), json.loads(raw), status))
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def smtp() -> Iterator[MailReceiver]:
    receiver = MailReceiver(free_port())
    controller = Controller(receiver, hostname="127.0.0.1", port=receiver.port)
    controller.start()
    yield receiver
    controller.stop()


def new_address() -> str:
    return f"ops-{uuid.uuid4().hex[:8]}@example.com"


@pytest.fixture()
def served(cli: CliRunner, home: Path) -> Iterator[Served]:
    """The catalog of :func:`seed_catalog` and finished GC jobs, served on loopback."""
    seed_catalog(home)
    assert cli("gc").code == 0
    assert cli("gc").code == 0
    admin = cli("token", "create", "ops", "--role", "admin").stdout.splitlines()[-1]
    reader = cli("token", "create", "eyes", "--role", "reader").stdout.splitlines()[-1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = home / "serve.log"
    with serve_home(home, f"127.0.0.1:{port}", url, log):
        yield Served(url, admin, reader, log)
