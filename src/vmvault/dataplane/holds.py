"""Holds: a recovery point's objects made undeletable by the storage (docs/immutability.md,
docs/vault-format.md §7b), through the storage contract's optional
:class:`~vmvault.storage.backend.ObjectHold` capability.

After a point exists (chunks → indexes → manifest → catalog row), :func:`hold_point` holds
its manifest and indexes until its retain-until and its chunks until at least that date —
a chunk whose retention must be extended at all is extended to the date plus
:data:`~vmvault.domain.immutability.EXTENSION_MARGIN`, so that the chunks later points share
are extended once per margin.  :func:`purge_point` deletes a point's manifest and indexes for
good through the capability (an undated hold released, every version deleted), refusing
while the storage still retains one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from vmvault.dataplane.chunk import ZERO_ID
from vmvault.dataplane.chunkstore import chunk_key, space_errors
from vmvault.domain.errors import ImmutableUnsupported, PointRetained
from vmvault.domain.immutability import EXTENSION_MARGIN, LockMode

if TYPE_CHECKING:  # vault.py imports this module
    from vmvault.dataplane.vault import VaultStore


def check_hold(store: VaultStore, vault: str) -> None:
    """Refuse (``IMMUTABLE_UNSUPPORTED``) when the vault's storage cannot hold objects."""
    holds = store.backend.holds
    why = "this storage has no way to refuse a delete" if holds is None else holds.check()
    if why is not None:
        raise ImmutableUnsupported(vault=vault, why=why)


def point_keys(store: VaultStore, point_id: str) -> tuple[list[str], list[str]]:
    """The objects of a point: its manifest and indexes; the chunks they name."""
    m = store.read_manifest(point_id)
    keys = [store.manifest_key(point_id)]
    cids: set[bytes] = set()
    for disk in m.disks:
        if disk.index is None:
            continue
        keys.append(store.index_key(point_id, disk.target))
        cids.update(store.read_point_index(m, disk.target).ids)
    cids.discard(ZERO_ID)
    return keys, sorted(chunk_key(c) for c in cids)


def hold_point(store: VaultStore, point_id: str, until: datetime, mode: LockMode) -> int:
    """Hold the point's objects (module docstring); returns how many got a hold or a longer
    one — the requests it cost on S3 — (0 when the storage has no holds)."""
    holds = store.backend.holds
    if holds is None:
        return 0
    own, chunks = point_keys(store, point_id)
    with space_errors(store.location):
        made = holds.hold(own, until, mode, timedelta(0))
        return made + holds.hold(chunks, until, mode, EXTENSION_MARGIN)


def purge_point(store: VaultStore, point_id: str, index_prefix: str) -> None:
    """Delete the point's manifest, then its indexes (``index_prefix``), for good
    (``VaultStore.delete_point`` where the storage has holds).  ``POINT_RETAINED`` while the storage still retains one:
    the caller checked the catalog's date (services/immutability.py), the storage's clock
    decides."""
    holds = store.backend.holds
    assert holds is not None
    with space_errors(store.location):
        indexes = [i.key for i in store.backend.list_objects(index_prefix)]
        for key in [store.manifest_key(point_id), *indexes]:
            if not holds.purge(key):
                raise PointRetained(point=point_id, vault=store.location, until="its storage date")
        store.backend.delete_prefix(index_prefix)  # a directory's emptied tree
