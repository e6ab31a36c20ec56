"""What a restore needs: defining, switching and testing VMs, the host's files, and the
writers of disk images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from vmvault.dataplane.index import DiskIndex
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.instant import CopyState
from vmvault.domain.restore import DomainShape, FreeSpace, LiveDomain, RestorePlan, XmlNic


class RestoreDriver(Protocol):
    """What a restore needs from the hypervisor (``vmvault.hypervisor.libvirt.restore``;
    in memory: ``vmvault.hypervisor.memory.restore``).

    Failures are :class:`~vmvault.domain.errors.VmvaultError` s naming the VM:
    ``RESTORE_SHUTDOWN_FAILED``, ``RESTORE_DEFINE_FAILED`` (define and undefine),
    ``RESTORE_START_FAILED``, ``RESTORE_VERIFY_FAILED`` (``image_size``), ``HOST_UNREACHABLE``.
    """

    def is_local(self, uri: str) -> bool: ...
    def default_dir(self, uri: str) -> Path:
        """The host's default image directory (pool ``default``, else /var/lib/libvirt/images)."""

    def refresh_default_pool(self, uri: str) -> None: ...
    def dir_problem(self, path: Path) -> str | None:
        """Why ``path`` cannot take restored disks (not writable, QEMU cannot enter it)."""

    def nic_problem(self, uri: str, nic: XmlNic) -> str | None:
        """Why ``nic`` cannot be attached as it was on ``uri`` (its network/bridge is gone)."""

    def used_macs(self, uri: str) -> set[str]: ...
    def inspect(self, xml: str) -> DomainShape: ...
    def render(self, xml: str, plan: RestorePlan) -> str: ...
    def domain_named(self, uri: str, name: str) -> str | None: ...
    def domain(self, uri: str, uuid: str) -> LiveDomain | None:
        """The domain as defined now (``None``: the host has no such domain)."""

    def shutdown(self, uri: str, uuid: str, timeout: float) -> str:
        """Shut the domain off (agent, else ACPI; forced after ``timeout`` s; a paused
        domain at once); returns how, for the job log."""

    def undefine(self, uri: str, uuid: str) -> None:
        """Undefine a shut-off domain with its checkpoint metadata and managed-save image,
        keeping NVRAM and TPM state (``--replace`` defines the same VM again)."""

    def define(self, uri: str, xml: str) -> str:
        """Define (or redefine) the domain; returns its uuid."""

    def start(self, uri: str, uuid: str) -> None: ...
    def wait_for_agent(self, uri: str, uuid: str, timeout: float) -> bool:
        """True once the guest agent answers; False when the domain stops or time runs out."""

    def guest_filesystems(self, uri: str, uuid: str) -> list[dict[str, Any]] | None:
        """``guest-get-fsinfo`` now, or ``None`` when the agent does not answer."""

    def console_tail(self, uri: str, uuid: str, lines: int = 20) -> str: ...
    def remove(self, uri: str, uuid: str) -> None:
        """Destroy and undefine a domain with its metadata, NVRAM and TPM state; a domain
        that is gone already is not an error."""

    def image_size(self, path: Path, fmt: str, target: str) -> int:
        """Virtual size of the image at ``path`` as QEMU reads it (a qcow2 must also pass
        its check), else ``RESTORE_VERIFY_FAILED``."""


