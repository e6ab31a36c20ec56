"""Vaults and hosts: creating, listing, choosing the vault a command works on."""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from vmvault.dataplane.chunkstore import CHUNKS, space_errors
from vmvault.dataplane.config import CONFIG_NAME, validate_chunk_size, validate_level
from vmvault.dataplane.reuse import EPOCH
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.approval import Guard, Kind, Requester, no_guard
from vmvault.domain.errors import (
    HostExists,
    HostNotFound,
    ImmutableUnsupported,
    InvalidInput,
    NoVault,
    PassphraseRequired,
    VaultCreateFailed,
    VaultExists,
    VaultInUse,
    VaultNotChosen,
    VaultNotFound,
    VaultPathInUse,
    VaultStorageInUse,
)
from vmvault.domain.host_uri import DEFAULT_HOST_URI, host_key, validate_uri
from vmvault.domain.inputs import DEFAULT_PAGE, page_of
from vmvault.domain.vault import (
    DEFAULT_LOCATION,
    Host,
    S3Location,
    Vault,
    validate_location,
    validate_name,
)
from vmvault.services import holdings
from vmvault.services.host_pull import checked_pull_dir
from vmvault.services.paths import check_writable, first_missing, user_path
from vmvault.services.ports import Hypervisor, UnitOfWork, UnitOfWorkFactory
from vmvault.services.stored_bytes import STORED, Measured
from vmvault.storage import local
from vmvault.storage.backend import StorageBackend
from vmvault.storage.errors import ObjectMissing, StorageError

#: Opens the storage backend of a vault: its directory, or its S3 coordinates.
StorageFactory = Callable[[Path | S3Location], StorageBackend]

#: The identity object of a vault on object storage (a directory has its marker file,
#: ``storage.local``): written first at creation, so a second ``vault create`` on the same
#: bucket and prefix finds it.  Holds ``{"name", "location", "created_at"}``.
IDENTITY_KEY = "vmvault-vault.json"
#: What ``vault create`` writes on S3 (deleted again when it fails): config last.
_CREATED = (CONFIG_NAME, EPOCH, IDENTITY_KEY)


@dataclass
class VaultSummary:
    vault: Vault
    hosts: list[Host]
    vm_counts: dict[str, int]


