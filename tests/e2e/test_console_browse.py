"""The console's file browser (a point's "Browse files…", pages/files.js) on the shared served
site (tests/e2e/console_site.py), in a vault of its own (``fsv``): its one point's disk is a
real ext4 image (``mkfs.ext4 -d``) written through the dataplane, so the server's file-level
restore (docs/files.md: the point's export, nbdfuse, debugfs) reads it as it reads a guest's.
The lab's own point is browsed in tests/integration/test_console.py."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.e2e.console_site import Site, vault_beside
from tests.e2e.test_console_settings import choose_vault
from tests.e2e.test_console_vaults import until, visible
from tests.unit.catalog_world import write_point

POINT = "20261201T050000Z-ffff01"


@dataclass
class FsPoint:
    vm: str  # uuid
    data: bytes  # /docs/a.txt
    downloads: Path


@pytest.fixture(scope="module")
def fs_point(site: Site, tmp_path_factory: pytest.TempPathFactory) -> FsPoint:
    """Vault ``fsv``, VM ``fsvm`` and one point whose vda is an ext4 file system holding
    /docs/a.txt (0640, 1234:567), /docs/sub/deep.txt, /etc/app.conf and /link -> docs/a.txt."""
    tmp = tmp_path_factory.mktemp("fsv")
    src = tmp / "src"
    (src / "docs" / "sub").mkdir(parents=True)
    (src / "etc").mkdir()
    data = os.urandom(200_000)
    (src / "docs" / "a.txt").write_bytes(data)
    (src / "docs" / "sub" / "deep.txt").write_text("deep\n")
    (src / "etc" / "app.conf").write_text("x = 1\n")
    (src / "link").symlink_to("docs/a.txt")
    os.chmod(src / "docs" / "a.txt", 0o640)
    os.chown(src / "docs" / "a.txt", 1234, 567)
    image = tmp / "fs.img"
    subprocess.run(["mkfs.ext4", "-q", "-d", str(src), str(image), "8M"], check=True)
    with vault_beside(site.home, "fsv", "fsvm") as (svc, vm):
        write_point(tmp, svc._uow, svc.vaults, "fsv", POINT, 0, datetime.now(UTC),
                    (vm.uuid, vm.name), disk=image.read_bytes())  # fmt: skip
    downloads = tmp / "downloads"
    downloads.mkdir()
    return FsPoint(str(vm.uuid), data, downloads)


@pytest.fixture(autouse=True)
def _signed_out(site: Site) -> Iterator[None]:
    yield
    site.browser.execute_script("sessionStorage.clear()")


def rows(site: Site) -> dict[str, list[str]]:
    """The listing's rows by path: their cells' texts."""
    found = site.browser.find_elements(By.CSS_SELECTOR, "#files-listing tbody tr")
    return {
        str(r.get_attribute("data-key")): [c.text for c in r.find_elements(By.TAG_NAME, "td")]
        for r in found
    }


def listing(site: Site, *paths: str) -> dict[str, list[str]]:
    """Wait for a listing holding ``paths``."""
    return until(site.browser, lambda: (r := rows(site)) and all(p in r for p in paths) and r,
                 f"a listing with {paths}")  # fmt: skip


def downloaded(where: Path, name: str) -> bytes:
    """The file Chromium saved under ``name`` once complete (no .crdownload left)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = where / name
        if done.exists() and not list(where.glob("*.crdownload")):
            return done.read_bytes()
        time.sleep(0.2)
    raise AssertionError(f"{name} was not downloaded: {os.listdir(where)}")


