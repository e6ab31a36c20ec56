"""Attaching an existing vault to this catalog: disaster recovery from the storage alone.

A vault's storage holds everything needed to restore its points — each point's manifest
(domain XML, disks, method, consistency, sizes, the checkpoint it was incremental from, its
backup set) and indexes, the chunks — but not the catalog (docs/disaster-recovery.md).
:meth:`VaultAttachService.attach` rebuilds the catalog's view of such a vault on a machine
whose catalog does not know it (a new machine, an empty ``VMVAULT_HOME``):

1. Checks, nothing written: the name is free; the storage is not already a vault of this
   catalog (``VAULT_ALREADY_ATTACHED``); it is a vmvault vault (``NOT_A_VAULT``: no
   ``config``); its keys open: in ``config`` (unencrypted), or — an encrypted vault's keys
   are never in the storage — from the paper key (``--paper-key``) or a copy of the key file
   and its passphrase (``--key-file``, or the key file already at ``VMVAULT_HOME/keys/NAME.key``),
   else ``VAULT_KEY_REQUIRED``.
2. Reads every manifest (each authenticated with the vault's MAC key, and decrypted):
   a point exists exactly when its manifest does, so the index objects of a half-written
   point are counted and ignored; a manifest that does not authenticate is skipped and named.
3. Writes, paper key only: the key file ``VMVAULT_HOME/keys/NAME.key`` wrapped with the new
   passphrase (as ``vault key import``), removed again if the catalog transaction fails.
4. One catalog transaction: the vault row (its storage coordinates, never credentials), the
   location's default host (location ``local``, as ``vault create``), a row per VM the catalog
   does not know (state ``discovered``, *vanished*: not seen on a host of this catalog yet;
   a discovery that finds its uuid re-links it), a row per point (or, for a point the catalog
   already has in another vault, a holding of this vault: a copy).

Running it again is refused (the name is taken, or the storage is attached).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from vmvault.dataplane.chunkstore import CHUNKS, space_errors
from vmvault.dataplane.config import VaultConfig
from vmvault.dataplane.keys import KeySet, read_key_file, write_key_file
from vmvault.dataplane.manifest import Manifest
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.errors import (
    InvalidInput,
    KeyFileMismatch,
    ManifestCorrupt,
    NotAVault,
    PassphraseRequired,
    PointNotFound,
    VaultAlreadyAttached,
    VaultExists,
    VaultFormatUnsupported,
    VaultKeyRequired,
    VaultNotInitialised,
)
from vmvault.domain.host_uri import DEFAULT_HOST_URI
from vmvault.domain.recovery_point import PointCopy, RecoveryPoint
from vmvault.domain.vault import (
    S3Location,
    Vault,
    validate_location,
    validate_name,
)
from vmvault.domain.vm import PowerState, VmItem
from vmvault.services.backup.commit import point_from_manifest
from vmvault.services.paths import check_writable, user_path
from vmvault.services.ports import UnitOfWork
from vmvault.services.vault_keys import keys_from_paper
from vmvault.services.vaults import (
    IDENTITY_KEY,
    VaultService,
    add_default_host,
    overlaps,
    storage_failures,
)
from vmvault.storage.backend import StorageBackend
from vmvault.storage.errors import ObjectMissing

#: The name a VM gets for its host until a discovery sees it: the host of the URI its
#: points were taken on (``qemu+ssh://h2/system`` → ``h2``), or this for a local URI.
UNKNOWN_HOST = "unknown"


@dataclass(frozen=True)
class AttachReport:
    """What ``vault attach`` found and recorded."""

    vault: Vault
    #: distinct VMs the points belong to, and how many of them the catalog did not know
    vms: int
    vms_new: int
    #: points recorded with this vault as their own; points the catalog already had (in
    #: another vault) recorded as held by this one too
    points: int
    copies: int
    #: sum of the points' disk sizes, and the bytes the chunk objects take in the storage
    bytes_logical: int
    bytes_stored: int
    #: manifests that did not authenticate (``point: why``): skipped, not in the catalog
    skipped: list[str] = field(default_factory=list)
    #: point ids with index objects but no manifest (half-written: ignored, GC's to reclaim)
    incomplete: list[str] = field(default_factory=list)
    #: how the keys were opened: ``config`` (unencrypted), ``paper-key`` or ``key-file``
    keys_from: str = "config"
    #: the name and location the storage's identity object records (None: none found)
    recorded_name: str | None = None
    recorded_location: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class _Keys:
    keys: KeySet
    source: str
    #: the key file the catalog row names (None: unencrypted)
    key_file: Path | None
    #: the paper key's new passphrase: the key file is still to be written
    write_with: str | None = None


class VaultAttachService:
    def __init__(self, vaults: VaultService, new_passphrase: Callable[[], str | None]) -> None:
        self.vaults = vaults
        self.new_passphrase = new_passphrase

    def attach(
        self,
        name: str,
        location: str,
        path: str | None = None,
        s3: S3Location | None = None,
        *,
        paper_key: str | None = None,
        key_file: str | None = None,
    ) -> AttachReport:
        """Rebuild the catalog's view of the vault in ``path`` or ``s3`` as vault ``name``
        (module docstring); every refusal leaves the catalog and the storage as they were."""
        started = time.monotonic()
        validate_name(name, "vault name")
        location = validate_location(location)
        if (path is None) == (s3 is None):
            raise InvalidInput("give the vault's --path or its S3 coordinates", what="attach")
        if paper_key is not None and key_file is not None:
            raise InvalidInput("give --paper-key or --key-file, not both", what="--key-file")
        if s3 is not None and s3.credentials_file is not None:
            creds = user_path(s3.credentials_file, "--credentials-file").path
            s3 = S3Location(s3.endpoint, s3.bucket, s3.prefix, s3.region, str(creds))
        target = user_path(path, "--path").path if path is not None else None
        where = str(target) if s3 is None else f"{s3.url} at {s3.endpoint}"
        with self.vaults.uow() as uow:
            self._check_free(uow, name, target, s3)
        if target is not None and not target.is_dir():
            raise NotAVault(where=where, why="no such directory")
        with storage_failures(where, name):
            backend = self.vaults.storage(s3 or target)  # type: ignore[arg-type]
            config = self._config(backend, where)
            identity = _identity(backend)
        keys = self._keys(name, where, config, paper_key, key_file)
        store = VaultStore(backend, config, keys.keys)
        manifests, skipped, incomplete = _read_points(store)
        with space_errors(where):
            stored = backend.usage(CHUNKS + "/").bytes
        written = None
        try:
            if keys.write_with is not None:
                assert keys.key_file is not None
                keys.key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                write_key_file(keys.key_file, keys.keys, keys.write_with)
                written = keys.key_file
            with self.vaults.uow() as uow:
                self._check_free(uow, name, target, s3)
                vault = self._record(uow, name, location, target, s3, config, keys)
                counts = _record_points(uow, name, manifests, self.vaults.clock())
                uow.commit()
        except BaseException:
            if written is not None:
                written.unlink(missing_ok=True)
            raise
        return AttachReport(
            vault,
            *counts,
            bytes_stored=stored,
            skipped=skipped,
            incomplete=incomplete,
            keys_from=keys.source,
            recorded_name=identity.get("name"),
            recorded_location=identity.get("location"),
            seconds=round(time.monotonic() - started, 3),
        )

    # --- the checks ----------------------------------------------------------------------

    def _check_free(
        self, uow: UnitOfWork, name: str, target: Path | None, s3: S3Location | None
    ) -> None:
        if uow.vaults.get(name) is not None:
            raise VaultExists(name=name)
        for other in uow.vaults.all():
            if (
                target is not None
                and other.s3 is None
                and Path(other.path).resolve() == target.resolve()
            ):
                raise VaultAlreadyAttached(where=str(target), name=other.name)
            if s3 is not None and other.s3 is not None:
                o = other.s3
                if (o.endpoint, o.bucket, o.prefix) == (s3.endpoint, s3.bucket, s3.prefix):
                    raise VaultAlreadyAttached(where=f"{s3.url} at {s3.endpoint}", name=other.name)
                if overlaps(o, s3):
                    raise InvalidInput(
                        f"it overlaps vault '{other.name}' ({other.path})",
                        what=f"--prefix {s3.prefix or '(none)'}",
                    )

    @staticmethod
    def _config(backend: StorageBackend, where: str) -> VaultConfig:
        try:
            return VaultStore.read_config(backend)
        except VaultNotInitialised:
            raise NotAVault(where=where, why="no 'config' object") from None

    def _keys(
        self,
        name: str,
        where: str,
        config: VaultConfig,
        paper_key: str | None,
        key_file: str | None,
    ) -> _Keys:
        """The vault's keys, opened the way the operator can (module docstring, step 1)."""
        if config.keys is not None:
            if paper_key is not None or key_file is not None:
                given = "--paper-key" if paper_key is not None else "--key-file"
                raise InvalidInput("the vault is not encrypted: its keys are in it", what=given)
            return _Keys(config.keys, "config", None)
        default = self.vaults.home / "keys" / f"{name}.key"
        if paper_key is not None:
            keys = keys_from_paper(paper_key, config.key_fingerprint, name)
            if default.exists():
                raise InvalidInput("it already exists", what=f"key file {default}")
            check_writable(default.parent, f"key file {default}")
            secret = self.new_passphrase()
            if not secret:
                raise InvalidInput(
                    "give it in VMVAULT_NEW_PASSPHRASE(_FILE) or type it on a terminal",
                    what="the new passphrase",
                )
            return _Keys(keys, "paper-key", default, write_with=secret)
        if key_file is not None:
            path = user_path(key_file, "--key-file").path
        elif default.exists():
            path = default
        else:
            raise VaultKeyRequired(where=where)
        secret = self.vaults.passphrase()
        if not secret:
            raise PassphraseRequired(path=where)
        keys = read_key_file(path, secret)
        if keys.fingerprint() != config.key_fingerprint:
            raise KeyFileMismatch(key_file=str(path), path=where)
        return _Keys(keys, "key-file", path)

    # --- the catalog -----------------------------------------------------------------------

    def _record(
        self,
        uow: UnitOfWork,
        name: str,
        location: str,
        target: Path | None,
        s3: S3Location | None,
        config: VaultConfig,
        keys: _Keys,
    ) -> Vault:
        """The vault row (and the location's default host, as ``vault create``)."""
        now = self.vaults.clock()
        created = _when(config.created_at, now)
        key_file = str(keys.key_file) if keys.key_file is not None else None
        shown = str(target) if target is not None else s3.url  # type: ignore[union-attr]
        vault = uow.vaults.add(name, location, shown, created, key_file, s3=s3)
        add_default_host(uow, location, now)
        return vault


