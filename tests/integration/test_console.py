"""The web console in a real browser: headless Chromium (Debian's, driven by Selenium through
Debian's chromedriver; nothing downloaded) against a real ``vmvault serve`` on the session
lab's guests, signed in with real API tokens (``vmvault token create``).

One server, one catalog and one browser for the module (session-scoped: booting is what
costs); the tests run in file order and each finds what it needs if an earlier one failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import libvirt
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import Result
from tests.integration.guests import guest
from tests.integration.test_restore import default_dir, run_cli
from tests.integration.test_server import ServerProcess
from vmvault.hypervisor.lab.vms import lab_prefix

pytestmark = pytest.mark.lab

URI = "qemu:///system"
PREFIX = lab_prefix()
VM = f"{PREFIX}-standard-1"
NO_AGENT = f"{PREFIX}-no-agent-1"
RESTORED = f"{PREFIX}-console-restored"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ACTIVE = ("queued", "in-progress", "cancelling")
BROWSED = "/data/console-browse"  # the file browser's file (vda, which the guest mounts on /data)


def new_browser() -> WebDriver:
    """Headless Chromium at laptop width. The browser and the driver are given by path, so
    selenium-manager has nothing to look up or download."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--lang=en-US"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@dataclass
class Console:
    """The running server, its tokens and a browser on it."""

    home: Path
    server: ServerProcess
    tokens: dict[str, str]
    browser: WebDriver

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def cli(self, *args: str) -> Result:
        return run_cli(self.home, *args)

    def api(self, method: str, path: str, body: Any = None, role: str = "admin") -> httpx.Response:
        return httpx.request(
            method,
            f"{self.server.url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.tokens[role]}"},
            timeout=30,
        )

    def wait_job(self, job_id: int, timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.api("GET", f"/jobs/{job_id}").json()
            if job["state"] not in ACTIVE:
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {job['state']}")

    # --- the browser ------------------------------------------------------------------------

    def sign_in(self, role: str) -> None:
        """Through the sign-in form of a freshly loaded console, as a person would."""
        b = self.browser
        b.get(f"{self.base}/console/")
        b.execute_script("sessionStorage.clear()")
        b.refresh()
        self.wait("#token").send_keys(self.tokens[role])
        self.click("#signin-form button[type=submit]")
        self.wait_text(".who .role", role)

    def go(self, hash_: str) -> None:
        self.browser.execute_script("location.hash = arguments[0]", hash_)

    def wait(self, css: str, timeout: float = 20) -> WebElement:
        return WebDriverWait(
            self.browser, timeout, ignored_exceptions=(StaleElementReferenceException,)
        ).until(
            lambda b: next(
                (e for e in b.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()), None
            ),
            f"no visible {css}",
        )

    def wait_until(self, check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
        def attempt(_: WebDriver) -> Any:
            try:
                return check()
            except (StaleElementReferenceException, LookupError):
                return None

        return WebDriverWait(self.browser, timeout, poll_frequency=0.2).until(attempt, what)

    def wait_text(self, css: str, text: str, timeout: float = 20) -> WebElement:
        return self.wait_until(
            lambda: next(
                (e for e in self.browser.find_elements(By.CSS_SELECTOR, css) if text in e.text),
                None,
            ),
            f"no {css} with {text!r}",
            timeout,
        )

    def click(self, css: str) -> None:
        self.wait(css).click()

    def page(self, name: str) -> WebElement:
        """The page ``name`` once it has rendered its title."""
        self.wait(f'.page[data-page="{name}"] h1')
        return self.wait(f'.page[data-page="{name}"]')

    def texts(self, css: str) -> list[str]:
        return [e.text for e in self.browser.find_elements(By.CSS_SELECTOR, css)]


def token(home: Path, name: str, role: str) -> str:
    r = run_cli(home, "token", "create", name, "--role", role)
    assert r.code == 0, r.stdout + r.stderr
    return r.stdout.strip().splitlines()[-1]


def checkpoints(conn: Any) -> set[str]:
    return {c.getName() for c in conn.lookupByName(VM).listAllCheckpoints()}


def remove_restored() -> None:
    """The VM the restore test makes, and its disk files (never anybody else's)."""
    conn = libvirt.open(URI)
    try:
        with contextlib.suppress(libvirt.libvirtError):
            dom = conn.lookupByName(RESTORED)
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
    finally:
        conn.close()
    for f in default_dir().glob(f"{RESTORED}-*"):
        f.unlink()


@pytest.fixture(scope="session")
def console(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A catalog with a vault, the lab's VMs discovered, the standard guest registered and a
    failed register job (the agent-less guest); an admin and a reader token; ``vmvault serve``
    on its own port; one browser.  Afterwards: the server stopped, the restored VM removed and
    the checkpoints its backups left on the session guest deleted."""
    assert VM in lab and NO_AGENT in lab, sorted(lab)
    home = tmp_path_factory.mktemp("console-home")
    remove_restored()
    conn = libvirt.open(URI)
    before = checkpoints(conn)
    for args in (
        ("vault", "create", "main", "--location", "local"),
        ("discover",),
        ("register", VM),
    ):
        r = run_cli(home, *args)
        assert r.code in (0, 3), r.stdout + r.stderr
    assert run_cli(home, "register", NO_AGENT).code == 1  # no agent: a failed register job
    guest(VM, f"rm -rf {BROWSED} && mkdir -p {BROWSED} && "  # in every point made here
          f"dd if=/dev/urandom of={BROWSED}/x.bin bs=1k count=150 2>/dev/null && sync")  # fmt: skip
    tokens = {role: token(home, f"console-{role}", role) for role in ("admin", "reader")}
    server = ServerProcess(home)
    server.start()
    browser = new_browser()
    try:
        yield Console(home, server, tokens, browser)
    finally:
        browser.quit()
        if server.proc is not None:
            server.stop()
        remove_restored()
        for name in checkpoints(conn) - before:
            conn.lookupByName(VM).checkpointLookupByName(name).delete(0)
        conn.close()


def test_sign_in_with_a_token_and_a_wrong_one_is_refused(console: Console) -> None:
    b = console.browser
    b.get(f"{console.base}/")  # redirects to the console
    assert b.current_url.startswith(f"{console.base}/console/")
    console.wait("#token").send_keys("not-a-token")
    console.click("#signin-form button[type=submit]")
    box = console.wait("#signin-form .error-box")
    assert "AUTH_REQUIRED" in box.text and "Remedy" in box.text
    assert console.browser.find_element(By.ID, "nav").get_attribute("hidden") is not None

    console.sign_in("admin")
    console.page("dashboard")
    assert (
        b.execute_script("return sessionStorage.getItem('vmvault.token')")
        == console.tokens["admin"]
    )
    assert console.wait(".who-name").text == "console-admin"
    nav = console.texts("#nav a")
    assert nav == [
        "Dashboard", "Virtual machines", "Policies", "Jobs", "Recovery points", "Vaults", "Hosts",
        "Error codes", "Notifications", "Approvals", "API tokens", "Audit log",
    ]  # fmt: skip


def test_dashboard_counts_equal_the_cli(console: Console) -> None:
    console.sign_in("admin")
    console.page("dashboard")
    r = console.cli("dashboard", "--json")
    assert r.code == 0, r.stderr
    cli = r.json()
    shown = {
        e.get_attribute("id"): int(e.find_element(By.CLASS_NAME, "stat-value").text)
        for e in console.browser.find_elements(By.CSS_SELECTOR, ".stat[id^=vms-], .stat[id^=jobs-]")
    }
    expected = {f"vms-{k}": v for k, v in cli["vms"].items()} | {
        f"jobs-{k}": v for k, v in cli["jobs_24h"].items()
    }
    assert shown == expected
    assert shown["vms-registered"] >= 1 and shown["jobs-failed"] >= 1
    storage = cli["storage"]
    assert console.wait("#storage-points .stat-value").text == str(storage["points"])
    ratio = console.wait("#dedup-ratio .stat-value").text
    assert ratio == (f"{storage['dedup_ratio']:.2f} ×" if storage["dedup_ratio"] else "–")
    assert console.browser.find_elements(By.CSS_SELECTOR, "svg.chart")  # the 14 days
    soft = console.wait("#soft-deleted .stat-value").text
    assert soft == str(storage["soft_deleted_points"])


def test_failed_in_the_last_24h_drills_down_to_the_filtered_jobs(console: Console) -> None:
    console.sign_in("admin")
    console.page("dashboard")
    failed = int(console.wait("#jobs-failed .stat-value").text)
    console.click("#jobs-failed")
    console.wait("#jobs-list tbody tr")
    vault = console.api("GET", "/dashboard").json()["vault"]  # the link names the vault counted
    assert console.browser.current_url.endswith(f"#/jobs?vault={vault}&state=failed&since=24h")
    page = console.page("jobs")
    assert Select(page.find_element(By.NAME, "state")).first_selected_option.text == "failed"
    assert Select(page.find_element(By.NAME, "since")).first_selected_option.text == "Last 24 h"
    states = console.texts("#jobs-list td.state")
    assert states == ["failed"] * failed, states
    assert console.wait("#jobs-range").text.endswith(f"of {failed}")
    api = console.api("GET", f"/jobs?vault={vault}&state=failed&since=24h")
    assert int(api.headers["X-Total-Count"]) == failed
    row = console.wait_text("#jobs-list tbody tr", NO_AGENT)
    row.find_element(By.CSS_SELECTOR, "a").click()  # the detail: error code, remedy, log
    box = console.wait(".page[data-page=jobs] .error-box")
    job = console.api("GET", f"/jobs/{console.browser.current_url.rsplit('/', 1)[-1]}").json()
    assert job["error_code"] in box.text and job["remedy"] in box.text
    assert console.wait("pre.log").text


def test_register_an_agentless_vm_accepting_crash_consistent_backups(console: Console) -> None:
    console.sign_in("admin")
    console.go("#/vms?tab=discovered")
    console.page("vms")
    console.click(f'input[name=vm][aria-label="Select {NO_AGENT}"]')
    console.click("#act-register")
    assert NO_AGENT in console.wait("#register-form .warn-box").text
    console.click("#crash-consistent")
    console.click("#register-submit")
    notice = console.wait_text(".notice", "Register 1 VM")
    job_id = int(notice.find_element(By.CSS_SELECTOR, "a").text.lstrip("#"))
    assert console.wait_job(job_id)["state"] in ("completed", "completed-with-warnings")
    vm = console.cli("vm", "show", NO_AGENT, "--json").json()
    assert vm["state"] == "registered" and vm["crash_consistent_only"] is True


def test_protect_a_vm_with_a_new_policy(console: Console) -> None:
    console.sign_in("admin")
    console.go("#/vms?tab=registered")
    console.page("vms")
    console.click(f'input[name=vm][aria-label="Select {VM}"]')
    console.click("#act-protect")
    console.click("#policy-new")
    form = console.wait("#protect-form")
    form.find_element(By.NAME, "name").send_keys("console-gold")
    Select(form.find_element(By.NAME, "kind")).select_by_value("weekly")
    form.find_element(By.CSS_SELECTOR, "input[name=day][value=fri]").click()
    for level, n in (("daily", "5"), ("weekly", "3")):
        box = form.find_element(By.NAME, level)
        box.clear()
        box.send_keys(n)
    assert form.find_element(By.CSS_SELECTOR, ".schedule-text").text == "weekly:mon,fri@02:00"
    console.click("#protect-submit")
    notice = console.wait_text(".notice", "Protect with policy console-gold")
    job_id = int(notice.find_element(By.CSS_SELECTOR, "a").text.lstrip("#"))
    assert console.wait_job(job_id)["state"] in ("completed", "completed-with-warnings")
    policy = console.cli("policy", "show", "console-gold", "--json").json()
    assert policy["schedule"] == "weekly:mon,fri@02:00" and policy["vms"]
    assert policy["retention"]["daily"] == 5 and policy["retention"]["weekly"] == 3
    assert console.cli("vm", "show", VM, "--json").json()["state"] == "protected"
    console.go("#/vms?tab=protected")  # the VM moved to the protected tab
    console.wait_text(".page[data-page=vms] td", "console-gold")


def test_backup_now_and_watch_it_finish(console: Console) -> None:
    console.sign_in("admin")
    tab = console.cli("vm", "show", VM, "--json").json()["state"]
    console.go(f"#/vms?tab={'registered' if tab == 'registered' else 'protected'}")
    console.page("vms")
    console.click(f'input[name=vm][aria-label="Select {VM}"]')
    console.click("#act-backup")
    notice = console.wait_text(".notice", "Backup of 1 VM")
    notice.find_element(By.CSS_SELECTOR, "a").click()
    console.wait("#job-state")
    # live: the page follows the job by polling, never reloading
    console.browser.execute_script("window.__notReloaded = true")
    seen: set[str] = set()

    def finished() -> str | None:
        state = console.browser.find_element(By.CSS_SELECTOR, "#job-state").text
        seen.add(state)
        return state if state not in ACTIVE else None

    final = console.wait_until(finished, "the backup job to finish", timeout=240)
    assert final in ("completed", "completed-with-warnings"), final
    assert seen & set(ACTIVE), seen  # it was seen running before it finished
    assert console.browser.execute_script("return window.__notReloaded") is True
    assert "phase" in console.wait("pre.log").text or console.wait("pre.log").text


def test_browse_a_point_and_download_a_file(console: Console, tmp_path: Path) -> None:
    """ "Browse files…" on the VM's newest point: vda (the guest's /data) listed, a directory
    opened, a file downloaded through the browser — the guest's bytes."""
    points = console.cli("points", "list", VM, "--json").json()
    if not points:  # the backup test failed: a point of its own
        job = console.api("POST", "/backups", {"vms": [VM]}).json()[0]
        assert console.wait_job(job["id"])["state"].startswith("completed"), job
        points = console.cli("points", "list", VM, "--json").json()
    newest = max(points, key=lambda p: p["created_at"])["id"]
    b = console.browser
    b.execute_cdp_cmd("Browser.setDownloadBehavior",
                      {"behavior": "allow", "downloadPath": str(tmp_path)})  # fmt: skip
    console.sign_in("admin")
    uuid = console.cli("vm", "show", VM, "--json").json()["uuid"]
    console.go(f"#/points?vm={uuid}")
    console.click(f'a[aria-label="Browse files of point {newest}"]')
    console.wait_text("h1", f"Files of {VM}")
    Select(console.wait("#files-disk")).select_by_value("vda")
    console.wait_text("#files-crumbs", "vda (/data)")
    console.click('tr[data-key="/console-browse"] a.file-dir')
    row = console.wait('tr[data-key="/console-browse/x.bin"]')
    assert "150 KiB" in row.text and "-rw" in row.text, row.text
    console.click('button[aria-label="Download /console-browse/x.bin"]')
    console.wait("#files-downloaded")
    got = console.wait_until(
        lambda: (tmp_path / "x.bin").exists() and not list(tmp_path.glob("*.crdownload")),
        "the download",
    )
    assert got
    want = guest(VM, f"md5sum {BROWSED}/x.bin").split()[0]
    assert hashlib.md5((tmp_path / "x.bin").read_bytes()).hexdigest() == want


def test_restore_as_new_vm(console: Console) -> None:
    points = console.cli("points", "list", VM, "--json").json()
    if not points:  # the backup test failed: make a point for this one
        [job] = console.api("POST", "/backups", {"vms": [VM]}).json()
        assert console.wait_job(job["id"])["state"] == "completed"
        points = console.cli("points", "list", VM, "--json").json()
    newest = points[0]
    console.sign_in("admin")
    console.go(f"#/points?vm={VM}")
    console.page("points")
    console.wait_text("td", newest["consistency"])
    console.click(f'button[aria-label="Restore point {newest["id"]}"]')
    wizard = console.wait("#restore-wizard")
    wizard.find_element(By.CSS_SELECTOR, "input[name=mode][value=as-new]").click()
    console.click("#wizard-next")
    name = console.wait("#restore-wizard input[name=name]")
    name.clear()
    name.send_keys(RESTORED)
    console.click("#wizard-next")
    review = console.wait("#restore-wizard .facts").text
    assert "as-new" in review and RESTORED in review
    console.click("#wizard-submit")
    console.wait("#job-state")
    final = console.wait_until(
        lambda: (s := console.browser.find_element(By.ID, "job-state").text) not in ACTIVE and s,
        "the restore job to finish",
        timeout=240,
    )
    assert final in ("completed", "completed-with-warnings"), console.wait("main").text
    conn = libvirt.open(URI)
    try:
        dom = conn.lookupByName(RESTORED)
        assert dom.UUIDString() != conn.lookupByName(VM).UUIDString()
    finally:
        conn.close()
    remove_restored()


def test_a_reader_sees_no_action_buttons_and_gets_403(console: Console) -> None:
    console.sign_in("reader")
    actions = (
        "#act-discover, #act-register, #act-protect, #act-backup, #new-policy, "
        "button.btn-danger-outline, button[aria-label^='Restore'], #policy-form button[type=submit]"
    )
    for hash_, page in (
        ("#/dashboard", "dashboard"),
        ("#/vms?tab=discovered", "vms"),
        ("#/vms?tab=registered", "vms"),
        ("#/vms?tab=protected", "vms"),
        ("#/policies", "policies"),
        ("#/policies/console-gold", "policies"),
        ("#/jobs", "jobs"),
        (f"#/points?vm={VM}", "points"),
    ):
        console.go(hash_)
        time.sleep(0.3)  # let the hash change start the new render
        console.page(page)
        assert console.browser.find_elements(By.CSS_SELECTOR, actions) == [], hash_
        assert (
            console.browser.find_elements(By.CSS_SELECTOR, "input[type=checkbox]:not([disabled])")
            == []
        ), hash_
    console.go("#/vms?tab=protected")  # a reader still sees everything
    console.wait_text(".page[data-page=vms] td", VM)
    # the server refuses what the console hides: a POST with the reader's token from the page
    answer = console.browser.execute_async_script(
        """const [vm, done] = arguments;
           fetch('/api/v1/backups', {method: 'POST', headers: {
             'Authorization': 'Bearer ' + sessionStorage.getItem('vmvault.token'),
             'Content-Type': 'application/json'}, body: JSON.stringify({vms: [vm]})})
             .then(async (r) => done([r.status, await r.json()]));""",
        VM,
    )
    assert answer[0] == 403 and answer[1]["error"]["code"] == "ROLE_REQUIRED", answer
    assert console.api("POST", "/vms/discover", {}, role="reader").status_code == 403


def test_the_console_is_package_data_and_served_without_a_token(console: Console) -> None:
    """No build step and nothing fetched elsewhere: every file is in the package and the
    pages reference only the server's own paths; nothing the earlier tests' pages did was
    blocked by the console's Content-Security-Policy."""
    logs = console.browser.get_log("browser")
    assert not [e for e in logs if "Content Security Policy" in e["message"]], logs
    r = httpx.get(f"{console.base}/console/", timeout=10)
    assert r.status_code == 200 and 'type="module"' in r.text
    static = Path(sys.modules["vmvault"].__file__ or "").parent / "web" / "static"
    for f in static.rglob("*"):
        if f.suffix in (".html", ".js", ".css"):
            text = f.read_text()
            assert (
                "http://" not in text.replace("http://www.w3.org/2000/svg", "")
                and "https://" not in text
            ), f
            rel = f.relative_to(static).as_posix()
            assert httpx.get(f"{console.base}/console/{rel}", timeout=10).status_code == 200, rel
