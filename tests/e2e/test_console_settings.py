"""The console's vault settings and point actions beyond the first pages' (docs/console.md):
immutability (off → on → locked, the permanence confirmed), approvals, a change held for
approval shown as such (202), attaching a vault, locking and purging points (also held),
copying one VM's or every VM's points, verifying a VM and the restore wizard's options — in
headless Chromium against the session's one served site (``site``: tests/e2e/console_site.py),
each checked through the API or the CLI afterwards; then a reader sees none of these actions.

The tests work in vaults of their own (``cold``, made here, and those they create) so that the
other console tests' figures for ``main`` stay as they are, in any order."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.conftest import save_vm
from tests.e2e.console_site import Site, vault_beside
from tests.e2e.test_console_vaults import CHROMEDRIVER, CHROMIUM, until, visible
from tests.unit.catalog_world import write_point
from vmvault.bootstrap import bootstrap
from vmvault.config import Settings
from vmvault.domain.retention import Retention
from vmvault.domain.vm import PowerState, VmItem, VmState

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromedriver (scripts/install-system.sh)",
)

COLD = tuple(f"20261201T0{i}0000Z-c01d0{i}" for i in range(1, 5))


@pytest.fixture(scope="module")
def cold(site: Site, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Vault ``cold`` with VM ``files`` (registered there) and its four real points; the
    VM's uuid. Written beside the running server, as the CLI would."""
    tmp = tmp_path_factory.mktemp("cold")
    with vault_beside(site.home, "cold", "files") as (svc, vm):
        now = datetime.now(UTC)
        for i, point in enumerate(COLD):
            write_point(tmp, svc._uow, svc.vaults, "cold", point, 10 + i,
                        now - timedelta(hours=5 - i), (vm.uuid, vm.name))  # fmt: skip
    return str(vm.uuid)


def choose_vault(site: Site, name: str) -> None:
    """The header's picker: every page's calls then name this vault."""
    site.open("#/dashboard", "dashboard")
    Select(visible(site.browser, "#vault-picker")).select_by_value(name)
    until(site.browser, lambda: site.browser.execute_script(
        "return sessionStorage.getItem('vmvault.vault')") == name, "the vault chosen")  # fmt: skip


def held(site: Site) -> tuple[int, WebElement]:
    """The page's "held for approval" notice: the request's id and its link."""
    box = site.notice("Held for approval: request")
    link = box.find_element(By.CSS_SELECTOR, "a.held-link")
    assert link.get_attribute("href").endswith("#/approvals"), link.get_attribute("href")
    site.no_alert()  # neither an error…
    return int(link.text.removeprefix("request ")), link


