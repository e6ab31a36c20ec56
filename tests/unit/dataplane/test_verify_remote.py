"""Verify on a ``remote`` backend (object storage; here the in-memory backend told to behave
as one) reads ahead like the restore: every chunk fetched once by the read-ahead, and what
it could not read or decode is read again the ordinary way and reported as missing or
corrupt — the same report as without read-ahead."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.dataplane.conftest import CS, backup_point, make_image
from vmvault.dataplane import VaultStore, verify_disk
from vmvault.dataplane import restore as restore_module
from vmvault.dataplane.chunk import ZERO_ID
from vmvault.dataplane.readahead import Fetched, ReadAhead
from vmvault.storage.memory import MemoryBackend


@pytest.mark.parametrize("quarantine", [False, True])
def test_verify_reads_ahead_and_reports_what_a_plain_verify_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quarantine: bool
) -> None:
    mem = MemoryBackend("memory:verify", remote=True)
    store = VaultStore.create(mem, chunk_size=CS)
    image = tmp_path / "a.img"
    make_image(image, [("rand", n) for n in range(12)] + [("text", 1)])
    index = backup_point(store, "p1", {"vda": image})["vda"].index
    stored = sorted({cid for cid in index.ids if cid != ZERO_ID})
    gone, bad = stored[3], stored[7]
    mem.delete(store.chunks.key(gone))
    blob = bytearray(mem.get(store.chunks.key(bad)))
    blob[-3] ^= 0xFF
    mem.publish(store.chunks.key(bad), bytes(blob))
    taken: list[int] = []

    class Counted(ReadAhead):
        def take(self) -> Fetched | None:
            item = super().take()
            if item is not None:
                taken.append(item[0])
            return item

    monkeypatch.setattr(restore_module, "ReadAhead", Counted)
    mem.remote = False  # the same vault, read without read-ahead
    plain = verify_disk(store, index, workers=2)
    assert taken == []
    mem.remote = True
    ahead = verify_disk(store, index, workers=2, quarantine=quarantine)
    assert sorted(taken) == list(range(len(stored)))  # each distinct chunk fetched once
    for report in (plain, ahead):
        assert report.missing == [gone] and report.corrupt == [bad]
        assert report.chunks_checked == len(stored)
    assert ahead.bytes_checked == plain.bytes_checked > 0
    quarantined = [i.key for i in mem.list_objects("chunks/") if i.key.endswith(".bad")]
    assert len(quarantined) == (1 if quarantine else 0)
