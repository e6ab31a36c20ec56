"""The data path: the vault format and the pipelines that fill and read it.

Glossary (the format is written down in ``docs/vault-format.md`` and in each module):

* **chunk** – ``chunk_size`` bytes of a disk at a multiple of ``chunk_size``; named by the
  keyed BLAKE3 of its plaintext; stored compressed (and encrypted) once per vault
  (:mod:`~vmvault.dataplane.chunk`, :mod:`~vmvault.dataplane.chunkstore`).
* **disk index** – the ordered chunk ids of one disk in one recovery point
  (:mod:`~vmvault.dataplane.index`).
* **manifest** – what makes a recovery point exist: VM, domain XML, method, consistency,
  disks with their index digests; authenticated (:mod:`~vmvault.dataplane.manifest`).
* **vault store** – the directory holding all of it (:mod:`~vmvault.dataplane.vault`), its
  keys (:mod:`~vmvault.dataplane.keys`), config (:mod:`~vmvault.dataplane.config`) and
  locks (:mod:`~vmvault.dataplane.locks`).
* **pipelines** – :func:`backup_disk`, :func:`restore_disk`, :func:`verify_disk`,
  :func:`collect_garbage`; disks are read through an :class:`ExtentSource`.
* **healing** – a damaged chunk repaired from another vault holding the same point, by id
  or by disk position; a restore reads through damage (:mod:`~vmvault.dataplane.heal`).

This layer imports ``vmvault.domain`` only; it knows nothing of libvirt, the catalog or jobs.
"""

from vmvault.dataplane.backup import DiskBackupResult, backup_disk
from vmvault.dataplane.chunk import ZERO_ID
from vmvault.dataplane.config import DEFAULT_CHUNK_SIZE, DEFAULT_LEVEL
from vmvault.dataplane.gc import DEFAULT_GRACE, GcReport, collect_garbage
from vmvault.dataplane.index import DiskIndex
from vmvault.dataplane.manifest import DiskEntry, Manifest
from vmvault.dataplane.restore import (
    PointVerifyReport,
    RestoreResult,
    VerifyReport,
    restore_disk,
    verify_disk,
    verify_point,
)
from vmvault.dataplane.source import ExtentSource, FileSource
from vmvault.dataplane.vault import VaultStore

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_GRACE",
    "DEFAULT_LEVEL",
    "ZERO_ID",
    "DiskBackupResult",
    "DiskEntry",
    "DiskIndex",
    "ExtentSource",
    "FileSource",
    "GcReport",
    "Manifest",
    "PointVerifyReport",
    "RestoreResult",
    "VaultStore",
    "VerifyReport",
    "backup_disk",
    "collect_garbage",
    "restore_disk",
    "verify_disk",
    "verify_point",
]
