"""Screenshots of the web console's pages, taken with headless Chromium (Debian's chromium and
chromedriver, driven by Selenium: nothing is downloaded).

    .venv/bin/python scripts/screenshots.py --url http://127.0.0.1:8479 --token TOKEN \
        [--out docs/screenshots] [--page dashboard ...]

The server must be running (``vmvault serve``) with some data: the pages shown are the ones
of its first VM with recovery points, its first policy and its newest failed job (else the
newest job).  Each page is saved as OUT/NAME.png at 1280 px wide, as tall as its content.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

WIDTH, MAX_HEIGHT = 1280, 2400
PAGES = ("signin", "dashboard", "vms", "policies", "policy", "jobs", "job", "points", "files",
         "restore", "restore-disks", "point-lock", "deleted", "vaults", "vault-new", "vault-attach",
         "vault-immutable", "vault-approvals", "hosts", "errors", "notifications", "tokens",
         "audit", "approvals")  # fmt: skip


def browser() -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars",
                f"--window-size={WIDTH},900", "--lang=en-US"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


class Shooter:
    def __init__(self, url: str, token: str, out: Path) -> None:
        self.url, self.token, self.out = url.rstrip("/"), token, out
        self.b = browser()

    def api(self, path: str) -> Any:
        r = httpx.get(
            f"{self.url}/api/v1{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        r.raise_for_status()
        return r.json()

    def open(self, hash_: str, ready: str) -> None:
        # a dialog the last shot left open is cancelled (as Escape does): the same fragment
        # again does not draw the page anew
        self.b.execute_script(
            "document.querySelectorAll('dialog').forEach((d) => d.dispatchEvent(new Event('cancel')))"
        )
        self.b.get(f"{self.url}/console/{hash_}")
        self.wait(ready)
        time.sleep(0.8)  # charts, previews and fonts settle

    def wait(self, css: str) -> None:
        WebDriverWait(self.b, 30).until(
            lambda b: any(e.is_displayed() for e in b.find_elements(By.CSS_SELECTOR, css)),
            f"{css} never showed",
        )

    def save(self, name: str) -> Path:
        """The page as tall as its content (a viewport that tall, then back)."""
        height = self.b.execute_script(
            "return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)"
        )
        metrics = {"width": WIDTH, "height": min(max(int(height), 720), MAX_HEIGHT)}
        self.b.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            metrics | {"deviceScaleFactor": 1, "mobile": False},
        )
        time.sleep(0.3)
        path = self.out / f"{name}.png"
        self.b.save_screenshot(str(path))
        self.b.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        print(path)
        return path

    def sign_in(self) -> None:
        self.b.get(f"{self.url}/console/")
        self.b.execute_script("sessionStorage.setItem('vmvault.token', arguments[0])", self.token)

    def run(self, pages: list[str]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        points = self.api("/points")
        policies = self.api("/policies")
        jobs = self.api("/jobs?limit=50")
        failed = [j for j in jobs if j["state"] == "failed"]
        job = (failed or jobs or [None])[0]
        vm = points[0]["vm"] if points else None
        shots: dict[str, Callable[[], None]] = {
            "dashboard": lambda: self.open("#/dashboard", "svg.chart, .empty"),
            "vms": lambda: self.open("#/vms?tab=protected", ".page[data-page=vms] table, .empty"),
            "policies": lambda: self.open("#/policies", ".page[data-page=policies] h1"),
            "jobs": lambda: self.open("#/jobs", "#jobs-list table, #jobs-list .empty"),
            "deleted": lambda: self.open("#/points?tab=deleted", ".page[data-page=points] .card"),
            "vaults": lambda: self.open("#/vaults", ".page[data-page=vaults] .card"),
            "vault-new": self.new_vault,
            "vault-attach": self.attach_vault,
            "vault-immutable": lambda: self.vault_dialog(
                "Immutability of", "#immutable-mode", "locked"
            ),
            "vault-approvals": lambda: self.vault_dialog(
                "Approval settings of", "#approvals-mode", "delay"
            ),
            "approvals": lambda: self.open("#/approvals", ".page[data-page=approvals] .card"),
            "hosts": lambda: self.open("#/hosts", ".page[data-page=hosts] .card"),
            "errors": lambda: self.open("#/errors?q=soft", "#errors-list"),
            "notifications": lambda: self.open("#/notifications", "#outbox"),
            "tokens": lambda: self.open("#/tokens", ".page[data-page=tokens] .card"),
            "audit": lambda: self.open("#/audit", "#audit-list"),
        }
        if policies:
            policy = quote(policies[0]["name"])
            shots["policy"] = lambda: self.open(f"#/policies/{policy}", ".preview h3")
        if job is not None:
            shots["job"] = lambda: self.open(f"#/jobs/{job['id']}", "#job-state")
        if vm is not None:
            shots["points"] = lambda: self.open(
                f"#/points?vm={vm}", ".page[data-page=points] table"
            )
            shots["files"] = lambda: self.files(points[0]["id"])
            shots["restore"] = lambda: self.restore_wizard(vm)
            shots["restore-disks"] = lambda: self.restore_wizard(vm, "disks-only")
            shots["point-lock"] = lambda: self.point_dialog(vm, "Lock point", "#lock-form")
        if "signin" in pages:
            self.b.get(f"{self.url}/console/")
            self.b.execute_script("sessionStorage.clear()")
            self.open("#/dashboard", "#token")
            self.save("signin")
        self.sign_in()
        for page in pages:
            if page in shots:
                shots[page]()
                self.save(page)
            elif page != "signin":
                print(f"skipped {page}: nothing to show", file=sys.stderr)

    def files(self, point: str) -> None:
        """The point's file browser in its first file system's first directory (not
        lost+found), else at its root."""
        volumes = self.api(f"/points/{quote(point)}/filesystems")
        if not volumes:
            self.open(f"#/points/{quote(point)}/files", ".page[data-page=points] .card")
            return
        disk = volumes[0]["volume"]
        root = self.api(f"/points/{quote(point)}/files?disk={disk}&path=/")
        dirs = [e["path"] for e in root if e["kind"] == "dir" and e["path"] != "/lost+found"]
        where = f"&path={quote(dirs[0], safe='')}" if dirs else ""
        self.open(f"#/points/{quote(point)}/files?disk={disk}{where}", "#files-listing table")

    def restore_wizard(self, vm: str, mode: str = "as-new") -> None:
        """The restore wizard on the newest point, at its second step (the options of
        ``mode``)."""
        self.point_dialog(vm, "Restore point", "#restore-wizard")
        self.b.find_element(By.CSS_SELECTOR, f"#restore-wizard input[value={mode}]").click()
        self.b.find_element(By.ID, "wizard-next").click()
        self.wait("#restore-wizard input[name=directory]")
        time.sleep(0.4)

    def point_dialog(self, vm: str, label: str, ready: str) -> None:
        """The dialog a point's button (by its label's start) opens, on the newest point."""
        self.open(f"#/points?vm={vm}", ".page[data-page=points] table")
        self.b.find_element(By.CSS_SELECTOR, f"button[aria-label^='{label}']").click()
        self.wait(ready)
        time.sleep(0.4)

    def vault_dialog(self, label: str, mode: str, value: str) -> None:
        """A vault's settings dialog (the first vault that has the button), ``value`` chosen in
        its ``mode`` select — shown, never saved."""
        self.open("#/vaults", ".page[data-page=vaults] .card")
        self.b.find_element(By.CSS_SELECTOR, f"button[aria-label^='{label}']").click()
        self.wait(mode)
        self.b.execute_script(
            "const s = document.querySelector(arguments[0]); s.value = arguments[1];"
            "s.dispatchEvent(new Event('change'))",
            mode,
            value,
        )
        time.sleep(0.4)

    def attach_vault(self) -> None:
        """The Attach a vault dialog, filled in (nothing is submitted)."""
        self.open("#/vaults", ".page[data-page=vaults] .card")
        self.b.find_element(By.ID, "attach-vault").click()
        self.wait("#attach-form")
        for name, value in (("name", "main"), ("path", "/mnt/backup/vaults/main")):
            box = self.b.find_element(By.CSS_SELECTOR, f"#attach-form input[name={name}]")
            box.clear()
            box.send_keys(value)
        time.sleep(0.4)

    def new_vault(self) -> None:
        """The New vault dialog with an S3 bucket chosen (nothing is submitted)."""
        self.open("#/vaults", ".page[data-page=vaults] .card")
        self.b.find_element(By.ID, "new-vault").click()
        self.wait("#vault-form")
        for name, value in (("name", "offsite"), ("location", "local"), ("endpoint",
                            "http://127.0.0.1:7480"), ("bucket", "vmvault"), ("prefix", "host1")):  # fmt: skip
            if name in ("endpoint", "bucket", "prefix"):
                self.b.execute_script(
                    "const s = document.getElementById('vault-storage'); s.value = 's3';"
                    "s.dispatchEvent(new Event('change'))"
                )
            box = self.b.find_element(By.CSS_SELECTOR, f"#vault-form input[name={name}]")
            box.clear()
            box.send_keys(value)
        time.sleep(0.4)

    def close(self) -> None:
        self.b.quit()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8479")
    ap.add_argument(
        "--token",
        required=True,
        help="an API token: admin for every page (operator: not the administration's)",
    )
    ap.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    ap.add_argument("--page", action="append", choices=PAGES, help="only these (repeatable)")
    args = ap.parse_args(argv)
    shooter = Shooter(args.url, args.token, args.out)
    try:
        shooter.run(args.page or list(PAGES))
    finally:
        shooter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
