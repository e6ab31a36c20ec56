"""``vmvault --server URL host add`` / ``host update``: the request body sends ``pull_tls``
(``no_pull_tls``, ``check`` of an update) only when its option is given, so a server older than
them (its request model forbids unknown fields) still adds a plain host or updates the
cluster-managed VMs — and refuses a pull option rather than ignoring it; an answer without
``pull_tls`` prints as a plain host.
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


def _update(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[dict[str, Any], str]:
    sent: list[tuple[str, dict[str, Any]]] = []

    def patch(path: str, body: dict[str, Any]) -> dict[str, Any]:
        sent.append((path, body))
        return {"uri": "qemu+tls://h1.example/system", "cluster_managed": body["cluster_managed"]}

    monkeypatch.setattr(remote, "active", lambda: True)
    monkeypatch.setattr(remote, "patch", patch)
    app = typer.Typer()
    app.add_typer(host_app, name="host")
    result = CliRunner().invoke(app, ["host", "update", "qemu+tls://h1.example/system", *args])
    assert result.exit_code == 0, result.output
    [(path, body)] = sent
    assert path == "/hosts/qemu%2Btls%3A%2F%2Fh1.example%2Fsystem"
    return body, result.output


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("--cluster-managed", "db"), {}),  # what a server older than pulls accepts
        (("--pull-tls", "/etc/pull"), {"pull_tls": "/etc/pull"}),
        (("--pull-tls", "/etc/pull", "--no-check"), {"pull_tls": "/etc/pull", "check": False}),
        (("--no-pull-tls",), {"no_pull_tls": True}),
    ],
)
def test_a_host_update_sends_the_pull_fields_only_when_given(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], extra: dict[str, Any]
) -> None:
    body, printed = _update(monkeypatch, *args)
    marks = ["db"] if "--cluster-managed" in args else []
    assert body == {"cluster_managed": marks, "not_cluster_managed": []} | extra
    assert printed.endswith("; backed up by its own node\n")  # an answer without pull_tls