class VaultService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hypervisor: Hypervisor,
        clock: Callable[[], datetime],
        home: Path,
        default_vault: str | None,
        passphrase: Callable[[], str | None] = lambda: None,
        storage: StorageFactory | None = None,
    ) -> None:
        self.passphrase = passphrase
        self.storage = storage or _directories_only
        self.uow = uow
        self.hypervisor = hypervisor
        self.clock = clock
        self.home = home
        self.default_vault = default_vault
        #: holds a call that reduces protection for approval (services/approvals.py)
        self.guard: Guard = no_guard

    # --- vaults ------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        location: str,
        path: str | None,
        *,
        encrypt: bool = False,
        chunk_size: int | None = None,
        zstd_level: int | None = None,
        key_file: str | None = None,
        s3: S3Location | None = None,
    ) -> Vault:
        """Create the vault directory (marker + chunk store) and its catalog row; with ``s3``,
        the vault's identity object and chunk store in a bucket instead (:meth:`_create_s3`).

        An encrypted vault's keys are wrapped with the passphrase (``passphrase()``) in a key
        file outside the vault (default ``VMVAULT_HOME/keys/NAME.key``): losing it or the
        passphrase loses the vault.

        All or nothing: every check runs before the first write, and a failure after it
        removes what this call made (the directories, the marker, the chunk store, the key
        file), so the same command can simply be run again.
        """
        validate_name(name, "vault name")
        location = validate_location(location)
        if key_file is not None and not encrypt:
            raise InvalidInput("it goes with --encrypt", what="--key-file")
        if s3 is not None and path is not None:
            raise InvalidInput("an S3 vault has no directory: drop --path", what="--path")
        where = user_path(path, "--path") if path is not None else None
        target = where.path if where else self.home / "vaults" / name
        said = where.said if where else str(target)
        given_keys = user_path(key_file, "--key-file") if key_file is not None else None
        keys = given_keys.path if given_keys else self.home / "keys" / f"{name}.key"
        secret = None
        if encrypt:
            secret = self.passphrase()
            if not secret:
                raise PassphraseRequired(path=target)
            if keys.exists():
                raise InvalidInput("it already exists", what=f"key file {keys}")
            if keys.is_relative_to(target):
                raise InvalidInput("keep it outside the vault", what=f"key file {keys}")
            check_writable(keys.parent, given_keys.said if given_keys else f"key file {keys}")
        options: dict[str, int] = {}
        if chunk_size is not None:
            options["chunk_size"] = validate_chunk_size(chunk_size)
        if zstd_level is not None:
            options["zstd_level"] = validate_level(zstd_level)
        if s3 is not None:
            return self._create_s3(name, location, s3, secret, keys if encrypt else None, options)
        with self.uow() as uow:
            if uow.vaults.get(name) is not None:
                raise VaultExists(name=name)
            if local.is_unusable(target):
                raise VaultPathInUse(path=said)
            check_writable(target, said)
            undo = _Undo(target, keys if encrypt else None)
            try:
                now = self.clock()
                local.initialise(target, {"name": name, "location": location})
                if encrypt:
                    keys.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                VaultStore.create(
                    self.storage(target),
                    passphrase=secret,
                    key_file=keys if encrypt else None,
                    **options,
                )
                vault = uow.vaults.add(
                    name, location, str(target), now, str(keys) if encrypt else None
                )
                add_default_host(uow, location, now)
                uow.commit()
            except local.VaultDirectoryInUse:  # filled by someone else since the check
                raise VaultPathInUse(path=said) from None
            except BaseException as exc:
                undo()
                if isinstance(exc, OSError):
                    raise VaultCreateFailed(str(exc), name=name, path=target) from exc
                raise
        return vault

    def _create_s3(
        self,
        name: str,
        location: str,
        s3: S3Location,
        secret: str | None,
        keys: Path | None,
        options: dict[str, int],
    ) -> Vault:
        """An S3 vault: refused unless the endpoint answers, the credentials are accepted and
        the bucket exists and holds nothing under the prefix; then the identity object, the
        chunk store's ``config``, the key file, the catalog row.  A failure after the first
        write deletes what this call wrote (nothing else was there), so the command can be run
        again."""
        if s3.credentials_file is not None:
            s3 = replace(
                s3, credentials_file=str(user_path(s3.credentials_file, "--credentials").path)
            )
        with self.uow() as uow:
            if uow.vaults.get(name) is not None:
                raise VaultExists(name=name)
        with self.uow() as uow:
            for other in uow.vaults.all():
                if overlaps(other.s3, s3):
                    raise InvalidInput(
                        f"it overlaps vault '{other.name}' ({other.path}): vaults in one bucket "
                        "need prefixes that do not contain each other",
                        what=f"--prefix {s3.prefix or '(none)'}",
                    )
        with storage_failures(s3.url, name):
            backend = self.storage(s3)
            why = backend.holds.check() if backend.holds is not None else None
        if s3.object_lock and why is not None:  # refused before anything is written
            raise ImmutableUnsupported(vault=name, why=why)
        with storage_failures(s3.url, name):
            found = [o.key for o in itertools.islice(backend.list_objects(""), 3)]
            if found and self._leftover(backend, found, name):
                for key in _CREATED:  # an earlier create of this name failed
                    backend.delete(key)
                found = []
        if found:
            raise VaultStorageInUse(url=s3.url, endpoint=s3.endpoint, key=found[0])
        with self.uow() as uow:
            if uow.vaults.get(name) is not None:
                raise VaultExists(name=name)
            now = self.clock()
            identity = {"name": name, "location": location, "created_at": now.isoformat()}
            wrote = False
            try:
                with storage_failures(s3.url, name):
                    if not backend.put(IDENTITY_KEY, json.dumps(identity).encode()):
                        raise VaultStorageInUse(url=s3.url, endpoint=s3.endpoint, key=IDENTITY_KEY)
                    wrote = True
                    if keys is not None:
                        keys.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                    VaultStore.create(backend, passphrase=secret, key_file=keys, **options)
                vault = uow.vaults.add(
                    name, location, s3.url, now, str(keys) if keys else None, s3=s3
                )
                add_default_host(uow, location, now)
                uow.commit()
            except BaseException as exc:
                if wrote:  # the prefix was empty: what is there now is this call's
                    with contextlib.suppress(StorageError):
                        for key in _CREATED:
                            backend.delete(key)
                if keys is not None and wrote:
                    keys.unlink(missing_ok=True)
                if isinstance(exc, OSError):
                    raise VaultCreateFailed(str(exc), name=name, path=s3.url) from exc
                raise
        return vault

    def _leftover(self, backend: StorageBackend, keys: list[str], name: str) -> bool:
        """Whether ``keys`` are what a failed ``vault create`` of ``name`` could leave (its
        identity object, perhaps its GC epoch and config) and no vault of that name exists."""
        if not set(keys) <= set(_CREATED) or IDENTITY_KEY not in keys:
            return False
        try:
            identity = json.loads(backend.get(IDENTITY_KEY))
        except (ValueError, ObjectMissing):
            return False
        with self.uow() as uow:
            return identity.get("name") == name and uow.vaults.get(name) is None

    def backend(self, vault: Vault) -> StorageBackend:
        """The vault's storage backend (its directory, or its bucket and prefix)."""
        return self.storage(vault.s3 if vault.s3 is not None else Path(vault.path))

    def open_store(self, vault: Vault) -> VaultStore:
        """Open the vault's chunk store (asks for the passphrase of an encrypted vault)."""
        with space_errors(vault.path):
            backend = self.backend(vault)
            if not vault.encrypted:
                return VaultStore.open(backend)
            secret = self.passphrase()
            if not secret:
                raise PassphraseRequired(path=vault.path)
            return VaultStore.open(backend, passphrase=secret, key_file=Path(str(vault.key_file)))

    def stored_chunk_bytes(
        self, vault: Vault, fresh_for: float = 0.0, reuse_for: float = 0.0
    ) -> Measured:
        """Bytes the vault's chunk objects take (through the storage contract; no key needed),
        walked again unless this process's figure may still be used (services/stored_bytes.py:
        younger than ``fresh_for`` seconds, or than ``reuse_for`` with no job of the vault
        ended since; 0 and 0: walked now)."""

        def measure() -> int:
            with space_errors(vault.path):
                return self.backend(vault).usage(CHUNKS + "/").bytes

        def last_ended() -> datetime | None:
            with self.uow() as uow:
                return uow.jobs.last_ended(vault.name)

        key = (vault.name, vault.id, vault.path, vault.created_at.isoformat())
        return STORED.get(key, last_ended, fresh_for, reuse_for, measure, self.clock)

    def list_vaults(self) -> list[Vault]:
        with self.uow() as uow:
            return uow.vaults.all()

    def resolve(self, name: str | None) -> Vault:
        """The vault a command works on: the named one, ``VMVAULT_VAULT``, or the only one."""
        with self.uow() as uow:
            return self._resolve(uow, name)

    def _resolve(self, uow: UnitOfWork, name: str | None) -> Vault:
        name = name or self.default_vault
        if name:
            vault = uow.vaults.get(name)
            if vault is None:
                raise VaultNotFound(name=name)
            return vault
        vaults = uow.vaults.all()
        if not vaults:
            raise NoVault()
        if len(vaults) > 1:
            raise VaultNotChosen(count=len(vaults))
        return vaults[0]

    def show(self, name: str | None) -> VaultSummary:
        with self.uow() as uow:
            vault = self._resolve(uow, name)
            hosts = uow.hosts.all(vault.location)
            vms = uow.vms.all([h.uri for h in hosts])
        counts: dict[str, int] = {}
        for vm in vms:
            if vm.vanished_at is None:
                counts[vm.state.value] = counts.get(vm.state.value, 0) + 1
        return VaultSummary(vault, hosts, counts)

    def check_deletable(self, name: str, *, with_points: bool) -> Vault:
        """The vault ``vault delete`` may delete, or why not (``VAULT_IN_USE``): VMs registered
        with it, policies of it or copying to it, and — without ``with_points`` — points it
        holds (its own or copies, soft-deleted ones too)."""
        with self.uow() as uow:
            vault = uow.vaults.get(name)
            if vault is None:
                raise VaultNotFound(name=name)
            vms = sorted(v.label for v in uow.vms.all() if v.vault == name)
            policies = sorted(
                p.name
                for p in uow.policies.all()
                if p.vault == name or (p.policy.copy is not None and p.policy.copy.vault == name)
            )
            held = len(uow.points.in_vault(name, deleted=None))
            held += len(uow.copies.in_vault(name, deleted=None))
        if vms:
            raise VaultInUse(name=name, why=f"{len(vms)} VM(s) registered: {', '.join(vms)}")
        if policies:
            raise VaultInUse(name=name, why=f"policies use it: {', '.join(policies)}")
        if held and not with_points:
            raise VaultInUse(name=name, why=f"it holds {held} recovery point(s)")
        return vault

    def delete(self, name: str, *, with_points: bool = False, by: Requester = None) -> int:
        """``vault delete NAME [--with-points]``: refused while in use
        (:meth:`check_deletable`).  Purges each point it holds (manifest, indexes, catalog:
        a point whose copy lives elsewhere moves there, docs/soft-delete.md), removes the
        vault's notification targets and its row, then every object of its storage (and a
        local vault's directory).  The key file of an encrypted vault is left where it is.
        Returns how many points were purged."""
        self.guard(Kind.VAULT_DELETE, {"vault": name, "with_points": with_points}, by)
        vault = self.check_deletable(name, with_points=with_points)
        with self.uow() as uow:
            ids = [p.id for p in uow.points.in_vault(name, deleted=None)]
            ids += [c.point_id for c in uow.copies.in_vault(name, deleted=None)]
        store = self.open_store(vault) if ids else None
        for point_id in ids:
            assert store is not None
            store.delete_point(point_id)
            with self.uow() as uow:
                point = uow.points.get(point_id)
                if point is not None:
                    holdings.forget(uow, point, name)
                    uow.commit()
        with self.uow() as uow:
            for target in uow.notifications.targets(name):
                uow.notifications.remove_target(target.id)
            uow.vaults.remove(name)
            uow.commit()
        with space_errors(vault.path):
            backend = self.backend(vault)
            for info in list(backend.list_objects("")):
                backend.delete(info.key, sync=False)
        if vault.s3 is None:
            shutil.rmtree(vault.path, ignore_errors=True)
        return len(ids)

    # --- hosts -------------------------------------------------------------------------------

    def add_host(
        self,
        uri: str,
        location: str,
        check: bool = True,
        *,
        allow_command: bool = False,
        pull_tls: str | None = None,
    ) -> Host:
        """Add a libvirt host; a URI that makes libvirt run a command (the ``ext``
        transport, ``command=``, ``netcat=``) only with ``allow_command``.  ``pull_tls``: no
        node runs on it, its VMs are backed up by pulling (domain/pull.py) with the client
        PKI directory named; with ``check`` its files must be there on this node."""
        uri = host_key(validate_uri(uri, allow_command=allow_command))  # as nodes.host is
        location = validate_location(location)
        if pull_tls is not None:
            pull_tls = checked_pull_dir(self.hypervisor, uri, pull_tls, check)
        with self.uow() as uow:
            existing = uow.hosts.get(uri)
            if existing is not None:
                raise HostExists(uri=uri, location=existing.location)
        hostname = self.hypervisor.hostname(uri) if check else None
        with self.uow() as uow:  # HostExists from add if another added it since the check
            host = uow.hosts.add(uri, location, hostname, self.clock(), pull_tls)
            uow.commit()
        return host

    def remove_host(self, uri: str) -> None:
        with self.uow() as uow:
            if uow.hosts.get(uri) is None:
                raise HostNotFound(uri=uri)
            uow.hosts.remove(uri)
            uow.commit()

    def list_hosts(self, location: str | None = None) -> list[Host]:
        with self.uow() as uow:
            return uow.hosts.all(location)

    def hosts_page(
        self, location: str | None = None, limit: int = DEFAULT_PAGE, offset: int = 0
    ) -> tuple[list[Host], int]:
        """A page of :meth:`list_hosts` (``host list``) and how many hosts there are."""
        return page_of(self.list_hosts(location), limit, offset)


