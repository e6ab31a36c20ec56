"""Where a vault's bytes live: the storage contract and its backends.

* :mod:`~vmvault.storage.backend` — the contract, :class:`StorageBackend` (objects with
  put-if-absent, atomic publish, batches, get/get-into, stat, list by prefix, delete, touch,
  usage, leftovers, layout; named reader/writer locks; the writer registry), and the key rules.
* :mod:`~vmvault.storage.errors` — transient vs permanent failures, :func:`retry`.
* :mod:`~vmvault.storage.local` — a directory (O_DIRECT, fsync, link/rename, flock); the
  vault directory's marker file; :mod:`~vmvault.storage.local_batch` its batches,
  :mod:`~vmvault.storage.flock` its locks and writers.
* :mod:`~vmvault.storage.s3` — S3-compatible object storage (Ceph RGW, AWS, MinIO …):
  :func:`~vmvault.storage.s3.open_s3`, ``S3Backend.probe``; :mod:`~vmvault.storage.s3_batch`
  its concurrent uploads, :mod:`~vmvault.storage.s3_leases` its locks and writers on lease
  objects, :mod:`~vmvault.storage.s3_client` vmvault's own S3 client (requests signed by
  :mod:`~vmvault.storage.s3_sigv4`, answers parsed by :mod:`~vmvault.storage.s3_xml`),
  :mod:`~vmvault.storage.s3_errors` its failures as storage errors,
  :mod:`~vmvault.storage.s3_session` the client, the server's clock and the retry policy,
  :mod:`~vmvault.storage.s3_credentials` where the keys come from.
* :mod:`~vmvault.storage.memory` — in memory, for tests and the fake composition root.
* :mod:`~vmvault.storage.fsutil` — local file primitives (durable writes, O_DIRECT), also
  used by the data path to write restored images.

Every backend passes the conformance suite in ``tests/unit/storage/``.  This layer imports
``vmvault.domain`` at most; it knows nothing of chunks, indexes or manifests.
"""

from vmvault.storage.backend import ObjectInfo, StorageBackend, Usage, WriteBatch, WriterInfo
from vmvault.storage.errors import (
    LockTimeout,
    ObjectMissing,
    ObjectTooLarge,
    PermanentStorageError,
    StorageError,
    StorageFull,
    TransientStorageError,
    is_transient,
    retry,
)

__all__ = [
    "LockTimeout",
    "ObjectInfo",
    "ObjectMissing",
    "ObjectTooLarge",
    "PermanentStorageError",
    "StorageBackend",
    "StorageError",
    "StorageFull",
    "TransientStorageError",
    "Usage",
    "WriteBatch",
    "WriterInfo",
    "is_transient",
    "retry",
]