def test_vault_immutability_approvals_and_a_change_held_for_approval(site: Site) -> None:
    site.api("POST", "/vaults", {"name": "sealed", "location": "local"})
    site.sign_in("admin")
    page = site.open("#/vaults", "vaults")
    row = page.find_element(By.CSS_SELECTOR, 'tr[data-key="sealed"]')
    assert row.find_element(By.CSS_SELECTOR, ".immutable").text == "off"
    assert row.find_element(By.CSS_SELECTOR, ".approvals").text == "off"

    site.choose("Immutability of sealed", "#immutable-mode", "on")
    site.forget_notices()
    site.click("#immutable-form-submit")
    site.notice("Vault sealed saved")
    assert site.api("GET", "/vaults/sealed")["immutable"] == "on"
    # locked: the permanence is said, and confirmed a second time with a box ticked
    site.choose("Immutability of sealed", "#immutable-mode", "locked")
    assert "permanent" in visible(site.browser, "#immutable-form .warn-box").text
    site.forget_notices()
    site.click("#immutable-form-submit")
    assert not visible(site.browser, "#confirm-submit").is_enabled()
    site.click("#confirm-ack")
    site.click("#confirm-submit")
    site.notice("Vault sealed saved")
    assert site.api("GET", "/vaults/sealed")["immutable"] == "locked"
    assert site.cli("vault", "show", "sealed", "--json").json()["immutable"] == "locked"
    row = visible(site.browser, 'tr[data-key="sealed"]')
    assert row.find_element(By.CSS_SELECTOR, ".immutable").text == "locked"
    assert not row.find_elements(By.CSS_SELECTOR, 'button[aria-label="Immutability of sealed"]')

    site.choose("Approval settings of sealed", "#approvals-mode", "delay")
    site.fill("#approval-delay", "2")
    site.forget_notices()
    site.click("#approvals-form-submit")
    site.notice("Vault sealed saved")
    doc = site.api("GET", "/vaults/sealed")
    assert doc["approvals"] == "delay" and doc["approval_delay_hours"] == 2
    # weaker is held (202): "held for approval", neither success nor error; the vault unchanged
    site.choose("Approval settings of sealed", "#approvals-mode", "off")
    site.forget_notices()
    site.click("#approvals-form-submit")
    request, link = held(site)
    newest = site.browser.find_element(By.CSS_SELECTOR, ".status-area .notice")
    assert newest.text.startswith("Held for approval"), newest.text  # … nor "saved"
    pending = site.api("GET", f"/approvals/{request}")
    assert pending["state"] == "pending" and pending["operation"] == "approval-setting"
    assert site.api("GET", "/vaults/sealed")["approvals"] == "delay"
    site.api("POST", f"/approvals/{request}/reject")
    # deleting the vault is held too (its approvals are on): the row stays
    site.open("#/vaults", "vaults")  # drawn anew: no notice yet
    site.click('button[aria-label="Delete vault sealed"]')
    site.click("#confirm-submit")
    deletion, link = held(site)
    assert site.api("GET", f"/approvals/{deletion}")["operation"] == "vault-delete"
    visible(site.browser, 'tr[data-key="sealed"]')
    link.click()
    visible(site.browser, f'.page[data-page="approvals"] tr[data-key="{deletion}"]')
    site.api("POST", f"/approvals/{deletion}/reject")


def test_attach_a_vault(site: Site, tmp_path: Path) -> None:
    # a vault another catalog wrote (lost since): one VM, one real point
    path = tmp_path / "lost"
    svc = bootstrap(Settings.from_env({"VMVAULT_HOME": str(tmp_path / "gone")}))
    try:
        svc.vaults.create("main", "local", str(path))  # attached under another name
        vm = save_vm(svc, "orphan", VmState.REGISTERED)
        write_point(tmp_path, svc._uow, svc.vaults, "main",
                    "20261130T010000Z-0bad01", 7, datetime.now(UTC) - timedelta(days=1),
                    (vm.uuid, vm.name))  # fmt: skip
    finally:
        svc.close()

    site.sign_in("admin")
    site.open("#/vaults", "vaults")
    site.click("#attach-vault")
    site.fill("#attach-form input[name=name]", "lost")
    site.fill("#attach-form input[name=path]", str(path))
    site.click("#attach-form-submit")
    site.notice("Vault lost attached: 1 VM(s) (1 new), 1 point(s)")
    visible(site.browser, 'tr[data-key="lost"]')
    [made] = [v for v in site.cli("vault", "list", "--json").json() if v["name"] == "lost"]
    assert made["path"] == str(path)
    assert [p["id"] for p in site.api("GET", "/points?vault=lost")] == ["20261130T010000Z-0bad01"]

    site.click("#attach-vault")  # a second time: refused in the dialog, with the remedy
    site.fill("#attach-form input[name=name]", "lost")
    site.fill("#attach-form input[name=path]", str(path))
    site.click("#attach-form-submit")
    box = visible(site.browser, "#attach-form [role=alert]")
    assert "VAULT_EXISTS" in box.text and "Remedy" in box.text, box.text


