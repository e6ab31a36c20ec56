"""Pulling: backing up the VMs of a libvirt host that no node runs on, over NBD with TLS.

**Why.** A node reads a VM's disks on their own host, through the unix socket of libvirt's
backup job (domain/placement.py).  Where no vmvault can run on a host (an appliance, a host
whose operator allows nothing but libvirtd), its VMs would have no backup at all.  libvirt's
pull-mode backup can serve its export on TCP instead, with TLS (``<server transport='tcp'
tls='yes' name=… port=…/>``, QEMU's ``backup_tls_x509_cert_dir``): any node can then read it
over the network, authenticated both ways by certificates of the host's CA.

**The operator's mark.** ``vmvault host add URI --pull-tls DIR`` says the host is *pulled
from*: DIR is this node's NBD client PKI directory, as libnbd reads it
(``nbd_set_tls_certificates``: :data:`PULL_FILES`).  The backups of its VMs then run on any
node (not the node of the host: there is none); every other job that touches a VM's disks
(restore, restore test, a backup set) is still refused with ``HOST_NOT_SERVED``.

**No pull without TLS.**  The client requires TLS (libnbd ``TLS_REQUIRE``: a server that
does not offer it is refused, never read in plain text) and verifies the server's certificate
against DIR's CA and the address; the host verifies the client's (``backup_tls_x509_verify``).
A failure is ``PULL_TLS_FAILED``.  The address QEMU listens on and the puller connects to is
the host name of the host's URI (:func:`nbd_address`): the name libvirt's own connection
reaches, which the server certificate must carry.

**Which jobs are vmvault's.** A pull job's exports are named ``vmvault-<target>``
(:data:`EXPORT_PREFIX`): the clean-up after a dead process recognises its job on the remote
host by that, as a local job by its socket under the work directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from vmvault.domain.errors import InvalidInput
from vmvault.domain.host_uri import uri_authority
from vmvault.domain.inputs import check_printable, quoted

#: What a pulling node's client PKI directory holds (libnbd's names, GnuTLS x509 as QEMU's).
PULL_FILES = ("ca-cert.pem", "client-cert.pem", "client-key.pem")
#: The export name of disk ``vda`` in a pull job is ``vmvault-vda``.
EXPORT_PREFIX = "vmvault-"
#: The TCP ports a pull job's NBD server may listen on (libvirt needs one given; 10809 is
#: NBD's own, and 64 of them let that many pulls run on one host at once).
PULL_PORTS = range(10809, 10873)

#: ``[user@]host[:port]``, a URI's authority (an IPv6 host in brackets).
_AUTHORITY = re.compile(r"(?:[^@]*@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\[\]]*)(?::[0-9]*)?", re.ASCII)
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\]", re.ASCII)


@dataclass(frozen=True)
class PullTarget:
    """Where and how a pull reads: the NBD server's address and the client PKI directory."""

    address: str
    certificates: str

    def export(self, target: str) -> str:
        return f"{EXPORT_PREFIX}{target}"


def nbd_address(uri: str) -> str:
    """The host name of libvirt URI ``uri`` (``h1.example`` of ``qemu+tls://h1.example/
    system``; an IPv6 address without its brackets): where a pull job's NBD server listens.
    A URI without a host (``qemu:///system``) is refused: that host is this one."""
    m = _AUTHORITY.fullmatch(uri_authority(uri) or "")
    host = m.group("host") if m else ""
    if not host or not _HOST.fullmatch(host):
        raise InvalidInput(
            "a pulled host is reached over the network: give its URI with a host name "
            "(qemu+tls://HOST/system); a host without one is this machine, whose node reads "
            "its disks directly",
            what=f"URI {quoted(uri)}",
        )
    return host.strip("[]")


def validate_pull_dir(value: str) -> str:
    """An absolute, normalised directory path (the files in it are checked where it is read:
    the node that pulls)."""
    value = check_printable(value.strip(), "pull TLS directory", max_length=4096)
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts or str(path) != value.rstrip("/"):
        raise InvalidInput(
            f"give an absolute directory without '..' holding {', '.join(PULL_FILES)}",
            what=f"pull TLS directory {quoted(value)}",
        )
    return str(path)


__all__ = [
    "EXPORT_PREFIX",
    "PULL_FILES",
    "PULL_PORTS",
    "PullTarget",
    "nbd_address",
    "validate_pull_dir",
]
