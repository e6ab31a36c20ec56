"""The console's pages beyond the lab's (vaults, hosts, points' actions, VMs' protection
actions, tokens, the audit log, notifications) in a real browser: headless Chromium against one
real ``vmvault serve`` for the module, on a home made in-process (two local vaults, VMs written
to the catalog as discovery would, real points written through the dataplane) — no guest is
needed: every action here is catalog, vault or notification work that the server's own
workers and notifier do. Each test does a page's main action through the UI and checks the
result through the API or the CLI; the last one signs in as a reader."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.conftest import Result, save_vm
from tests.e2e.conftest import WebhookReceiver
from tests.e2e.test_console_vaults import (
    CHROMEDRIVER,
    CHROMIUM,
    new_browser,
    serving,
    until,
    visible,
)
from tests.e2e.test_notifications import DEAD_HOST, unreachable_vm
from tests.unit.catalog_world import write_point
from vmvault.bootstrap import bootstrap
from vmvault.config import Settings
from vmvault.domain.access import Role
from vmvault.domain.retention import Retention
from vmvault.domain.vm import VmState

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromedriver (scripts/install-system.sh)",
)

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

    def job_of(self, notice: WebElement) -> dict[str, Any]:
        return self.wait_job(int(notice.find_element(By.CSS_SELECTOR, "a").text.lstrip("#")))

    def no_alert(self) -> None:
        alerts = [e.text for e in self.browser.find_elements(By.CSS_SELECTOR, ".page [role=alert]")]
        assert not alerts, alerts


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Vaults main and offsite; VMs web (registered, two points in main), app (registered),
    db (protected by policy gold) and dead (registered on a host nobody listens on); an
    admin, a reader and a server; one browser."""
    tmp = tmp_path_factory.mktemp("console-pages")
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


def test_vaults_create_soft_delete_and_gc(site: Site, tmp_path: Path) -> None:
    site.sign_in("admin")
    page = site.open("#/vaults", "vaults")
    row = page.find_element(By.CSS_SELECTOR, 'tr[data-key="main"]')
    assert "local" in row.text and "on" in row.text and "14 d" in row.text
    assert row.find_element(By.CSS_SELECTOR, "td.points").text == "2"
    assert row.find_element(By.CSS_SELECTOR, "td.soft-deleted").text == "0 · 0 B"

    site.click("#new-vault")
    site.fill("#vault-form input[name=name]", "archive")
    site.fill("#vault-form input[name=path]", str(tmp_path / "archive"))
    Select(visible(site.browser, "#vault-storage")).select_by_value("s3")
    assert "AWS_ACCESS_KEY_ID" in visible(site.browser, "#vault-form .notice").text
    Select(visible(site.browser, "#vault-storage")).select_by_value("local")
    site.click("#vault-form-submit")
    site.notice("Vault archive saved")
    [made] = [v for v in site.cli("vault", "list", "--json").json() if v["name"] == "archive"]
    assert made["storage"] == "local" and made["path"] == str(tmp_path / "archive")

    # soft delete: off, then "always" needs a second, acknowledged confirmation
    site.click('button[aria-label="Soft delete settings of archive"]')
    Select(visible(site.browser, "#soft-delete-mode")).select_by_value("off")
    site.click("#soft-delete-form-submit")
    site.notice("Vault archive saved")
    assert site.api("GET", "/vaults/archive")["soft_delete"] == "off"
    site.click('button[aria-label="Soft delete settings of archive"]')
    Select(visible(site.browser, "#soft-delete-mode")).select_by_value("always")
    assert "permanent" in visible(site.browser, "#soft-delete-form .warn-box").text
    site.fill("#soft-delete-days", "30")
    site.click("#soft-delete-form-submit")
    assert not visible(site.browser, "#confirm-submit").is_enabled()
    site.click("#confirm-ack")
    site.click("#confirm-submit")
    site.notice("Vault archive saved")
    doc = site.api("GET", "/vaults/archive")
    assert doc["soft_delete"] == "always" and doc["soft_delete_days"] == 30

    site.click('button[aria-label="Garbage collection of main"]')
    site.click("#confirm-submit")
    job = site.job_of(site.notice("GC of vault main"))
    assert job["type"] == "gc" and job["state"] == "completed", job
    site.no_alert()