def test_points_lock_verify_copy_restore_options_and_purge(
    site: Site, cold: str, tmp_path: Path
) -> None:
    first, second, third, _ = COLD
    site.api("POST", "/vaults", {"name": "spare", "location": "local"})
    site.sign_in("admin")
    choose_vault(site, "cold")
    site.open("#/points?vm=files", "points")

    site.click(f'button[aria-label="Lock point {first}"]')
    site.browser.execute_script(
        "arguments[0].value = '2031-01-15'", visible(site.browser, "#lock-until")
    )
    site.click("#lock-form-submit")
    site.notice(f"Point {first} is retained until")
    assert site.api("GET", f"/points/{first}")["retain_until"].startswith("2031-01-15")
    row = visible(site.browser, f'tr[data-key="{first}"]')
    assert "until" in row.find_element(By.CSS_SELECTOR, ".retain").text

    site.click("#act-verify-vm")
    job = site.job_of(site.notice("Verify of files"))
    assert job["type"] == "verify" and job["state"] == "completed", job
    assert job["request"]["vm"] == cold, job["request"]

    site.click("#act-copy-vm")
    Select(visible(site.browser, "#copy-to")).select_by_value("spare")
    site.click("#copy-form-submit")
    job = site.job_of(site.notice("Copy of 1 VM to spare"))
    assert job["type"] == "copy" and job["state"] == "completed", job
    assert len(site.api("GET", "/points?vault=spare&vm=files")) == len(COLD)

    # the wizard offers every option of the route: a target host for a new VM …
    site.click(f'button[aria-label="Restore point {third}"]')
    site.click("#wizard-next")
    uri = Select(visible(site.browser, "#restore-host")).options[1].get_attribute("value")
    Select(visible(site.browser, "#restore-host")).select_by_value(uri)
    site.click("#wizard-next")
    assert f"host\n{uri}" in visible(site.browser, "#restore-review").text
    site.click("#wizard-back")
    site.click("#wizard-back")
    # … and a disks-only restore in raw format over files already there, run to the end
    site.click("#restore-wizard input[value=disks-only]")
    site.click("#wizard-next")
    site.fill("#restore-wizard input[name=directory]", str(tmp_path / "disks"))
    Select(visible(site.browser, "#restore-format")).select_by_value("raw")
    site.click("#restore-overwrite")
    site.click("#wizard-next")
    review = visible(site.browser, "#restore-review").text
    assert "format\nraw" in review and "overwrite\ntrue" in review, review
    site.click("#wizard-submit")
    until(site.browser, lambda: "#/jobs/" in site.browser.current_url, "the restore job's page")
    job = site.wait_job(int(site.browser.current_url.rsplit("/", 1)[1]))
    assert job["state"] == "completed", job
    assert job["request"]["format"] == "raw" and job["request"]["overwrite"] is True
    assert [p.suffix for p in (tmp_path / "disks").iterdir() if p.suffix != ".xml"] == [".raw"]

    # purge: at once where approvals are off …
    site.api("DELETE", f"/points/{second}?vault=cold")
    site.open("#/points?vm=files&tab=deleted", "points")
    site.click(f'button[aria-label="Purge point {second}"]')
    site.click("#confirm-submit")
    site.notice(f"Point {second} purged from vault cold")
    assert site.api("GET", "/points/deleted?vault=cold") == []
    # … held for approval where they are on: the request shown, with its link; nothing purged
    site.api("PATCH", "/vaults/cold", {"approvals": "delay"})
    site.api("DELETE", f"/points/{third}?vault=cold")
    site.open("#/points?vm=files&tab=deleted", "points")
    site.click(f'button[aria-label="Purge point {third}"]')
    site.click("#confirm-submit")
    request, _ = held(site)
    visible(site.browser, f'tr[data-key="{third}/cold"]')
    pending = site.api("GET", f"/approvals/{request}")
    assert pending["state"] == "pending" and pending["operation"] == "point-purge"
    assert [p["id"] for p in site.api("GET", "/points/deleted?vault=cold")] == [third]
    site.api("POST", f"/approvals/{request}/reject")


def test_copy_every_vm_to_another_vault_then_delete_it(site: Site, cold: str) -> None:
    site.api("POST", "/vaults", {"name": "far", "location": "local"})
    site.sign_in("admin")
    site.open("#/vms?tab=registered", "vms")
    site.click("#act-copy-all")
    Select(visible(site.browser, "#copy-from")).select_by_value("cold")
    options = Select(visible(site.browser, "#copy-to")).options
    assert "cold" not in [o.get_attribute("value") for o in options]
    Select(visible(site.browser, "#copy-to")).select_by_value("far")
    site.click("#copy-form-submit")
    job = site.job_of(site.notice("Copy of every VM to far"))
    assert job["type"] == "copy" and job["state"] == "completed", job
    held_in_cold = {p["id"] for p in site.api("GET", "/points?vault=cold")}
    assert {p["id"] for p in site.api("GET", "/points?vault=far")} == held_in_cold

    # the vault deleted with its points: only once the box is ticked
    site.open("#/vaults", "vaults")
    site.click('button[aria-label="Delete vault far"]')
    assert not visible(site.browser, "#confirm-submit").is_enabled()
    site.click("#confirm-ack")
    site.click("#confirm-submit")
    site.notice(f"Vault far deleted, {len(held_in_cold)} point(s) purged")
    assert "far" not in [v["name"] for v in site.cli("vault", "list", "--json").json()]


