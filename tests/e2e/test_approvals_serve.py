"""Approvals against a real ``vmvault serve`` (docs/approvals.md), no guest needed: the console's
Approvals page in headless Chromium — the requester sees no Approve button, the other admin
approves with one click — and delay mode run by the server's own loop (the request's due time
moved into the past in the catalog, as tests/e2e/test_soft_delete.py moves a purge time: the
server reads the real clock)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import create_engine, update

from tests.conftest import CliRunner
from tests.integration.test_console import new_browser
from tests.integration.test_server import ServerProcess
from vmvault.persistence import tables as t


@pytest.fixture()
def server(home: Path, cli: CliRunner) -> Iterator[ServerProcess]:
    assert cli("vault", "create", "main", "--location", "local").code == 0
    assert cli("vault", "update", "main", "--approvals", "second-admin").code == 0
    s = ServerProcess(home)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _token(cli: CliRunner, name: str) -> dict[str, str]:
    r = cli("token", "create", name, "--role", "admin")
    assert r.code == 0, r.stderr
    return {"Authorization": f"Bearer {r.stdout.splitlines()[-1]}"}


def _call(s: ServerProcess, who: dict[str, str], method: str, path: str, body: Any = None):  # type: ignore[no-untyped-def]
    return httpx.request(method, f"{s.url}{path}", json=body, headers=who, timeout=30)


def test_the_console_approves_and_the_server_runs_due_requests(
    server: ServerProcess, cli: CliRunner, home: Path
) -> None:
    alice, bob = _token(cli, "alice"), _token(cli, "bob")
    r = _call(server, alice, "PATCH", "/vaults/main", {"soft_delete": "off"})
    assert r.status_code == 202, r.text
    rid = r.json()["id"]

    browser = new_browser()
    try:
        base = f"http://127.0.0.1:{server.port}/console/"
        wait = WebDriverWait(browser, 20)

        def sign_in(who: dict[str, str]) -> None:
            browser.get(base)
            browser.execute_script("sessionStorage.clear()")
            browser.refresh()
            wait.until(lambda b: b.find_elements(By.ID, "token"))[0].send_keys(
                who["Authorization"].split()[-1]
            )
            browser.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".who .role"))
            browser.execute_script("location.hash = '#/approvals'")
            wait.until(
                lambda b: b.find_elements(By.CSS_SELECTOR, '.page[data-page="approvals"] h1')
            )

        sign_in(alice)
        row = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, f'tr[data-key="{rid}"]'))[0]
        assert "set soft delete of vault 'main' to off" in row.text and "pending" in row.text
        assert not row.find_elements(By.CSS_SELECTOR, f'[aria-label="Approve request {rid}"]')
        assert row.find_element(By.CSS_SELECTOR, f'[aria-label="Reject request {rid}"]').text == (
            "Withdraw"
        )

        sign_in(bob)
        wait.until(
            lambda b: b.find_elements(By.CSS_SELECTOR, f'[aria-label="Approve request {rid}"]')
        )[0].click()
        notice = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".notice"))[0]
        assert f"Request {rid}: executed" in notice.text
    finally:
        browser.quit()
    assert _call(server, alice, "GET", "/vaults/main").json()["soft_delete"] == "off"

    # delay mode, run by the server's loop once the delay has passed
    r = _call(server, alice, "PATCH", "/vaults/main", {"approvals": "delay"})
    assert r.status_code == 202
    assert _call(server, bob, "POST", f"/approvals/{r.json()['id']}/approve").status_code == 200
    held = _call(server, alice, "PATCH", "/vaults/main", {"soft_delete_days": 2}).json()
    assert held["mode"] == "delay" and held["state"] == "pending"
    engine = create_engine(f"sqlite:///{home / 'catalog.db'}")
    with engine.begin() as conn:
        past = datetime.now(UTC) - timedelta(minutes=1)
        a = t.approval_requests
        conn.execute(update(a).where(a.c.id == held["id"]).values(due_at=past))
    engine.dispose()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        doc = _call(server, bob, "GET", f"/approvals/{held['id']}").json()
        if doc["state"] != "pending":
            break
        time.sleep(0.5)
    assert (doc["state"], doc["decided_by"]) == ("executed", "vmvault:delay"), doc
    assert _call(server, alice, "GET", "/vaults/main").json()["soft_delete_days"] == 2

    # the remote CLI: the same documents as on the host, decisions as the token's holder
    remote = ["--server", f"http://127.0.0.1:{server.port}"]
    as_alice = [*remote, "--token", alice["Authorization"].split()[-1]]
    as_bob = [*remote, "--token", bob["Authorization"].split()[-1]]
    r = cli(*as_bob, "approvals", "list", "--json")
    assert r.code == 0 and r.stdout == cli("approvals", "list", "--json").stdout, r.stderr
    assert (
        cli(*as_bob, "approvals", "show", str(rid)).stdout
        == cli("approvals", "show", str(rid)).stdout
    )
    last = _call(server, alice, "PATCH", "/vaults/main", {"approvals": "off"}).json()
    r = cli(*as_alice, "approvals", "approve", str(last["id"]))
    assert r.code == 2 and "error APPROVAL_SELF" in r.stderr, r.stderr
    r = cli(*as_bob, "approvals", "reject", str(last["id"]), "--json")
    assert r.code == 0 and r.json()["state"] == "rejected" and r.json()["decided_by"] == "bob"
    r = cli(*as_bob, "approvals", "run-due")
    assert r.code == 2 and "error REMOTE_UNSUPPORTED" in r.stderr
