"""Self-healing in the data path (``vmvault.dataplane.heal``) over local and in-memory vaults:
a chunk deleted or corrupted in one vault is repaired from another vault holding the same
point, by id when both vaults share the chunk identity, by position when they do not; a chunk
no holder has intact stays damaged with the disk's byte ranges; a restore reads through the
damage and repairs the vault."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.dataplane.conftest import CS, backup_point, make_image
from vmvault.dataplane import FileSource, Manifest, VaultStore, backup_disk, keys, restore_disk
from vmvault.dataplane.chunkstore import QUARANTINE_SUFFIX
from vmvault.dataplane.config import CONFIG_NAME
from vmvault.dataplane.copy import same_identity
from vmvault.dataplane.heal import HealingStore, Holder, PointHealer
from vmvault.dataplane.index import DiskIndex
from vmvault.dataplane.manifest import DiskEntry
from vmvault.dataplane.restore import verify_point
from vmvault.domain.errors import PointDamaged
from vmvault.storage.backend import StorageBackend
from vmvault.storage.local import LocalBackend
from vmvault.storage.memory import MemoryBackend

POINT = "20261202T010000Z-aaaaaa"
LAYOUT = [("rand", 1), ("text", 2), ("rand", 3), ("zero", 0), ("rand", 4), ("rand", 1)]


@pytest.fixture(autouse=True)
def _cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "SCRYPT_N", 2**12)


Backends = Callable[[str], StorageBackend]


@pytest.fixture(params=["local", "memory", "remote"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backends:
    if request.param == "memory":
        return lambda name: MemoryBackend(f"memory:{name}")
    if request.param == "remote":  # as object storage: restores read ahead, backups skip checks
        return lambda name: MemoryBackend(f"memory:{name}", remote=True)
    return lambda name: LocalBackend(tmp_path / name)


@pytest.fixture()
def disks(tmp_path: Path) -> dict[str, bytes]:
    vda = make_image(tmp_path / "vda.img", LAYOUT, tail=1000)
    vdb = make_image(tmp_path / "vdb.img", [("rand", 7), ("rand", 8)])
    return {"vda": vda, "vdb": vdb}


def write_point(store: VaultStore, tmp_path: Path) -> None:
    backup_point(store, POINT, {t: tmp_path / f"{t}.img" for t in ("vda", "vdb")})


def copy_as_is(src: VaultStore, dst: StorageBackend) -> VaultStore:
    """A copy sharing the vault's identity: its config and the point's objects, byte for
    byte (what a copy between vaults with the same keys stores)."""
    dst.put(CONFIG_NAME, src.backend.get(CONFIG_NAME))
    m = src.read_manifest(POINT)
    for d in m.disks:
        index = src.read_point_index(m, d.target)
        for cid in index.referenced():
            dst.put(src.chunks.key(cid), src.chunks.read(cid))
        key = src.index_key(POINT, d.target)
        dst.publish(key, src.backend.get(key))
    dst.publish(src.manifest_key(POINT), src.backend.get(src.manifest_key(POINT)))
    return VaultStore.open(dst)


def copy_reencoded(src: VaultStore, dst: VaultStore, tmp_path: Path, point_id: str = POINT) -> None:
    """A copy into a vault of another identity: each disk read back, stored again with the
    other vault's chunk size and keys, and the manifest written under the same point id
    (also the lab test's low-level copy: tests/integration/test_heal.py)."""
    m = src.read_manifest(point_id)
    entries = []
    with dst.writer(point_id):
        for d in m.disks:
            if d.index is None:  # a disk left out of the point: nothing to copy
                entries.append(d)
                continue
            image = tmp_path / f"copy-{d.target}.raw"
            restore_disk(src, src.read_point_index(m, d.target), image, overwrite=True)
            with FileSource(image) as source:
                r = backup_disk(dst, source)
            image.unlink()
            digest = dst.write_index(point_id, d.target, r.index)
            entries.append(DiskEntry(d.target, d.size, f"{d.target}.fidx", digest))
    dst.write_manifest(
        Manifest(
            point_id=point_id,
            vm_uuid=m.vm_uuid,
            vm_name=m.vm_name,
            created_at=m.created_at,
            domain_xml=m.domain_xml,
            method=m.method,
            consistency=m.consistency,
            disks=entries,
        )
    )


def indexes(store: VaultStore) -> dict[str, DiskIndex]:
    m = store.read_manifest(POINT)
    return {d.target: store.read_point_index(m, d.target) for d in m.disks}


def healer(store: VaultStore, *others: tuple[str, VaultStore]) -> PointHealer:
    holders = [Holder(name, lambda s=s: s) for name, s in others]  # type: ignore[misc]
    return PointHealer(store, "main", POINT, holders, lambda: indexes(store))


def restored(store: VaultStore, target: str, tmp_path: Path) -> bytes:
    out = tmp_path / f"restored-{target}.raw"
    restore_disk(store, indexes(store)[target], out, overwrite=True)
    return out.read_bytes()


def flip(store: VaultStore, cid: bytes) -> None:
    key = store.chunks.key(cid)
    blob = bytearray(store.backend.get(key))
    blob[-5] ^= 0xFF
    store.backend.publish(key, bytes(blob))


def verify_and_heal(h: PointHealer, store: VaultStore) -> tuple[list[str], dict[str, str]]:
    report = verify_point(store, POINT)
    healed: list[str] = []
    failed: dict[str, str] = {}
    with store.reader():  # as verify holds it
        for target, disk in report.disks.items():
            out = h.heal(target, [*disk.missing, *disk.corrupt], set(disk.corrupt))
            healed += [f"{x.disk}:{x.chunk}:{x.source}" for x in out.healed]
            failed |= out.failed
    return healed, failed


# --- same identity: the object is stored as it is ---------------------------------------------


def test_a_deleted_chunk_is_healed_from_a_copy_byte_for_byte(
    backend: Backends, disks: dict[str, bytes], tmp_path: Path
) -> None:
    a = VaultStore.create(backend("a"), chunk_size=CS)
    write_point(a, tmp_path)
    b = copy_as_is(a, backend("b"))
    assert same_identity(a, b)
    gone = indexes(a)["vda"].ids[2]
    a.backend.delete(a.chunks.key(gone))
    assert not verify_point(a, POINT).ok

    healed, failed = verify_and_heal(healer(a, ("offsite", b)), a)

    assert healed == [f"vda:{gone.hex()}:offsite"] and failed == {}
    assert a.backend.get(a.chunks.key(gone)) == b.backend.get(b.chunks.key(gone))
    assert verify_point(a, POINT).ok
    assert restored(a, "vda", tmp_path) == disks["vda"]


def test_a_corrupt_chunk_is_quarantined_and_healed(
    backend: Backends, disks: dict[str, bytes], tmp_path: Path
) -> None:
    a = VaultStore.create(backend("a"), chunk_size=CS)
    write_point(a, tmp_path)
    b = copy_as_is(a, backend("b"))
    bad = indexes(a)["vdb"].ids[1]
    flip(a, bad)
    report = verify_point(a, POINT)
    assert report.disks["vdb"].corrupt == [bad]

    healed, failed = verify_and_heal(healer(a, ("offsite", b)), a)

    assert healed == [f"vdb:{bad.hex()}:offsite"] and not failed
    assert a.backend.exists(a.chunks.key(bad) + QUARANTINE_SUFFIX)  # kept for the operator
    assert verify_point(a, POINT).ok
    assert restored(a, "vdb", tmp_path) == disks["vdb"]


# --- another identity: found by position, re-encoded ------------------------------------------


@pytest.mark.parametrize(
    ("a_opts", "b_opts"),
    [
        ({"chunk_size": CS}, {"chunk_size": 2 * CS, "passphrase": "pw"}),
        ({"chunk_size": 2 * CS, "passphrase": "pw"}, {"chunk_size": CS}),
        ({"chunk_size": CS}, {"chunk_size": CS}),  # same size, other keys
    ],
    ids=["plain64k-from-encrypted128k", "encrypted128k-from-plain64k", "other-keys"],
)
def test_a_chunk_is_healed_from_a_vault_of_another_identity(
    backend: Backends,
    disks: dict[str, bytes],
    tmp_path: Path,
    a_opts: dict[str, object],
    b_opts: dict[str, object],
) -> None:
    def create(name: str, opts: dict[str, object]) -> VaultStore:
        extra = {"key_file": tmp_path / f"{name}.key"} if "passphrase" in opts else {}
        return VaultStore.create(backend(name), **opts, **extra)  # type: ignore[arg-type]

    a, b = create("a", a_opts), create("b", b_opts)
    write_point(a, tmp_path)
    copy_reencoded(a, b, tmp_path)
    assert not same_identity(a, b)
    ids = indexes(a)["vda"].ids
    gone, bad = ids[0], ids[2]  # ids[0] is also the last chunk's (same data): both positions
    a.backend.delete(a.chunks.key(gone))
    flip(a, bad)

    healed, failed = verify_and_heal(healer(a, ("offsite", b)), a)

    assert sorted(healed) == sorted(f"vda:{c.hex()}:offsite" for c in (gone, bad))
    assert not failed
    assert verify_point(a, POINT).ok
    assert restored(a, "vda", tmp_path) == disks["vda"]


# --- no intact copy ------------------------------------------------------------------------------


def test_without_a_copy_the_chunk_stays_damaged_with_its_ranges(
    backend: Backends, disks: dict[str, bytes], tmp_path: Path
) -> None:
    a = VaultStore.create(backend("a"), chunk_size=CS)
    write_point(a, tmp_path)
    index = indexes(a)["vda"]
    gone = index.ids[0]  # at chunks 0 and 5 of vda
    a.backend.delete(a.chunks.key(gone))
    h = healer(a)

    healed, failed = verify_and_heal(h, a)

    assert healed == [] and failed == {gone.hex(): "no other vault holds the point"}
    assert index.ranges_of([gone]) == ((0, CS), (5 * CS, 6 * CS))
    assert h.unhealed == {"vda": {gone}}


def test_a_copy_damaged_in_the_same_chunk_heals_nothing(
    backend: Backends, disks: dict[str, bytes], tmp_path: Path
) -> None:
    a = VaultStore.create(backend("a"), chunk_size=CS)
    write_point(a, tmp_path)
    b = copy_as_is(a, backend("b"))
    c = VaultStore.create(backend("c"), chunk_size=CS)
    copy_reencoded(a, c, tmp_path)
    cid = indexes(a)["vda"].ids[2]
    a.backend.delete(a.chunks.key(cid))
    flip(b, cid)
    c.backend.delete(c.chunks.key(indexes(c)["vda"].ids[2]))

    healed, failed = verify_and_heal(healer(a, ("b", b), ("c", c)), a)

    assert healed == []
    assert "vault b: chunk" in failed[cid.hex()] and "vault c: chunk" in failed[cid.hex()]
    assert not a.chunks.exists(cid)


def test_holders_are_tried_in_order_and_a_damaged_one_is_skipped(
    backend: Backends, tmp_path: Path, disks: dict[str, bytes]
) -> None:
    a = VaultStore.create(backend("a"), chunk_size=CS)
    write_point(a, tmp_path)
    b = copy_as_is(a, backend("b"))
    c = VaultStore.create(backend("c"), chunk_size=CS)
    copy_reencoded(a, c, tmp_path)
    cid = indexes(a)["vdb"].ids[0]
    a.backend.delete(a.chunks.key(cid))
    b.backend.delete(b.chunks.key(cid))

    healed, _ = verify_and_heal(healer(a, ("b", b), ("c", c)), a)

    assert healed == [f"vdb:{cid.hex()}:c"]


# --- restore: the read path's fallback -------------------------------------------------------


def test_a_restore_reads_a_damaged_chunk_from_the_copy_and_repairs_the_vault(
    backend: Backends, disks: dict[str, bytes], tmp_path: Path
) -> None:
    a = VaultStore.create(backend("a"), chunk_size=CS)
    write_point(a, tmp_path)
    b = VaultStore.create(backend("b"), chunk_size=2 * CS)
    copy_reencoded(a, b, tmp_path)
    ids = indexes(a)["vda"].ids
    a.backend.delete(a.chunks.key(ids[1]))
    flip(a, ids[4])
    h = healer(a, ("offsite", b))

    out = restored(HealingStore(a, h), "vda", tmp_path)

    assert out == disks["vda"]
    assert sorted(x.chunk for x in h.outcome.healed) == sorted(c.hex() for c in (ids[1], ids[4]))
    assert {x.source for x in h.outcome.healed} == {"offsite"}
    assert verify_point(a, POINT).ok  # repaired on the way


def test_a_restore_without_a_copy_fails_naming_the_point_disk_and_range(
    backend: Backends, disks: dict[str, bytes], tmp_path: Path
) -> None:
    a = VaultStore.create(backend("a"), chunk_size=CS)
    write_point(a, tmp_path)
    cid = indexes(a)["vdb"].ids[1]
    a.backend.delete(a.chunks.key(cid))
    h = healer(a)

    with pytest.raises(PointDamaged) as err:
        restored(HealingStore(a, h), "vdb", tmp_path)

    assert err.value.code == "POINT_DAMAGED"
    assert f"recovery point {POINT} is damaged in vault main" in str(err.value)
    assert f"disk vdb bytes [{CS}, {2 * CS})" in str(err.value)
    assert h.unhealed == {"vdb": {cid}}
    assert not list(tmp_path.glob(".restored-vdb*"))  # no partial image left


def test_ranges_of_merges_adjacent_chunks() -> None:
    x, y, z = b"x" * 32, b"y" * 32, b"z" * 32
    index = DiskIndex(CS, 4 * CS + 10, [x, x, y, x, z])
    assert index.ranges_of([x]) == ((0, 2 * CS), (3 * CS, 4 * CS))
    assert index.ranges_of([x, y]) == ((0, 4 * CS),)
    assert index.ranges_of([z]) == ((4 * CS, 4 * CS + 10),)
    assert index.ranges_of([]) == ()