def overlaps(a: S3Location | None, b: S3Location) -> bool:
    """Two S3 vaults whose keys could meet: same endpoint and bucket, one prefix inside the
    other (a vault's GC would take the other's objects for its own garbage)."""
    if a is None or (a.endpoint, a.bucket) != (b.endpoint, b.bucket):
        return False
    return a.prefix.startswith(b.prefix) or b.prefix.startswith(a.prefix)


def _directories_only(where: Path | S3Location) -> StorageBackend:
    """The storage factory of a VaultService built without one (unit tests): directories."""
    if isinstance(where, S3Location):
        raise InvalidInput("this composition opens directories only", what=f"vault {where.url}")
    return local.LocalBackend(where)


@contextlib.contextmanager
def storage_failures(where: str, name: str) -> Iterator[None]:
    """Storage failures while a vault is created or opened, as the errors users see: the data
    path's (:func:`~vmvault.dataplane.chunkstore.space_errors`: credentials refused or missing,
    no bucket, no answer, no space), else ``VAULT_CREATE_FAILED``."""
    try:
        with space_errors(where):
            yield
    except StorageError as exc:
        raise VaultCreateFailed(str(exc), name=name, path=where) from exc


class _Undo:
    """Removes what a failed :meth:`VaultService.create` made: the directories it created
    (or the contents of the empty vault directory it was given) and the key file."""

    def __init__(self, target: Path, key_file: Path | None) -> None:
        self.target = target
        self.target_made = first_missing(target)
        self.key_file = key_file
        self.keys_made = first_missing(key_file.parent) if key_file is not None else None

    def __call__(self) -> None:
        if self.target_made is not None:
            shutil.rmtree(self.target_made, ignore_errors=True)
        elif self.target.is_dir():  # it was empty before
            for child in self.target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        if self.key_file is not None:
            self.key_file.unlink(missing_ok=True)  # it did not exist before (checked)
        if self.keys_made is not None:
            shutil.rmtree(self.keys_made, ignore_errors=True)


def add_default_host(uow: UnitOfWork, location: str, now: datetime) -> None:
    """A vault of the default location gets the local host (``qemu:///system``) when that
    location has none yet, unless the URI is known already — also when another ``vault
    create`` or ``attach`` added it meanwhile (two at once on PostgreSQL both found no host;
    the second failed on the URI's key: ``HOST_EXISTS`` is what :meth:`hosts.add` says now)."""
    if location == DEFAULT_LOCATION and not uow.hosts.all(DEFAULT_LOCATION):
        with contextlib.suppress(HostExists):
            uow.hosts.add(DEFAULT_HOST_URI, DEFAULT_LOCATION, None, now)
