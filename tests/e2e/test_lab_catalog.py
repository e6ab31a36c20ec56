"""``vmvault lab catalog up|status|down`` as a user runs them: Debian's PostgreSQL under the
lab directory, its URL used as ``VMVAULT_CATALOG_URL`` by the next commands (whose jobs
record their node), and a directory that is not the lab's left untouched."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CliRunner
from tests.pglab import PG_PREFIX


@pytest.fixture()
def lab_dir() -> Iterator[Path]:
    # under /var/lib/vmvault: the postgres user cannot enter pytest's /tmp/pytest-of-root
    d = Path(tempfile.mkdtemp(prefix=PG_PREFIX, dir="/var/lib/vmvault"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_up_status_use_and_down(cli: CliRunner, lab_dir: Path) -> None:
    env = {"VMVAULT_LAB_DIR": str(lab_dir)}
    try:
        up = cli("lab", "catalog", "up", "--json", env=env)
        assert up.code == 0, up.stderr
        doc = up.json()
        assert doc["state"] == "up" and doc["url"].startswith("postgresql+psycopg://")
        assert cli("lab", "catalog", "up", "--json", env=env).json()["url"] == doc["url"]
        use = env | {"VMVAULT_CATALOG_URL": doc["url"]}
        made = cli(
            "vault", "create", "pg", "--location", "x", "--path", str(lab_dir / "v"), env=use
        )
        assert made.code == 0, made.stderr
        jobs = cli("jobs", "list", "--json", env=use)
        assert jobs.code == 0, jobs.stderr
        status = cli("lab", "catalog", "status", "--json", env=env).json()
        assert status["state"] == "up" and status["pid"]
    finally:
        down = cli("lab", "catalog", "down", env=env)
    assert down.code == 0, down.stderr
    assert not (lab_dir / "postgres").exists()
    assert cli("lab", "catalog", "status", "--json", env=env).json()["state"] == "down"


def test_a_directory_that_is_not_the_labs_is_refused_untouched(
    cli: CliRunner, lab_dir: Path
) -> None:
    (lab_dir / "postgres").mkdir()
    (lab_dir / "postgres" / "precious").write_text("x")
    r = cli("lab", "catalog", "down", env={"VMVAULT_LAB_DIR": str(lab_dir)})
    assert r.code == 1 and "LAB_CATALOG_DIR_FOREIGN" in r.stderr, r.stderr
    assert (lab_dir / "postgres" / "precious").read_text() == "x"