class HostFiles(Protocol):
    """The file system of the host whose VM is restored: every file a restore makes,
    moves or removes outside the vault goes through this port (``vmvault.hypervisor.files``;
    in memory: ``vmvault.hypervisor.memory.files``).

    Paths are absolute.  A failure is an :class:`OSError` with its ``errno``
    (``FileNotFoundError``, ``FileExistsError``, ``EXDEV``, ``ENOSPC`` …); nothing is retried.
    "Durable" means the change survives a power loss once the call has returned (the
    directory holding it is synced), which is what start-up recovery relies on.
    """

    def exists(self, path: Path) -> bool:
        """Anything at ``path``: a file, a directory or a symlink (also a dangling one)."""

    def free_space(self, path: Path) -> FreeSpace:
        """The file system ``path`` is on, or would be on once created."""

    def make_dirs(self, path: Path) -> list[Path]:
        """Create ``path`` and its missing parents, mode 0755 whatever the umask (QEMU must
        traverse them), durable; returns the directories made, outermost first."""

    def remove_dir(self, path: Path) -> bool:
        """Remove ``path`` if it is an empty directory; False when it is missing or not
        empty (nothing done)."""

    def rename(self, src: Path, dst: Path) -> None:
        """Move ``src`` onto ``dst`` (replacing it): atomic — callers only rename within one
        directory, so within one file system (``EXDEV`` otherwise) — and durable."""

    def symlink(self, link: Path, target: Path) -> None:
        """Make ``link`` point at ``target``, durable; ``FileExistsError`` if ``link`` exists."""

    def copy(self, src: Path, dst: Path) -> None:
        """Copy the contents of file ``src`` to ``dst`` (created or replaced); an unreadable
        ``src`` raises and leaves no ``dst``."""

    def remove(self, path: Path) -> bool:
        """Remove the file or symlink at ``path``; False when nothing was there."""

    def names(self, directory: Path, prefix: str) -> list[Path]:
        """The entries of ``directory`` whose names start with ``prefix``, sorted; [] when the
        directory does not exist."""


class WrittenImage(Protocol):
    """What writing one disk image reports (``dataplane.restore.RestoreResult``)."""

    @property
    def bytes_written(self) -> int: ...
    @property
    def chunks_written(self) -> int: ...
    @property
    def chunks_zero(self) -> int: ...
    @property
    def seconds(self) -> float: ...


class DiskWriter(Protocol):
    """Writes one disk of a point as an image on the host: ``dataplane.restore.restore_disk``.

    The image is written to a partial file ``.<name>.tmp.<pid>.<hex>`` next to ``target``,
    synced and renamed onto it; on any failure the partial file is removed (a killed process
    leaves it: recovery removes it by that name).  Every chunk is checked against its id as it
    is read (``CHUNK_CORRUPT``, ``CHUNK_MISSING``); ``cancel()`` is asked between chunks and a
    True raises ``Cancelled``.
    """

    def __call__(
        self,
        store: VaultStore,
        index: DiskIndex,
        target: Path,
        *,
        fmt: str,
        workers: int,
        overwrite: bool,
        progress: Callable[[int, int], None] | None,
        cancel: Callable[[], bool] | None,
    ) -> WrittenImage: ...


class InstantDriver(Protocol):
    """What an instant restore needs from the hypervisor beyond a restore's
    (``vmvault.hypervisor.libvirt.instant``; docs/restore.md, "Instant recovery").

    Failures are ``INSTANT_COPY_FAILED`` (overlay, copy, pivot) or ``RESTORE_VERIFY_FAILED``
    (``commit_overlay``) naming the VM or disk.
    """

    def render(self, xml: str, overlays: dict[str, Path], socket: Path) -> str:
        """``xml`` with each disk of ``overlays`` on its overlay, backed by the export at
        ``socket`` (export name = the disk's target), pausing the guest on I/O errors."""

    def make_overlay(self, overlay: Path, socket: Path, export: str, size: int) -> None:
        """A new qcow2 overlay of ``size`` bytes backed by export ``export``, QEMU's to open."""

    def allow_qemu(self, path: Path) -> None:
        """Let QEMU's user open ``path`` (the export's socket)."""

    def commit_overlay(self, overlay: Path, base: Path, fmt: str, target: str) -> None:
        """Write the overlay's blocks into ``base`` (its backing switched from the export)."""

    def sources(self, uri: str, uuid: str) -> dict[str, str | None]:
        """Each disk's source file in the running (else defined) domain: target → path."""

    def start_copy(self, uri: str, uuid: str, target: str, dest: Path, fmt: str) -> None:
        """Start a full (flattening) copy of the running disk ``target`` into new ``dest``."""

    def copy_state(self, uri: str, uuid: str, target: str) -> CopyState: ...
    def pivot(self, uri: str, uuid: str, target: str, timeout: float = 60.0) -> None:
        """Switch ``target`` to its in-sync copy; returns once the domain uses it."""

    def abort_copy(self, uri: str, uuid: str, target: str) -> None: ...
    def paused_on_error(self, uri: str, uuid: str) -> bool: ...
    def resume(self, uri: str, uuid: str) -> None:
        """Resume a paused domain (its failed I/O is retried)."""

    def destroy(self, uri: str, uuid: str) -> None:
        """Power the domain off at once, keeping its definition (nothing if it is off)."""
