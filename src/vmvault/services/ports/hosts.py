"""The hypervisor's read-only view for discovery and registration, and the lab's drivers
(guests, the object store) that only ``vmvault lab`` uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from vmvault.domain.inventory import AgentReport
from vmvault.domain.vm import DomainFacts


class Hypervisor(Protocol):
    """Read-only view of libvirt hosts that discovery and registration need."""

    def hostname(self, uri: str) -> str:
        """Connect and return the host's name; raise HostUnreachable on failure."""

    def list_domains(self, uri: str) -> list[DomainFacts]:
        """Every domain (running or not) of the host, as facts."""

    def domain_facts(self, uri: str, uuid: str) -> DomainFacts | None:
        """Current facts of one domain, ``None`` when the host has no such domain."""

    def agent_report(self, uri: str, uuid: str, timeout: int) -> AgentReport:
        """Ask the guest agent guest-ping then guest-info; never raises for a silent agent."""

    def pull_dir_problems(self, directory: str) -> list[str]:
        """What makes ``directory`` unusable as this node's NBD client PKI directory of a
        pulled host (domain/pull.py: its files, the key's and the directory's modes); empty
        when usable.  Reads no key."""


class LabDriver(Protocol):
    """Builds and runs the lab's test guests (only the ``vmvault lab`` commands use it).

    ``up``/``status``/``down`` act on the main libvirt host, or given ``uri`` on the lab's
    second host (any other URI is ``INVALID_INPUT``). ``host_up`` starts that second host,
    an independent libvirtd (idempotent); its document and ``host_status``'s hold ``state``
    (up, down or partial), ``uri`` (None when down), ``dir`` and ``pid``. ``host_down``
    destroys its domains, stops it and removes its directory: the domains' names, or None
    when there was no host.
    """

    def ensure_daemons(self, state_dir: Path) -> bool: ...
    def build(self, force: bool) -> str: ...
    def up(self, counts: dict[str, int], uri: str | None = None) -> list[dict[str, object]]: ...
    def status(self, uri: str | None = None) -> list[dict[str, object]]: ...
    def down(self, uri: str | None = None) -> list[str]: ...
    def host_up(self) -> dict[str, Any]: ...
    def host_status(self) -> dict[str, Any]: ...
    def host_down(self) -> list[str] | None: ...


class ObjectStoreLab(Protocol):
    """The lab's real S3 service (only ``vmvault lab storage`` uses it): one single-node Ceph
    cluster with the RADOS Gateway, everything under one directory.

    ``up`` is idempotent: a running cluster gives the same endpoint and keys, a partly running
    one has its missing daemons started. Its document holds at least ``endpoint``,
    ``access_key``, ``secret_key``, ``region`` and ``dir``. ``status`` has ``state`` (up, down
    or partial), ``dir``, ``endpoint`` (None before the first complete ``up``) and ``daemons``.
    ``down`` stops every daemon and removes the directory (False when there was none).
    Failures raise :class:`~vmvault.domain.errors.StorageLabFailed` with the daemon's log tail.
    """

    def up(self) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any]: ...
    def down(self) -> bool: ...


class CatalogLab(Protocol):
    """The lab's PostgreSQL catalog (only ``vmvault lab catalog`` and the tests use it): one
    Debian PostgreSQL cluster under one directory, reached on its unix socket only.

    ``up`` is idempotent (a stopped cluster is started with its data). ``status`` has
    ``state`` (up or down), ``dir``, ``url`` (a ``VMVAULT_CATALOG_URL``) and ``pid``; ``up``
    returns the same document. ``down`` stops the server and removes the directory (False when
    there was none). Failures raise :class:`~vmvault.domain.errors.lab.CatalogLabFailed`.
    """

    def up(self) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any]: ...
    def down(self) -> bool: ...