def test_browse_find_and_download_a_points_files(site: Site, fs_point: FsPoint) -> None:
    b = site.browser
    b.execute_cdp_cmd(
        "Browser.setDownloadBehavior",
        {"behavior": "allow", "downloadPath": str(fs_point.downloads)},
    )
    site.sign_in("admin")
    choose_vault(site, "fsv")
    site.open(f"#/points?vm={fs_point.vm}", "points")
    site.click(f'a[aria-label="Browse files of point {POINT}"]')
    until(b, lambda: "Files of fsvm" in visible(b, "h1").text, "the file browser")
    assert Select(visible(b, "#files-disk")).first_selected_option.get_attribute("value") == "vda"
    root = listing(site, "/docs", "/etc", "/link")
    assert root["/link"][2:4] == ["symlink", "–"], root["/link"]
    # a directory opens; the breadcrumbs lead back
    b.find_element(By.CSS_SELECTOR, 'tr[data-key="/docs"] a.file-dir').click()
    docs = listing(site, "/docs/a.txt", "/docs/sub")
    assert docs["/docs/a.txt"][1:6] == ["a.txt", "file", "195 KiB", "-rw-r-----", "1234:567"]
    assert docs["/docs/sub"][3] == "–" and docs["/docs/sub"][4].startswith("d")
    crumbs = [a.text for a in b.find_elements(By.CSS_SELECTOR, "#files-crumbs li")]
    assert crumbs == ["vda", "docs"], crumbs
    assert "disk=vda&path=%2Fdocs" in b.current_url
    # one file's bytes
    site.click('button[aria-label="Download /docs/a.txt"]')
    assert downloaded(fs_point.downloads, "a.txt") == fs_point.data
    visible(b, "#files-downloaded")
    # a file and a directory selected: one tar, owners and modes kept
    for path in ("/docs/a.txt", "/docs/sub"):
        b.find_element(By.CSS_SELECTOR, f'input[aria-label="Select {path}"]').click()
    assert visible(b, "#files-selected").text == "2 selected"
    site.click("#files-download-selected")
    archive = io.BytesIO(downloaded(fs_point.downloads, f"{POINT}-files.tar"))
    with tarfile.open(fileobj=archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["a.txt", "sub", "sub/deep.txt"], sorted(members)
        a = members["a.txt"]
        assert (a.mode & 0o7777, a.uid, a.gid, a.uname) == (0o640, 1234, 567, "")
        got = tar.extractfile(a)
        assert got is not None and got.read() == fs_point.data
    # the root by its breadcrumb; a symlink ticked alone comes as a tar too (kept a symlink)
    b.find_element(By.CSS_SELECTOR, "#files-crumbs a").click()
    listing(site, "/link")
    assert not b.find_elements(By.CSS_SELECTOR, 'button[aria-label="Download /link"]')
    b.find_element(By.CSS_SELECTOR, 'input[aria-label="Select /link"]').click()
    site.click("#files-download-selected")
    with tarfile.open(fileobj=io.BytesIO(downloaded(fs_point.downloads, "link.tar"))) as tar:
        (link,) = tar.getmembers()
        assert (link.name, link.issym(), link.linkname) == ("link", True, "docs/a.txt")
    # find: by name, each match's folder a link
    site.fill("#files-find", "*.conf")
    site.click("#files-find-submit")
    found = listing(site, "/etc/app.conf")
    assert list(found) == ["/etc/app.conf"], found
    assert "find=*.conf" in b.current_url.replace("%2A", "*")
    # a path that is not there: its code and remedy, the page still usable
    site.open(f"#/points/{POINT}/files?disk=vda&path=/nope", "points")
    alert = visible(b, "#files-listing [role=alert]")
    assert "FILE_NOT_FOUND" in alert.text and "Remedy" in alert.text, alert.text
    assert "Traceback" not in alert.text
    visible(b, "#files-disk")


def test_a_reader_browses_but_downloads_nothing(site: Site, fs_point: FsPoint) -> None:
    site.sign_in("reader")
    choose_vault(site, "fsv")
    site.open(f"#/points/{POINT}/files?disk=vda&path=/docs", "points")
    listing(site, "/docs/a.txt")
    b = site.browser
    assert not b.find_elements(By.CSS_SELECTOR, "#files-listing button, #files-listing input")
    # the route itself refuses a reader's download
    for route in ("content", "archive"):
        r = httpx.get(
            f"{site.base}/api/v1/points/{POINT}/files/{route}?path=/docs/a.txt",
            headers={"Authorization": f"Bearer {site.tokens['reader']}"},
            timeout=30,
        )
        assert (r.status_code, r.json()["error"]["code"]) == (403, "ROLE_REQUIRED"), r.text
