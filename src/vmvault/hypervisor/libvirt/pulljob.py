"""The pull-specific parts of a libvirt backup job (domain/pull.py): which disks can be pulled
and what their exports and scratch files are called, the port the job's NBD server listens
on, and whether a running job is ours.

* **Only image files.** A pull puts each disk's scratch file next to its image on the host
  (``IMAGE.vmvault-<POINT>.scratch``): a ``type='block'`` disk would get one under ``/dev``
  (devtmpfs), a ``type='volume'`` or network disk a path that means nothing.  Such a disk is
  refused before the guest is touched (:func:`pulled_disks`: ``PULL_DISK_NOT_FILE``).
* **The port.** libvirt needs one given; :func:`begin_on_a_port` draws it at random from
  :data:`~vmvault.domain.pull.PULL_PORTS` and tries another (at most :data:`PORT_TRIES` in
  all) when QEMU finds it in use and the attempt created nothing.
* **Ownership.** A job is the live backup's when its server is the address and port it
  began and its exports carry its point (:func:`is_our_pull`); the clean-up after a crash
  asks the same of the point of the VM's unfinished backup in the journal
  (:mod:`~vmvault.hypervisor.libvirt.stale`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import libvirt

from vmvault.domain.errors import PullDiskNotFile
from vmvault.domain.pull import PULL_PORTS, PullTarget, pulled_for
from vmvault.hypervisor.libvirt.connection import error_message
from vmvault.hypervisor.libvirt.domxml import DomainDisk
from vmvault.hypervisor.libvirt.jobcontrol import BackupServer
from vmvault.hypervisor.nbd import NbdTls

#: How many ports of :data:`~vmvault.domain.pull.PULL_PORTS` a pull tries to begin its job on.
PORT_TRIES = 3


def pulled_disks(
    pull: PullTarget, disks: Iterable[DomainDisk], wanted: Iterable[str], *, vm: str, uri: str
) -> dict[str, tuple[str, str]]:
    """target → (export name, scratch file on the host) of each disk in ``wanted``;
    ``PULL_DISK_NOT_FILE`` when one of them is not an image file."""
    chosen = set(wanted)
    out: dict[str, tuple[str, str]] = {}
    refused: list[str] = []
    for d in disks:
        if d.target not in chosen:
            continue
        if d.type != "file" or not d.file:
            refused.append(f"{d.target} ({d.type}{f': {d.path}' if d.path else ''})")
            continue
        out[d.target] = (pull.export(d.target), pull.scratch(d.file))
    if refused:
        raise PullDiskNotFile(vm=vm, uri=uri, disks=", ".join(refused))
    return out


def begin_on_a_port(
    pull: PullTarget, begin: Callable[[tuple[str, int]], None], created: Callable[[], bool]
) -> NbdTls:
    """``begin((address, port))`` on a port drawn from ``PULL_PORTS``; another one when QEMU
    says it is in use and ``created()`` says the attempt left nothing (no checkpoint).  The
    last attempt's ``libvirtError`` propagates.  Returns where the job serves."""
    ports = random.sample(PULL_PORTS, PORT_TRIES)
    for attempt, port in enumerate(ports, 1):
        try:
            begin((pull.address, port))
        except libvirt.libvirtError as exc:
            in_use = "in use" in error_message(exc).lower()
            if in_use and attempt < len(ports) and not created():
                continue
            raise
        return NbdTls(pull.address, port, pull.certificates)
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


def is_our_pull(server: BackupServer, tls: NbdTls, pull: PullTarget) -> bool:
    """The running job's server is the one the live pull began: its address and port, and
    exports named for its point."""
    return (server.address, server.port) == (tls.address, tls.port) and pulled_for(
        server.exports, pull.token
    )


__all__ = ["PORT_TRIES", "begin_on_a_port", "is_our_pull", "pulled_disks"]
