"""Disaster recovery on the real lab (docs/disaster-recovery.md): a lab guest backed up into
an encrypted vault by one ``VMVAULT_HOME``, its paper key exported; then a brand-new home with
an empty catalog and no key file attaches the vault with the paper key alone and restores the
point ``--as-new``: every restored disk is byte-identical to the point.

Uses the session lab's standard guest (it never boots or tears down guests of its own).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Result
from tests.integration.guests import raw_copy
from tests.integration.test_restore import (
    assert_matches_point,
    default_dir,
    remove_domain,
)
from vmvault.bootstrap import bootstrap
from vmvault.config import Settings
from vmvault.hypervisor.lab.vms import lab_prefix

pytestmark = pytest.mark.lab

OLD, NEW = "old horse", "new battery"


def run(home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    full = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    full["VMVAULT_HOME"] = str(home)
    for key in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE", "VMVAULT_LAB_PREFIX"):
        if key in os.environ:
            full[key] = os.environ[key]
    full.update(env or {})
    p = subprocess.run(
        [sys.executable, "-m", "vmvault", *args], capture_output=True, text=True, env=full,
        timeout=900,
    )  # fmt: skip
    return Result(p.returncode, p.stdout, p.stderr)


def test_a_catalog_rebuilt_from_the_storage_and_the_paper_key_restores_bit_exact(
    lab: dict[str, object], tmp_path: Path
) -> None:
    vm = f"{lab_prefix()}-standard-1"
    assert vm in lab
    old, new = tmp_path / "old", tmp_path / "new"
    vault = tmp_path / "vault"
    with_old = {"VMVAULT_PASSPHRASE": OLD}
    r = run(old, "vault", "create", "main", "--location", "local", "--encrypt",
            f"--path={vault}", env=with_old)  # fmt: skip
    assert r.code == 0, r.stderr
    assert run(old, "discover").code in (0, 3)
    assert run(old, "register", vm).code in (0, 3)
    r = run(old, "backup", vm, "--json", env=with_old)
    assert r.code in (0, 3), r.stdout + r.stderr
    point = r.json()[0]["point"]
    r = run(old, "vault", "key", "export", "main", env=with_old)
    assert r.code == 0, r.stderr
    paper = tmp_path / "paper.txt"
    paper.write_text(r.stdout)
    before = run(old, "points", "list", vm, "--json").json()
    # the disaster: the old home (catalog, key file) is gone; the storage and the paper remain
    shutil.rmtree(old)

    r = run(new, "vault", "attach", "main", "--location", "local", f"--path={vault}",
            f"--paper-key={paper}", "--json", env={"VMVAULT_NEW_PASSPHRASE": NEW})  # fmt: skip
    assert r.code == 0, r.stdout + r.stderr
    doc = r.json()
    assert (doc["vms"], doc["points"], doc["keys_from"]) == (1, 1, "paper-key")
    assert doc["bytes_logical"] == point["bytes_logical"]
    [again] = run(new, "points", "list", vm, "--json").json()
    assert {k: again[k] for k in ("id", "created_at", "consistency", "method", "checkpoint")} == {
        k: before[0][k] for k in ("id", "created_at", "consistency", "method", "checkpoint")
    }

    name = f"{lab_prefix()}-attached-1"
    target = Path("/var/lib/vmvault/test-attach") / lab_prefix()
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    remove_domain(name)  # a leftover of an interrupted run
    with_new = {"VMVAULT_PASSPHRASE": NEW}
    try:
        r = run(new, "restore", vm, "--point", point["id"], "--as-new", name,
                "--dir", str(target), "--json", env=with_new)  # fmt: skip
        assert r.code in (0, 3), r.stdout + r.stderr
        disks = r.json()["result"]["disks"]
        assert disks
        env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
        env |= {"VMVAULT_HOME": str(new), **with_new}
        services = bootstrap(Settings.from_env(env))
        for d in disks:
            raw = raw_copy(Path(d["path"]), tmp_path / "check" / f"{Path(d['path']).name}.raw")
            assert_matches_point(services, point["id"], d["target"], raw)
            raw.unlink()
    finally:
        remove_domain(name)
        for link in default_dir().glob(f"{name}-*"):  # the links to the images in --dir
            link.unlink()
        shutil.rmtree(target, ignore_errors=True)
