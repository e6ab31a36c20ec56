"""The console's vault picker in a real browser: headless Chromium (Debian's, driven through
Debian's chromedriver; nothing downloaded) against a real ``vmvault serve`` on a home with two
local vaults made by the CLI and an admin token from ``vmvault token create``. No lab: the
dashboard and the picker need no VM.

Without a server default (no ``VMVAULT_VAULT``) every call that takes a vault would be refused
``VAULT_NOT_CHOSEN``; the console chooses the first vault, says so, and the picker switches the
dashboard (and every other page) to the other vault. With a server default it chooses nothing
and the server's vault is shown."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import CliRunner

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
VAULTS = ("alpha", "beta")

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromedriver (scripts/install-system.sh)",
)


@contextlib.contextmanager
def serving(home: Path, **extra: str) -> Iterator[str]:
    """``vmvault serve`` on a free loopback port; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env.update(VMVAULT_HOME=str(home), VMVAULT_GC_SCHEDULE="off", **extra)
    log = home / f"serve-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmvault", "serve", "--listen", f"127.0.0.1:{port}"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "server did not answer:\n" + log.read_text()
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture()
def two_vaults(cli: CliRunner, home: Path) -> str:
    """Two local vaults and an admin token (printed last by ``token create``)."""
    for name in VAULTS:
        r = cli("vault", "create", name, "--location", "local")
        assert r.code == 0, r.stdout + r.stderr
    r = cli("token", "create", "console-admin", "--role", "admin")
    assert r.code == 0, r.stdout + r.stderr
    return r.stdout.strip().splitlines()[-1]


def new_browser() -> WebDriver:
    """Headless Chromium at laptop width, given by path (selenium-manager downloads nothing)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--lang=en-US"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture()
def browser() -> Iterator[WebDriver]:
    b = new_browser()
    try:
        yield b
    finally:
        b.quit()


def until(b: WebDriver, check: Callable[[], Any], what: str) -> Any:
    def attempt(_: WebDriver) -> Any:
        try:
            return check()
        except StaleElementReferenceException:
            return None

    return WebDriverWait(b, 20, poll_frequency=0.2).until(attempt, what)


def visible(b: WebDriver, css: str) -> WebElement:
    return until(
        b,
        lambda: next((e for e in b.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()), None),
        f"no visible {css}",
    )


def sign_in(b: WebDriver, base: str, token: str) -> None:
    b.get(f"{base}/console/")
    b.execute_script("sessionStorage.clear()")
    b.refresh()
    visible(b, "#token").send_keys(token)
    visible(b, "#signin-form button[type=submit]").click()
    until(b, lambda: "admin" in b.find_element(By.CSS_SELECTOR, ".who .role").text, "signed in")


def dashboard_vault(b: WebDriver, name: str) -> None:
    """The dashboard has rendered, for vault ``name``, and shows no error."""
    until(
        b,
        lambda: f"Vault {name} ·" in visible(b, '.page[data-page="dashboard"] .subtitle').text,
        f"dashboard of vault {name}",
    )
    assert not b.find_elements(By.CSS_SELECTOR, ".page [role=alert]")


def test_without_a_server_default_the_picker_chooses_and_switches(
    cli: CliRunner, home: Path, two_vaults: str, browser: WebDriver
) -> None:
    b = browser
    with serving(home) as base:
        # the defect this fixes: the API itself refuses an unnamed vault here
        refused = httpx.get(
            f"{base}/api/v1/dashboard", headers={"Authorization": f"Bearer {two_vaults}"}
        )
        assert refused.status_code == 400 and "VAULT_NOT_CHOSEN" in refused.text
        first = httpx.get(
            f"{base}/api/v1/vaults", headers={"Authorization": f"Bearer {two_vaults}"}
        ).json()[0]["name"]
        other = next(v for v in VAULTS if v != first)

        sign_in(b, base, two_vaults)
        dashboard_vault(b, first)
        note = visible(b, "#vault-note")
        assert "no default vault" in note.text and first in note.text
        picker = Select(visible(b, "#vault-picker"))
        assert sorted(o.text for o in picker.options) == sorted(VAULTS)
        assert picker.first_selected_option.text == first

        picker.select_by_visible_text(other)
        dashboard_vault(b, other)
        assert not b.find_element(By.CSS_SELECTOR, "#vault-note").is_displayed()
        assert b.execute_script("return sessionStorage.getItem('vmvault.vault')") == other

        # remembered across a reload; and the other pages get the chosen vault too
        b.refresh()
        dashboard_vault(b, other)
        assert Select(visible(b, "#vault-picker")).first_selected_option.text == other
        for page, hash_ in (("vms", "#/vms"), ("policies", "#/policies"), ("points", "#/points")):
            b.execute_script("location.hash = arguments[0]", hash_)
            visible(b, f'.page[data-page="{page}"] h1')
            time.sleep(0.5)  # the page's calls answer before its content is final
            alerts = [e.text for e in b.find_elements(By.CSS_SELECTOR, ".page [role=alert]")]
            assert not alerts, (page, alerts)

        # a body that takes a vault gets the chosen one too: a policy made through the
        # console's own client lands in that vault (the CLI agrees), not in the other
        made = b.execute_async_script(
            """const done = arguments[arguments.length - 1];
            import("/console/js/api.js").then((m) => m.api.post("/policies",
              {name: "nightly", schedule: "daily@02:00", retention: {daily: 7}}))
              .then((p) => done(p.name), (e) => done(`${e.code}: ${e.message}`));"""
        )
        assert made == "nightly", made
        for vault, names in ((other, ["nightly"]), (first, [])):
            r = cli("policy", "list", "--vault", vault, "--json")
            assert r.code == 0, r.stderr
            assert [p["name"] for p in r.json()] == names, (vault, r.stdout)

        # back to the first vault by hand
        b.execute_script("location.hash = '#/dashboard'")
        Select(visible(b, "#vault-picker")).select_by_visible_text(first)
        dashboard_vault(b, first)
        logs = b.get_log("browser")
        assert not [e for e in logs if "Content Security Policy" in e["message"]], logs


def test_with_a_server_default_the_server_chooses(
    home: Path, two_vaults: str, browser: WebDriver
) -> None:
    b = browser
    with serving(home, VMVAULT_VAULT=VAULTS[1]) as base:
        sign_in(b, base, two_vaults)
        dashboard_vault(b, VAULTS[1])
        assert not b.find_element(By.CSS_SELECTOR, "#vault-note").is_displayed()
        picker = Select(visible(b, "#vault-picker"))
        assert picker.first_selected_option.get_attribute("value") == ""
        assert b.execute_script("return sessionStorage.getItem('vmvault.vault')") is None

        picker.select_by_visible_text(VAULTS[0])
        dashboard_vault(b, VAULTS[0])


def test_one_vault_shows_no_picker(cli: CliRunner, home: Path, browser: WebDriver) -> None:
    assert cli("vault", "create", "only", "--location", "local").code == 0
    r = cli("token", "create", "console-admin", "--role", "admin")
    assert r.code == 0, r.stderr
    with serving(home) as base:
        sign_in(browser, base, r.stdout.strip().splitlines()[-1])
        dashboard_vault(browser, "only")
        assert not browser.find_element(By.CSS_SELECTOR, "#vault-pick").is_displayed()