def test_hosts_add_mark_and_remove(site: Site) -> None:
    uri = "qemu+tcp://127.0.0.1:9/other"
    site.sign_in("admin")
    site.open("#/hosts", "hosts")
    site.click("#add-host")
    site.fill("#host-form input[name=uri]", uri)
    site.fill("#host-form input[name=location]", "local")
    site.click("#host-form input[name=check]")  # nobody listens there: do not connect first
    site.click("#host-form-submit")
    site.notice(f"Host {uri} added")
    assert uri in [h["uri"] for h in site.cli("host", "list", "--json").json()]

    site.click(f'button[aria-label="Update host {uri}"]')
    site.fill("#host-update-form input[name=cluster_managed]", "db1, db2")
    site.click("#host-update-form-submit")
    site.notice("2 cluster-managed")
    [host] = [h for h in site.api("GET", "/hosts") if h["uri"] == uri]
    assert sorted(host["cluster_managed"]) == ["db1", "db2"]

    site.click(f'button[aria-label="Remove host {uri}"]')
    site.click("#confirm-submit")
    site.notice(f"Host {uri} removed")
    assert uri not in [h["uri"] for h in site.api("GET", "/hosts")]


def test_points_pin_verify_delete_and_undelete(site: Site) -> None:
    older, newer = POINTS
    site.sign_in("admin")
    site.open("#/points?vm=web", "points")
    site.click(f'button[aria-label="Pin point {older}"]')
    visible(site.browser, f'button[aria-label="Unpin point {older}"]')
    assert site.api("GET", f"/points/{older}")["protected"] is True

    site.click(f'button[aria-label="Verify point {newer}"]')
    job = site.job_of(site.notice(f"Verify of point {newer}"))
    assert job["type"] == "verify" and job["state"] == "completed", job

    site.click(f'button[aria-label="Delete point {newer}"]')
    assert "soft-deleted for 14 day(s)" in visible(site.browser, "#confirm-form").text
    site.click("#confirm-submit")
    site.notice(f"Delete of point {newer}")
    until(site.browser, lambda: not site.browser.find_elements(
        By.CSS_SELECTOR, f'tr[data-key="{newer}"]'), "the row to go")  # fmt: skip
    assert [p["id"] for p in site.api("GET", "/points?vm=web")] == [older]

    site.click("#tab-deleted")
    site.open("#/points?vm=web&tab=deleted", "points")
    visible(site.browser, f'tr[data-key="{newer}/main"]')
    site.click(f'button[aria-label="Undelete point {newer}"]')
    site.notice(f"Point {newer} is back in vault main")
    assert sorted(p["id"] for p in site.api("GET", "/points?vm=web")) == sorted(POINTS)
    assert site.api("GET", "/points/deleted") == []


