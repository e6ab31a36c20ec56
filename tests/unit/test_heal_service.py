"""Self-healing as the operator meets it (``PointService.verify``, ``restore_disks``, the
restore service's refusal), over a real SQLite catalog and two real local vaults: ``main``
(the point's own, 64 KiB chunks) and ``offsite`` (128 KiB chunks, its own keys) holding a copy
written the low-level way (each disk stored again, ``uow.copies.add``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.unit.catalog_world import catalog, now
from tests.unit.dataplane.conftest import CS, backup_point, make_image
from tests.unit.test_heal import LAYOUT, POINT, copy_reencoded, flip, indexes
from vmvault.cli import points as cli_points
from vmvault.dataplane import VaultStore
from vmvault.dataplane.chunkstore import QUARANTINE_SUFFIX
from vmvault.dataplane.restore import verify_point
from vmvault.documents import point_doc
from vmvault.domain.errors import PointDamaged, PointNotInVault
from vmvault.domain.job import Job, JobState
from vmvault.domain.recovery_point import (
    Consistency,
    DamagedDisk,
    Method,
    PointCopy,
    PointDisk,
    RecoveryPoint,
)
from vmvault.services.context import ServiceContext
from vmvault.services.jobs import JobRunner
from vmvault.services.point_listing import PointListing
from vmvault.services.points import PointService
from vmvault.services.vaults import VaultService

UUID = "uuid-vm1"


@dataclass
class World:
    tmp: Path
    uow: Any
    vaults: VaultService
    svc: PointService
    disks: dict[str, bytes]

    def store(self, name: str) -> VaultStore:
        return self.vaults.open_store(self.vaults.resolve(name))

    def add_copy(self) -> None:
        copy_reencoded(self.store("main"), self.store("offsite"), self.tmp)
        with self.uow() as uow:
            uow.copies.add(PointCopy(POINT, "offsite", now()))
            uow.commit()

    @property
    def listing(self) -> PointListing:
        return self.svc.reads

    def point(self) -> RecoveryPoint:
        return self.listing.get(POINT)

    def log(self, job: Job) -> list[str]:
        with self.uow() as uow:
            return [line.split(" ", 2)[2] for line in uow.jobs.log(job.id)]

    def restore(self, name: str) -> tuple[Any, Path]:
        out = self.tmp / name
        return self.svc.restore_disks("vm1", POINT, str(out), fmt="raw"), out


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catalog_url: str) -> Iterator[World]:
    with catalog(tmp_path, monkeypatch, {UUID: "vm1"}, url=catalog_url) as c:
        c.vaults.create("main", "local", None, chunk_size=CS)
        c.vaults.create("offsite", "local", None, chunk_size=2 * CS)
        disks = {
            "vda": make_image(tmp_path / "vda.img", LAYOUT, tail=1000),
            "vdb": make_image(tmp_path / "vdb.img", [("rand", 7), ("rand", 8)]),
        }
        main = c.vaults.open_store(c.vaults.resolve("main"))
        backup_point(main, POINT, {t: tmp_path / f"{t}.img" for t in disks})
        with c.uow() as u:
            pdisks = [PointDisk(target, len(data), "raw") for target, data in disks.items()]
            u.points.add(
                RecoveryPoint(POINT, "main", UUID, "vm1", now(), Consistency.CRASH,
                              Method.OFFLINE, 0, None, pdisks)
            )  # fmt: skip
            u.commit()
        runner = JobRunner(c.uow, now, 4242, lambda p: p == 4242)
        svc = PointService(ServiceContext(c.uow, runner, c.vaults, now))
        yield World(tmp_path, c.uow, c.vaults, svc, disks)


def test_verify_heals_a_deleted_chunk_from_the_copy_and_names_it(world: World) -> None:
    world.add_copy()
    main = world.store("main")
    gone = indexes(main)["vda"].ids[2]
    main.backend.delete(main.chunks.key(gone))

    outcome = world.svc.verify(None, point_id=POINT)

    job = outcome.job
    assert job.state is JobState.COMPLETED_WITH_WARNINGS, world.log(job)
    assert any(
        f"chunk {gone.hex()} (disk vda bytes [{2 * CS}, {3 * CS})) healed in vault main from "
        "vault offsite" in line
        for line in world.log(job)
    )
    assert world.svc.verify_findings(job.id) == {
        "healed": [
            {"point": POINT, "vault": "main", "disk": "vda", "chunk": gone.hex(), "from": "offsite"}
        ],
        "damaged": [],
    }
    assert outcome.result is not None and [h.chunk for h in outcome.result.healed[POINT]] == [
        gone.hex()
    ]
    assert verify_point(main, POINT).ok and world.point().damaged is None
    restore, out = world.restore("r")
    assert restore.job.state is JobState.COMPLETED
    assert (out / "vm1-vda.raw").read_bytes() == world.disks["vda"]


def test_without_a_copy_the_point_is_marked_damaged_until_a_clean_verify(world: World) -> None:
    main = world.store("main")
    cid = indexes(main)["vdb"].ids[1]
    key = main.chunks.key(cid)
    saved = main.backend.get(key)
    main.backend.delete(key)

    outcome = world.svc.verify(None, point_id=POINT)

    assert outcome.job.state is JobState.FAILED and outcome.job.error_code == "VERIFY_FAILED"
    assert world.point().damaged == (DamagedDisk("vdb", ((CS, 2 * CS),)),)
    assert world.svc.verify_findings(outcome.job.id)["damaged"] == [
        {"point": POINT, "vault": "main", "disks": [{"disk": "vdb", "ranges": [[CS, 2 * CS]]}]}
    ]
    assert any(f"chunk {cid.hex()} missing" in line for line in world.log(outcome.job))
    with pytest.raises(PointDamaged, match=r"disk vdb bytes \[65536, 131072\)"):
        world.restore("refused")
    assert not (world.tmp / "refused").exists()  # refused before anything changed

    main.backend.put(key, saved)  # the storage is mended
    again = world.svc.verify(None, point_id=POINT)
    assert again.job.state is JobState.COMPLETED
    assert world.point().damaged is None
    assert any("damage mark cleared" in line for line in world.log(again.job))


def test_a_copy_damaged_in_the_same_chunk_leaves_the_point_damaged(world: World) -> None:
    world.add_copy()
    main, offsite = world.store("main"), world.store("offsite")
    cid = indexes(main)["vda"].ids[2]
    flip(main, cid)
    flip(offsite, indexes(offsite)["vda"].ids[1])  # bytes [2 CS, 4 CS) of the copy

    outcome = world.svc.verify(None, point_id=POINT)

    assert outcome.job.state is JobState.FAILED
    assert world.point().damaged == (DamagedDisk("vda", ((2 * CS, 3 * CS),)),)
    assert any("vault offsite: chunk" in line for line in world.log(outcome.job))
    # moved aside, so the next backup of the same data stores the chunk again
    assert not main.chunks.exists(cid)
    assert main.backend.exists(main.chunks.key(cid) + QUARANTINE_SUFFIX)


def test_a_restore_of_a_damaged_point_reads_the_intact_copy(world: World) -> None:
    world.add_copy()
    main = world.store("main")
    main.backend.delete(main.chunks.key(indexes(main)["vdb"].ids[0]))
    with world.uow() as uow:  # as a verify before the copy existed left it
        uow.copies.set_damaged(POINT, "main", [DamagedDisk("vdb", ((0, CS),))])
        uow.commit()

    restore, out = world.restore("r")

    assert restore.job.state is JobState.COMPLETED, world.log(restore.job)
    assert any("reading it from vault offsite" in line for line in world.log(restore.job))
    for target, data in world.disks.items():
        assert (out / f"vm1-{target}.raw").read_bytes() == data


def test_a_restore_heals_a_chunk_it_finds_damaged(world: World) -> None:
    world.add_copy()
    main = world.store("main")
    ids = indexes(main)["vda"].ids
    main.backend.delete(main.chunks.key(ids[4]))

    restore, out = world.restore("r")

    assert restore.job.state is JobState.COMPLETED, world.log(restore.job)
    assert (out / "vm1-vda.raw").read_bytes() == world.disks["vda"]
    assert any(
        f"chunk {ids[4].hex()}" in line and "from vault offsite" in line
        for line in world.log(restore.job)
    )
    assert world.svc.verify_findings(restore.job.id)["healed"][0]["chunk"] == ids[4].hex()
    assert verify_point(main, POINT).ok  # the vault was repaired


def test_a_restore_without_a_copy_fails_and_marks_the_point(world: World) -> None:
    main = world.store("main")
    cid = indexes(main)["vda"].ids[1]
    main.backend.delete(main.chunks.key(cid))

    restore, out = world.restore("r")

    assert restore.job.state is JobState.FAILED and restore.job.error_code == "POINT_DAMAGED"
    assert f"disk vda bytes [{CS}, {2 * CS})" in (restore.job.message or "")
    assert world.point().damaged == (DamagedDisk("vda", ((CS, 2 * CS),)),)
    assert not list(out.glob("*.raw"))


def test_verify_of_the_copy_heals_it_from_the_points_own_vault(world: World) -> None:
    world.add_copy()
    offsite = world.store("offsite")
    cid = indexes(offsite)["vdb"].ids[0]
    flip(offsite, cid)

    outcome = world.svc.verify("offsite", point_id=POINT)

    assert outcome.job.vault == "offsite"
    assert outcome.job.state is JobState.COMPLETED_WITH_WARNINGS, world.log(outcome.job)
    assert world.svc.verify_findings(outcome.job.id)["healed"] == [
        {"point": POINT, "vault": "offsite", "disk": "vdb", "chunk": cid.hex(), "from": "main"}
    ]
    assert verify_point(offsite, POINT).ok


def test_a_verify_of_the_copys_vault_without_a_copy_is_refused(world: World) -> None:
    with pytest.raises(PointNotInVault):
        world.svc.verify("offsite", point_id=POINT)


def test_an_explicit_vault_marked_damaged_is_refused_naming_the_intact_holder(
    world: World,
) -> None:
    """``--from-vault main`` is what the user asked for: never silently read from offsite."""
    world.add_copy()
    with world.uow() as uow:
        uow.copies.set_damaged(POINT, "main", [DamagedDisk("vdb", ((0, CS),))])
        uow.commit()
    out = world.tmp / "r"
    with pytest.raises(PointDamaged) as err:
        world.svc.restore_disks("vm1", POINT, str(out), fmt="raw", from_vault="main")
    assert "intact in vault offsite" in err.value.text
    assert f"disk vdb bytes [0, {CS})" in err.value.text
    assert "--from-vault" in err.value.remedy_text
    assert not out.exists() or not list(out.iterdir())
    # not named: the intact copy is read instead (and the log says so)
    restore, _ = world.restore("r2")
    assert restore.job.state is JobState.COMPLETED, world.log(restore.job)


def test_the_damage_shown_is_the_listed_vaults(world: World) -> None:
    """Damage of the copy in offsite: DAMAGED under offsite, not under main (and back)."""
    world.add_copy()
    with world.uow() as uow:
        uow.copies.set_damaged(POINT, "offsite", [DamagedDisk("vda", ((0, CS),))])
        uow.commit()
    held = world.listing.holders([POINT])[POINT]
    assert held.vaults == ["main", "offsite"]
    assert held.damaged == {"offsite": (DamagedDisk("vda", ((0, CS),)),)}
    listed, points = world.listing.listing("offsite", None)
    assert listed == "offsite" and [p.id for p in points] == [POINT]
    assert world.point().damaged is None  # the own vault's mark is not the copy's
    doc = point_doc(world.point(), held)
    assert doc["damaged"] == {"offsite": [{"disk": "vda", "ranges": [[0, CS]]}]}
    assert point_doc(world.point(), world.listing.holders([POINT])[POINT])["vaults"] == [
        "main",
        "offsite",
    ]


def test_points_list_marks_damaged_in_the_listed_vault_only(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`points list --vault offsite` shows DAMAGED for damage of the copy in offsite; the
    listing of main does not (and `points show` names the vault of each damage)."""
    world.add_copy()
    with world.uow() as uow:
        uow.copies.set_damaged(POINT, "offsite", [DamagedDisk("vda", ((0, CS),))])
        uow.commit()
    monkeypatch.setattr(
        cli_points, "services", lambda: SimpleNamespace(point_listing=world.listing)
    )
    runner = CliRunner()

    def run(*args: str) -> str:
        r = runner.invoke(cli_points.points_app, list(args), env={"COLUMNS": "300"})
        assert r.exit_code == 0, r.output
        return r.output

    assert f"{POINT} DAMAGED" in run("list", "--vault", "offsite")
    assert "DAMAGED" not in run("list", "--vault", "main")
    assert f"DAMAGED in vault offsite: disk vda bytes [0, {CS})" in run("show", POINT)
