"""Self-healing on the real lab: a lab guest backed up through the real ``vmvault`` command,
its point copied to a second vault the low-level way (each disk read back and stored again
with that vault's chunk size and keys, ``uow.copies.add``: the copy command is not part of
this test), a chunk deleted and another corrupted in the first vault; ``vmvault verify`` heals
both from the copy and names them, and the disks restored afterwards are byte-identical to
those restored before the damage.

Uses the session lab's standard guest (it must never boot or tear down guests of its own: a
``lab down`` would take the session lab's guests with it).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import Result
from tests.integration.conftest import lab_settings
from tests.integration.test_restore import run_cli
from tests.unit.test_heal import copy_reencoded
from vmvault.bootstrap import bootstrap
from vmvault.dataplane.chunk import ZERO_ID
from vmvault.domain.recovery_point import PointCopy
from vmvault.hypervisor.lab.vms import lab_prefix

pytestmark = pytest.mark.lab


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_verify_heals_the_vault_from_a_copy_and_restores_match(
    lab: dict[str, object], tmp_path: Path
) -> None:
    vm = f"{lab_prefix()}-standard-1"
    assert vm in lab
    home = tmp_path / "home"
    home.mkdir()

    def cli(*args: str) -> Result:
        return run_cli(home, *args, timeout=900)

    assert cli("vault", "create", "main", "--location", "local").code == 0
    r = cli("vault", "create", "offsite", "--location", "local", "--chunk-size", "1MiB")
    assert r.code == 0, r.stderr
    assert cli("discover", "--vault", "main").code in (0, 3)
    r = cli("register", vm, "--vault", "main")
    assert r.code in (0, 3), r.stderr
    r = cli("backup", vm, "--vault", "main", "--json")
    assert r.code in (0, 3), r.stdout + r.stderr
    point = r.json()[0]["point"]["id"]

    services = bootstrap(lab_settings(home))
    main = services.vaults.open_store(services.vaults.resolve("main"))
    offsite = services.vaults.open_store(services.vaults.resolve("offsite"))
    copy_reencoded(main, offsite, tmp_path, point)
    with services.context.uow() as uow:
        uow.copies.add(PointCopy(point, "offsite", datetime.now(UTC)))
        uow.commit()

    before = tmp_path / "before"
    r = cli(
        "restore", vm, "--point", point, "--disks-only", "--dir", str(before), "--format", "raw"
    )
    assert r.code == 0, r.stdout + r.stderr
    images = sorted(p.name for p in before.glob("*.raw"))
    assert images

    m = main.read_manifest(point)
    disk = next(d for d in m.disks if d.index is not None)
    ids = [c for c in main.read_point_index(m, disk.target).ids if c != ZERO_ID]
    gone, bad = ids[0], ids[-1]
    assert gone != bad
    main.backend.delete(main.chunks.key(gone))
    blob = bytearray(main.backend.get(main.chunks.key(bad)))
    blob[len(blob) // 2] ^= 0x55
    main.backend.publish(main.chunks.key(bad), bytes(blob))

    r = cli("verify", "--point", point, "--json")
    assert r.code == 3, r.stdout + r.stderr  # healed: completed with warnings
    healed = {(h["disk"], h["chunk"], h["from"]) for h in r.json()["healed"]}
    assert healed == {(disk.target, c.hex(), "offsite") for c in (gone, bad)}
    r = cli("verify", "--point", point)
    assert r.code == 0, r.stdout + r.stderr

    after = tmp_path / "after"
    r = cli("restore", vm, "--point", point, "--disks-only", "--dir", str(after), "--format", "raw")
    assert r.code == 0, r.stdout + r.stderr
    for name in images:
        assert sha256(after / name) == sha256(before / name), name