def test_vms_copy_stop_resume_and_unregister(site: Site) -> None:
    site.sign_in("admin")
    page = site.open("#/vms?tab=registered", "vms")
    page.find_element(By.CSS_SELECTOR, 'input[aria-label="Select web"]').click()
    site.click("#act-copy")
    Select(visible(site.browser, "#copy-to")).select_by_value("offsite")
    site.click("#copy-form-submit")
    job = site.job_of(site.notice("Copy to offsite"))
    assert job["type"] == "copy" and job["state"] == "completed", job
    assert len(site.api("GET", "/points?vault=offsite&vm=web")) == 2

    page = site.open("#/vms?tab=registered", "vms")  # a backup with options
    page.find_element(By.CSS_SELECTOR, 'input[aria-label="Select dead"]').click()
    site.click("#act-backup-options")
    form = visible(site.browser, "#backup-form")
    assert not form.find_element(By.NAME, "set").is_enabled()  # a set needs two VMs
    Select(form.find_element(By.NAME, "require")).select_by_value("file-system-consistent")
    site.browser.execute_script(
        "arguments[0].value = '2030-01-31'", form.find_element(By.NAME, "keep_until")
    )
    site.click("#backup-form-submit")
    job = site.job_of(site.notice("Backup of 1 VM"))
    assert job["request"]["require"] == "file-system-consistent", job["request"]
    assert job["request"]["keep_until"].startswith("2030-01-31"), job["request"]

    page = site.open("#/vms?tab=registered", "vms")
    page.find_element(By.CSS_SELECTOR, 'input[aria-label="Select app"]').click()
    site.click("#act-unregister")
    site.click("#confirm-submit")
    site.notice("Unregister 1 VM")
    assert site.api("GET", "/vms/app")["state"] == "discovered"

    page = site.open("#/vms?tab=protected", "vms")
    page.find_element(By.CSS_SELECTOR, 'input[aria-label="Select db"]').click()
    site.click("#act-stop")
    site.click("#stop-delete-data")  # asks for the acknowledgement, refused without it
    visible(site.browser, "#stop-ack")
    site.click("#stop-form-submit")
    assert "needs the box ticked" in visible(site.browser, "#stop-form [role=alert]").text
    site.click("#stop-form input[value=retain]")
    site.click("#stop-form-submit")
    site.notice("Stop protection of 1 VM")
    assert site.api("GET", "/vms/db")["state"] == "protection-stopped"
    page = site.open("#/vms?tab=protected", "vms")
    page.find_element(By.CSS_SELECTOR, 'input[aria-label="Select db"]').click()
    site.click("#act-resume")
    site.click("#resume-form-submit")
    site.notice("Resume protection of 1 VM")
    doc = site.api("GET", "/vms/db")
    assert doc["state"] == "protected" and doc["policy"] == "gold"


def test_tokens_audit_and_notifications(site: Site, webhook: WebhookReceiver) -> None:
    site.sign_in("admin")
    site.open("#/tokens", "tokens")
    site.click("#new-token")
    site.fill("#token-form input[name=name]", "ci-console")
    Select(visible(site.browser, "#token-form select[name=role]")).select_by_value("operator")
    site.click("#token-form-submit")
    warning = visible(site.browser, ".dialog .warn-box").text
    assert "only time the token is shown" in warning
    made = visible(site.browser, "#new-token-text").get_attribute("value")
    site.click("#copy-token")
    site.click("#token-done")
    assert site.api("GET", "/whoami", token=made) == {"name": "ci-console", "role": "operator"}
    site.click('button[aria-label="Revoke token ci-console"]')
    site.click("#confirm-submit")
    site.notice("Token ci-console revoked")
    gone = httpx.get(f"{site.base}/api/v1/whoami", headers={"Authorization": f"Bearer {made}"})
    assert gone.status_code == 401

    site.open("#/audit?actor=console-admin", "audit")
    rows = until(
        site.browser,
        lambda: site.browser.find_elements(By.CSS_SELECTOR, "#audit-list tbody tr"),
        "rows",
    )
    actions = [r.text for r in rows]
    assert any("POST /api/v1/tokens" in a and "ci-console" in a for a in actions), actions
    assert any("DELETE /api/v1/tokens/ci-console" in a for a in actions), actions
    total = httpx.get(f"{site.base}/api/v1/audit?actor=console-admin",
                      headers={"Authorization": f"Bearer {site.tokens['admin']}"}).headers["X-Total-Count"]  # fmt: skip
    assert visible(site.browser, "#audit-range").text.endswith(f"of {total}")

    # a webhook target: a test message now, then a real failed backup's message via the outbox
    path = webhook.new_path()
    site.open("#/notifications", "notifications")
    site.click("#add-target")
    site.fill("#target-form input[name=address]", webhook.url(path))
    site.click("#target-form-submit")
    site.notice("added: webhook")
    [target] = site.api("GET", "/notifications")
    site.click(f'button[aria-label="Send a test to target {target["id"]}"]')
    site.notice(f"Test message sent to target {target['id']}")
    assert [p.body["event"] for p in webhook.at(path)] == ["test"]
    [job] = site.api("POST", "/backups", {"vms": ["dead"]})
    assert site.wait_job(job["id"])["error_code"] == "HOST_UNREACHABLE"
    until(site.browser, lambda: len(webhook.at(path)) == 2, "the failed backup's message")
    site.open("#/notifications?x=1", "notifications")
    row = visible(site.browser, "#outbox tbody tr")
    assert "failed" in row.text and "sent" in row.text and "backup failed" in row.text
    assert [o["state"] for o in site.api("GET", "/notifications/outbox")] == ["sent"]
    site.click(f'button[aria-label="Remove target {target["id"]}"]')
    site.click("#confirm-submit")
    site.notice(f"Target {target['id']} removed")
    assert site.api("GET", "/notifications") == []