def _record_points(
    uow: UnitOfWork, vault: str, manifests: list[Manifest], now: datetime
) -> tuple[int, int, int, int, int]:
    """A row per point (or a holding, for a point the catalog has in another vault) and per
    VM the catalog does not know; returns (VMs, new VMs, points, copies, logical bytes)."""
    points = [point_from_manifest(m, vault, None, []) for m in manifests]
    host_uris = {m.vm_uuid: str(m.extra.get("host_uri") or DEFAULT_HOST_URI) for m in manifests}
    by_vm = _by_vm(points)
    vms_new = 0
    for uuid, of_vm in by_vm.items():
        # a VM the catalog knows, or that a discovery or registration wrote meanwhile, stands
        # as it is (a save would overwrite it with this placeholder)
        if uow.vms.add_if_new(_vanished_vm(of_vm, host_uris[uuid], now)):
            vms_new += 1
    own = copies = 0
    for p in points:
        if uow.points.add_if_new(p):
            own += 1
        else:  # also when another attach (of a vault of its copies) wrote it meanwhile
            uow.copies.add(PointCopy(p.id, vault, now))
            copies += 1
    return len(by_vm), vms_new, own, copies, sum(p.bytes_logical for p in points)


def _identity(backend: StorageBackend) -> dict[str, str]:
    """The storage's identity object (directory marker or S3 identity), if readable."""
    try:
        doc = json.loads(backend.get(IDENTITY_KEY))
    except (ObjectMissing, ValueError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {k: str(doc[k]) for k in ("name", "location") if isinstance(doc.get(k), str)}


def _read_points(store: VaultStore) -> tuple[list[Manifest], list[str], list[str]]:
    """Every point's manifest, authenticated; the ones skipped (``id: why``); the ids of
    half-written points (indexes without a manifest)."""
    ids = store.list_manifests()

    def read(point_id: str) -> Manifest | str | None:
        try:
            return store.read_manifest(point_id)
        except PointNotFound:  # deleted since it was listed
            return None
        except (ManifestCorrupt, VaultFormatUnsupported) as exc:
            return f"{point_id}: {exc.text}"

    # at once on object storage, where each is a GET (VaultStore.each: 8 at a time): 200
    # points on the lab RGW took 12.4 s one at a time, 3.0 s eight at a time; a local
    # directory reads them in one thread (parsing and the MAC hold the GIL: eight threads
    # were no faster)
    found = store.each(read, ids)
    manifests = [m for m in found if isinstance(m, Manifest)]
    skipped = [m for m in found if isinstance(m, str)]
    incomplete = sorted(set(store.list_index_dirs()) - set(ids))
    return manifests, skipped, incomplete


def _by_vm(points: list[RecoveryPoint]) -> dict[str, list[RecoveryPoint]]:
    """Each VM's points, oldest first."""
    out: dict[str, list[RecoveryPoint]] = {}
    for p in sorted(points, key=lambda p: (p.created_at, p.id)):
        out.setdefault(p.vm_uuid, []).append(p)
    return out


def _vanished_vm(points: list[RecoveryPoint], host_uri: str, now: datetime) -> VmItem:
    """A VM known only from its points: named as its newest point names it, on the host its
    points were taken on, seen between its first and newest point, not on any host of this
    catalog yet (vanished).  Discovery fills in the rest when it finds the uuid."""
    newest = points[-1]
    return VmItem(
        uuid=newest.vm_uuid,
        name=newest.vm_name,
        host_uri=host_uri,
        hostname=urlsplit(host_uri).hostname or UNKNOWN_HOST,
        group=urlsplit(host_uri).hostname or UNKNOWN_HOST,
        power_state=PowerState.UNKNOWN,
        disks=[],
        nics=[],
        agent_channel=False,
        fingerprint="",
        first_seen=points[0].created_at,
        last_seen=newest.created_at,
        vanished_at=now,
    )


def _when(iso: str, fallback: datetime) -> datetime:
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        return fallback
