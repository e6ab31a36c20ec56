"""The console's tests' shared site: one real ``vmvault serve`` and one headless Chromium for
the session (``site`` in tests/e2e/conftest.py), on a home made in-process — vaults ``main``
and ``offsite``, VMs written to the catalog as discovery would, real points written through
the dataplane, an admin and a reader token — and the helpers that drive the browser and check
through the API or the CLI (tests/e2e/test_console_pages.py, test_console_settings.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.conftest import Result, save_vm
from tests.e2e.test_console_vaults import new_browser, serving, until, visible
from tests.e2e.test_notifications import DEAD_HOST, unreachable_vm
from tests.unit.catalog_world import write_point
from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain.access import Role
from vmvault.domain.retention import Retention
from vmvault.domain.vm import VmItem, VmState
from vmvault.storage import local_hold

POINTS = ("20261201T010000Z-aaaa01", "20261201T020000Z-aaaa02")


@dataclass
class Site:
    home: Path
    base: str
    tokens: dict[str, str]
    browser: WebDriver

    def cli(self, *args: str) -> Result:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
        env["VMVAULT_HOME"] = str(self.home)
        p = subprocess.run(
            [sys.executable, "-m", "vmvault", *args],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        return Result(p.returncode, p.stdout, p.stderr)

    def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        r = httpx.request(
            method, f"{self.base}/api/v1{path}", json=body, timeout=30,
            headers={"Authorization": f"Bearer {token or self.tokens['admin']}"},
        )  # fmt: skip
        assert r.status_code < 300, (method, path, r.status_code, r.text)
        return r.json()

    def wait_job(self, job_id: int) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.api("GET", f"/jobs/{job_id}")
            if job["state"] not in ("queued", "in-progress", "cancelling"):
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} did not end")

    # --- the browser ---

    def sign_in(self, role: str) -> None:
        b = self.browser
        b.get(f"{self.base}/console/")
        b.execute_script("sessionStorage.clear()")
        b.refresh()
        visible(b, "#token").send_keys(self.tokens[role])
        self.click("#signin-form button[type=submit]")
        until(b, lambda: role in b.find_element(By.CSS_SELECTOR, ".who .role").text, role)

    def open(self, hash_: str, page: str) -> WebElement:
        """Page ``page`` at ``hash_``, rendered anew (its content's first card or alert)."""
        self.browser.execute_script(
            """document.querySelectorAll('.page').forEach((p) => p.classList.add('stale'));
            if (location.hash === arguments[0]) window.dispatchEvent(new HashChangeEvent('hashchange'));
            else location.hash = arguments[0];""",
            hash_,
        )
        css = f'.page[data-page="{page}"]:not(.stale)'
        return until(
            self.browser,
            lambda: next(
                (
                    e
                    for e in self.browser.find_elements(By.CSS_SELECTOR, css)
                    if e.find_elements(By.CSS_SELECTOR, ".card, [role=alert]")
                ),
                None,
            ),
            f"page {page}",
        )

    def click(self, css: str) -> None:
        visible(self.browser, css).click()

    def choose(self, button: str, select: str, value: str) -> None:
        """Open a dialog by its button's label and choose ``value`` in its ``select``."""
        self.click(f'button[aria-label="{button}"]')
        Select(visible(self.browser, select)).select_by_value(value)

    def fill(self, css: str, text: str) -> None:
        box = visible(self.browser, css)
        box.clear()
        box.send_keys(text)

    def notice(self, text: str) -> WebElement:
        return until(
            self.browser,
            lambda: next(
                (
                    e
                    for e in self.browser.find_elements(By.CSS_SELECTOR, ".notice")
                    if text in e.text
                ),
                None,
            ),
            f"a notice with {text!r}",
        )

    def forget_notices(self) -> None:
        """Remove the notices shown so far: the next one awaited is a new one (a page drawn
        anew after a save says the same as the one before it)."""
        self.browser.execute_script(
            "document.querySelectorAll('.notice').forEach((n) => n.remove())"
        )

    def job_of(self, notice: WebElement) -> dict[str, Any]:
        return self.wait_job(int(notice.find_element(By.CSS_SELECTOR, "a").text.lstrip("#")))

    def no_alert(self) -> None:
        alerts = [e.text for e in self.browser.find_elements(By.CSS_SELECTOR, ".page [role=alert]")]
        assert not alerts, alerts


@contextlib.contextmanager
def vault_beside(home: Path, vault: str, vm_name: str) -> Iterator[tuple[Services, VmItem]]:
    """Vault ``vault`` made beside the running server (as the CLI would) with VM ``vm_name``
    registered there; the services stay open (to write the VM's points) until the end."""
    svc = bootstrap(Settings.from_env({"VMVAULT_HOME": str(home)}))
    try:
        svc.vaults.create(vault, "local", None)
        vm = replace(save_vm(svc, vm_name, VmState.REGISTERED), vault=vault)
        with svc._uow() as uow:
            uow.vms.save(vm)
            uow.commit()
        yield svc, vm
    finally:
        svc.close()


@contextlib.contextmanager
def console_site(tmp: Path) -> Iterator[Site]:
    """Vaults main and offsite; VMs web (registered, two points in main), app (registered),
    db (protected by policy gold) and dead (registered on a host nobody listens on); an
    admin, a reader and a server; one browser."""
    home = tmp / "home"
    svc = bootstrap(Settings.from_env({"VMVAULT_HOME": str(home)}))
    svc.vaults.create("main", "local", None)
    svc.vaults.create("offsite", "local", None)
    svc.policies.create("main", "gold", "daily@02:00", "UTC", Retention(daily=7))
    web = save_vm(svc, "web", VmState.REGISTERED)
    save_vm(svc, "app", VmState.REGISTERED)
    save_vm(svc, "db", VmState.PROTECTED, policy="gold")
    unreachable_vm(svc, "dead")
    now = datetime.now(UTC)
    for i, point in enumerate(POINTS):
        write_point(tmp, svc._uow, svc.vaults, "main", point, i + 1, now - timedelta(hours=2 - i),
                    (web.uuid, web.name))  # fmt: skip
    tokens = {
        r: svc.tokens.create(f"console-{r}", Role(r), "local:test")[1] for r in ("admin", "reader")
    }
    svc.close()
    browser = new_browser()
    try:
        # the server is the node of dead's host: a backup of dead runs, and fails there
        with serving(home, VMVAULT_VAULT="main", VMVAULT_NODE_HOST=DEAD_HOST) as base:
            yield Site(home, base, tokens, browser)
    finally:
        browser.quit()
        for p in tmp.rglob("*"):  # what a test made immutable (docs/immutability.md)
            if p.is_file() and not p.is_symlink():
                with contextlib.suppress(OSError):
                    local_hold.set_immutable(p, False)