def test_policy_options_and_delete(site: Site) -> None:
    site.sign_in("admin")
    site.open("#/policies/new", "policies")
    form = visible(site.browser, "#policy-form")
    site.fill("#policy-form input[name=name]", "copied")
    Select(form.find_element(By.NAME, "copy_to")).select_by_value("offsite")
    Select(form.find_element(By.NAME, "require")).select_by_value("file-system-consistent")
    form.find_element(By.NAME, "as_set").click()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    site.notice("Policy copied saved")
    doc = site.api("GET", "/policies/copied")
    assert doc["copy_to"]["vault"] == "offsite" and doc["as_set"] is True
    assert doc["require"] == "file-system-consistent"

    site.open("#/policies/copied", "policies")
    form = visible(site.browser, "#policy-form")
    Select(form.find_element(By.NAME, "copy_to")).select_by_value("")
    Select(form.find_element(By.NAME, "require")).select_by_value("")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    site.notice("Policy copied saved")
    doc = site.api("GET", "/policies/copied")
    assert doc["copy_to"] is None and doc["require"] is None and doc["as_set"] is True

    site.open("#/policies/gold", "policies")  # in use: the server refuses, the page says why
    site.click("#delete-policy")
    site.click("#confirm-submit")
    assert "POLICY_IN_USE" in visible(site.browser, "#policy-form [role=alert]").text
    site.open("#/policies/copied", "policies")
    site.click("#delete-policy")
    site.click("#confirm-submit")
    site.notice("Policy copied deleted")
    assert [p["name"] for p in site.api("GET", "/policies")] == ["gold"]


def test_a_reader_sees_no_actions_nor_the_administration(site: Site) -> None:
    site.sign_in("reader")
    b = site.browser
    nav = [a.text for a in b.find_elements(By.CSS_SELECTOR, "#nav a") if a.is_displayed()]
    assert nav == [
        "Dashboard",
        "Virtual machines",
        "Policies",
        "Jobs",
        "Recovery points",
        "Vaults",
        "Hosts",
        "Error codes",
    ]
    assert not b.find_element(By.CSS_SELECTOR, "#nav .nav-head").is_displayed()
    actions = (
        "#new-vault, #add-host, #act-copy, #act-stop, #act-resume, #act-unregister, "
        "#act-verify-vault, #act-backup-options, #act-disks, #delete-policy, .row-actions button, "
        ".page-header .actions button, .page-header .actions a.btn-primary"
    )
    for hash_, page in (("#/vaults", "vaults"), ("#/hosts", "hosts"), ("#/points?vm=web", "points"),
                        ("#/points?tab=deleted", "points"), ("#/vms?tab=registered", "vms"),
                        ("#/vms?tab=protected", "vms"), ("#/policies/gold", "policies")):  # fmt: skip
        site.open(hash_, page)
        time.sleep(0.3)
        found = [e.text for e in b.find_elements(By.CSS_SELECTOR, actions) if e.text != "Refresh"]
        assert found == [], (hash_, found)
    for hash_, page in (
        ("#/tokens", "tokens"),
        ("#/audit", "audit"),
        ("#/notifications", "notifications"),
    ):
        box = site.open(hash_, page).find_element(By.CSS_SELECTOR, "[role=alert]")
        assert "ROLE_REQUIRED" in box.text and "Remedy" in box.text, box.text
    # a reader reads the error catalog: the filter narrows it to the code asked for
    site.open("#/errors", "errors")
    site.fill("#errors-filter", "ROLE_REQUIRED")
    until(b, lambda: [e.text for e in b.find_elements(By.CSS_SELECTOR, "#errors-list td code")] == ["ROLE_REQUIRED"],
          "the filtered catalog")  # fmt: skip
    assert "#/errors?q=ROLE_REQUIRED" in b.current_url
    logs = b.get_log("browser")
    assert not [e for e in logs if "Content Security Policy" in e["message"]], logs
