"""``vmvault --server URL host add``: the request body sends ``pull_tls`` only when
``--pull-tls`` is given, so a server older than pulls (its request model forbids unknown
fields) still adds a plain host; and an answer without ``pull_tls`` prints as a plain host.
The server is replaced by the function that would send the request (the body is what is
tested; tests/e2e/test_cli_remote.py runs host add against a real server)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from vmvault.cli import remote
from vmvault.cli.hosts import host_app


def _add(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[dict[str, Any], str]:
    sent: list[dict[str, Any]] = []

    def post(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        assert path == "/hosts" and body is not None
        sent.append(body)
        # what an older server answers: no pull_tls in its document
        return {"uri": body["uri"], "hostname": None, "location": body["location"]}

    monkeypatch.setattr(remote, "active", lambda: True)
    monkeypatch.setattr(remote, "post", post)
    app = typer.Typer()
    app.add_typer(host_app, name="host")
    result = CliRunner().invoke(app, ["host", "add", *args])
    assert result.exit_code == 0, result.output
    [body] = sent
    return body, result.output


def test_a_plain_host_add_sends_no_pull_field(monkeypatch: pytest.MonkeyPatch) -> None:
    body, printed = _add(monkeypatch, "qemu+tls://h1.example/system", "--no-check")
    assert body == {"uri": "qemu+tls://h1.example/system", "location": "local", "check": False}
    assert printed.startswith("host qemu+tls://h1.example/system (?) added to location local")


def test_a_pulled_host_add_sends_its_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    body, _ = _add(monkeypatch, "qemu+tls://h1.example/system", "--pull-tls", "/etc/pull")
    assert body["pull_tls"] == "/etc/pull" and body["check"] is True