def test_a_reader_sees_none_of_these_actions(site: Site, cold: str) -> None:
    last = COLD[-1]
    if last not in [p["id"] for p in site.api("GET", "/points/deleted?vault=cold")]:
        site.api("DELETE", f"/points/{last}?vault=cold")  # a Purge… button to look for
    site.sign_in("reader")
    choose_vault(site, "cold")
    actions = (
        "#attach-vault, #new-vault, #act-verify-vm, #act-copy-vm, #act-copy-all, "
        ".row-actions button, .page-header .actions button"
    )
    b = site.browser
    for hash_, page, shown in (
        ("#/vaults", "vaults", 'tr[data-key="cold"]'),
        ("#/points?vm=files", "points", "tr[data-key]"),
        ("#/points?vm=files&tab=deleted", "points", f'tr[data-key="{last}/cold"]'),
        ("#/vms?tab=registered", "vms", "tr[data-key]"),
    ):
        site.open(hash_, page)
        visible(b, shown)
        found = [e.text for e in b.find_elements(By.CSS_SELECTOR, actions) if e.text != "Refresh"]
        assert found == [], (hash_, found)
    site.no_alert()


@pytest.fixture(autouse=True)
def _signed_out(site: Site) -> Iterator[None]:
    """Each test signs in itself; the chosen vault is forgotten after it."""
    yield
    site.browser.execute_script("sessionStorage.clear()")


def test_the_dashboard_lists_the_most_urgent_and_counts_every_vm_needing_attention(
    site: Site,
) -> None:
    """22 protected VMs of vault ``late`` (on a host of a location of its own, so that the
    other tests' counts stay as they are) never backed up in the 3 days since their protection:
    the badge counts 22, the card lists the first page (20, by name) and says how many there
    are by reason."""
    svc = bootstrap(Settings.from_env({"VMVAULT_HOME": str(site.home)}))
    try:
        svc.vaults.create("late", "far", None)
        svc.vaults.add_host("test:///late", "far", check=False)
        svc.policies.create("late", "nightly", "daily@02:00", "UTC", Retention(daily=7))
        now = datetime.now(UTC)
        with svc._uow() as uow:
            for i in range(1, 23):
                uow.vms.save(VmItem(  # uuids in the reverse order of the names
                    uuid=f"00000000-0000-0000-0000-{99 - i:0>12}", name=f"late{i:02}",
                    host_uri="test:///late", hostname="far", group="far",
                    power_state=PowerState.RUNNING, disks=[], nics=[], agent_channel=True,
                    fingerprint="", first_seen=now, last_seen=now, state=VmState.PROTECTED,
                    vault="late", policy="nightly", protected_since=now - timedelta(days=3),
                ))  # fmt: skip
            uow.commit()
    finally:
        svc.close()
    doc = site.api("GET", "/dashboard?vault=late")
    assert doc["attention_total"] == 22
    assert [a["name"] for a in doc["attention"]] == [f"far/late{i:02}" for i in range(1, 21)]
    assert doc["attention_by_reason"]["never-backed-up"] == 22
    site.sign_in("reader")
    choose_vault(site, "late")
    page = site.open("#/dashboard", "dashboard")
    until(site.browser, lambda: "22" in visible(site.browser, "#att-h").text, "the badge")
    more = visible(site.browser, "#att-more").text
    assert "The 20 most urgent of 22 (22 never-backed-up)" in more, more
    rows = page.find_elements(By.CSS_SELECTOR, 'section[aria-labelledby="att-h"] tbody tr')
    assert [r.get_attribute("data-key") for r in rows] == [a["vm"] for a in doc["attention"]]
    choose_vault(site, "main")
