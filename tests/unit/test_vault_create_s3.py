"""``vault create --storage s3`` over the in-memory backend: the checks before anything is
written, what a vault on object storage holds, and the undo of a failed create.  (Against a
real RGW: tests/integration/test_s3_vault.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from vmvault.dataplane.gc import collect_garbage
from vmvault.domain.errors import (
    InvalidInput,
    StorageUnreachable,
    VaultExists,
    VaultStorageInUse,
    VmvaultError,
)
from vmvault.domain.vault import S3Location, s3_location
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import open_catalog
from vmvault.services.vaults import IDENTITY_KEY, VaultService
from vmvault.storage.backend import Data, StorageBackend
from vmvault.storage.errors import RETRY_ATTEMPTS, EndpointUnreachable, PermanentStorageError
from vmvault.storage.local import LocalBackend
from vmvault.storage.memory import MemoryBackend

T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
WHERE = s3_location("http://127.0.0.1:7480", "backups", "site-a")


class Buckets:
    """A storage factory: one in-memory backend per S3 location (a bucket and prefix)."""

    def __init__(self) -> None:
        self.backends: dict[S3Location, MemoryBackend] = {}

    def __call__(self, where: Path | S3Location) -> StorageBackend:
        if isinstance(where, Path):
            return LocalBackend(where)
        return self.backends.setdefault(where, MemoryBackend(where.url))


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[VaultService, Buckets]:
    engine = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    buckets = Buckets()
    svc = VaultService(
        lambda: SqlUnitOfWork(engine),
        None,  # type: ignore[arg-type]
        lambda: T0,
        tmp_path,
        None,
        storage=buckets,
    )
    return svc, buckets


def test_the_parser_refuses_what_cannot_be_an_endpoint_bucket_or_prefix() -> None:
    for endpoint, bucket, prefix in [
        ("ftp://h", "backups", None),
        ("http://h/path", "backups", None),
        ("http://h:99999", "backups", None),
        ("http://h", "Backups", None),
        ("http://h", "ab", None),
        ("http://h", "a..b", None),
        ("http://h", "backups", "../x"),
        ("http://h", "backups", "a b"),
    ]:
        with pytest.raises(InvalidInput):
            s3_location(endpoint, bucket, prefix)
    where = s3_location("https://s3.example.com:443/", "my-bucket", "/a/b/")
    assert (where.endpoint, where.prefix, where.url) == (
        "https://s3.example.com:443",
        "a/b/",
        "s3://my-bucket/a/b/",
    )
    assert s3_location("http://h", "my.bucket").prefix == ""


def test_an_s3_vault_holds_its_identity_and_config_and_the_catalog_names_the_bucket(
    setup: tuple[VaultService, Buckets],
) -> None:
    svc, buckets = setup
    vault = svc.create("far", "local", None, s3=WHERE)
    assert vault.s3 == WHERE and vault.path == "s3://backups/site-a/" and vault.storage == "s3"
    backend = buckets.backends[WHERE]
    assert {o.key for o in backend.list_objects("")} == {IDENTITY_KEY, "config", "gc-epoch"}
    assert svc.resolve("far") == vault
    store = svc.open_store(vault)
    assert store.chunk_size == 4 << 20 and svc.stored_chunk_bytes(vault).bytes == 0


def test_a_prefix_that_holds_objects_is_refused_and_nothing_is_created(
    setup: tuple[VaultService, Buckets],
) -> None:
    svc, buckets = setup
    svc.create("far", "local", None, s3=WHERE)
    # the same bucket and prefix, or one inside the other, as a vault of this catalog
    for prefix in ("site-a", "site-a/inner", ""):
        where = s3_location(WHERE.endpoint, "backups", prefix)
        with pytest.raises(InvalidInput, match="overlaps vault 'far'"):
            svc.create("other", "local", None, s3=where)
    # objects of someone else (another catalog's vault, any data)
    foreign = s3_location(WHERE.endpoint, "backups", "site-b")
    buckets(foreign).put("data/x", b"not ours")
    with pytest.raises(VaultStorageInUse) as e:
        svc.create("other", "local", None, s3=foreign)
    assert e.value.code == "VAULT_STORAGE_IN_USE"
    assert [v.name for v in svc.list_vaults()] == ["far"]
    with pytest.raises(VaultExists):
        svc.create("far", "local", None, s3=s3_location("http://h", "backups", "elsewhere"))
    # another prefix of the same bucket is another vault
    assert svc.create("b", "local", None, s3=s3_location(WHERE.endpoint, "backups", "b")).s3


def test_what_a_failed_create_left_is_taken_over_by_the_same_command(
    setup: tuple[VaultService, Buckets],
) -> None:
    """A create whose identity put timed out after the server applied it (or whose undo
    could not reach the bucket) left ``vmvault-vault.json``: the same command again works."""
    svc, buckets = setup
    backend = buckets(WHERE)
    backend.put(IDENTITY_KEY, b'{"name": "far", "location": "local"}')
    with pytest.raises(VaultStorageInUse):  # another name: not its leftover
        svc.create("near", "local", None, s3=WHERE)
    assert svc.create("far", "local", None, s3=WHERE).name == "far"
    assert {o.key for o in backend.list_objects("")} == {IDENTITY_KEY, "config", "gc-epoch"}


def test_a_storage_failure_leaves_nothing_behind(setup: tuple[VaultService, Buckets]) -> None:
    svc, buckets = setup

    class RefusesConfig(MemoryBackend):
        def put(self, key: str, data: Data) -> bool:
            if key == "config":  # after the identity object: the undo must remove it
                raise PermanentStorageError("injected: access denied", key=key)
            return super().put(key, data)

    backend = buckets.backends[WHERE] = RefusesConfig(WHERE.url)
    with pytest.raises(VmvaultError):
        svc.create("far", "local", None, s3=WHERE, encrypt=False)
    assert list(backend.list_objects("")) == []
    assert svc.list_vaults() == []
    buckets.backends[WHERE] = MemoryBackend(WHERE.url)
    assert svc.create("far", "local", None, s3=WHERE).name == "far"  # the same command again


def test_s3_and_a_directory_are_exclusive(setup: tuple[VaultService, Buckets]) -> None:
    svc, _ = setup
    with pytest.raises(InvalidInput, match="--path"):
        svc.create("far", "local", "/tmp/x", s3=WHERE)


def test_a_vault_whose_endpoint_is_gone_is_storage_unreachable_for_every_command(
    setup: tuple[VaultService, Buckets],
) -> None:
    """Opening the vault (its config), reading a manifest, listing, GC: each a user's error
    (``STORAGE_UNREACHABLE``), never an internal one."""
    svc, buckets = setup
    vault = svc.create("far", "local", None, s3=WHERE)
    store = svc.open_store(vault)
    backend = buckets.backends[WHERE]
    gone = EndpointUnreachable("GetObject: the endpoint cannot be reached")
    for op, call in [
        ("get", lambda: svc.open_store(vault)),
        ("get", lambda: store.read_manifest("p1")),
        ("list_objects", store.list_manifests),
        ("list_objects", lambda: collect_garbage(store)),
        ("exists", lambda: store.has_manifest("p1")),
    ]:
        backend.inject(op, gone, times=RETRY_ATTEMPTS)
        with pytest.raises(StorageUnreachable):
            call()
