"""Pulling: backing up the VMs of a libvirt host that no node runs on, over NBD with TLS.

**Why.** A node reads a VM's disks on their own host, through the unix socket of libvirt's
backup job (domain/placement.py).  Where no vmvault can run on a host (an appliance, a host
whose operator allows nothing but libvirtd), its VMs would have no backup at all.  libvirt's
pull-mode backup can serve its export on TCP instead, with TLS (``<server transport='tcp'
tls='yes' name=… port=…/>``, QEMU's ``backup_tls_x509_cert_dir``): any node can then read it
over the network, authenticated both ways by certificates of the host's CA.

**The operator's mark.** ``vmvault host add URI --pull-tls DIR`` (or, later, ``host update
URI --pull-tls DIR``; ``--no-pull-tls`` takes it off: services/host_pull.py) says the host is
*pulled from*: DIR is this node's NBD client PKI directory, as libnbd reads it
(``nbd_set_tls_certificates``: :data:`PULL_FILES`).  The backups of its VMs then run on any
node (not the node of the host: there is none); every other job that touches a VM's disks
(restore, restore test, a backup set) is still refused with ``HOST_NOT_SERVED``.

**No pull without TLS.**  The client requires TLS (libnbd ``TLS_REQUIRE``: a server that
does not offer it is refused, never read in plain text) and verifies the server's certificate
against DIR's CA and the address; the host verifies the client's (``backup_tls_x509_verify``).
A failure is ``PULL_TLS_FAILED``.  The address QEMU listens on and the puller connects to is
the host name of the host's URI (:func:`nbd_address`): the name libvirt's own connection
reaches, which the server certificate must carry.

**Which jobs are vmvault's.** A pull job's exports are named ``vmvault-<POINT>-<target>``
(:meth:`PullTarget.export`: POINT is the recovery point's id, which the backup's ``planned``
journal record holds before ``backupBegin``), its scratch files ``IMAGE.vmvault-<POINT>.scratch``.
The clean-up after a dead process ends a pull job on the remote host only when every export
carries the point of an unfinished backup of that VM in this catalog (:func:`pulled_for`) —
never on the ``vmvault-`` prefix alone, which another deployment's pull (or another tool's)
may carry too.  A local job is known by its socket under the work directory.

**The client directory** (:func:`pull_dir_problems`, over what the caller read with
``os.stat``): the three files, regular and readable by this process, ``client-key.pem``
readable by its owner only, and a directory nobody else may write to (else another user could
swap the CA the server is checked against).
"""

from __future__ import annotations

import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from vmvault.domain.errors import InvalidInput
from vmvault.domain.host_uri import uri_authority
from vmvault.domain.inputs import check_printable, quoted

#: What a pulling node's client PKI directory holds (libnbd's names, GnuTLS x509 as QEMU's).
PULL_FILES = ("ca-cert.pem", "client-cert.pem", "client-key.pem")
#: Every name a pull job gives (exports, scratch files) begins with it.
EXPORT_PREFIX = "vmvault-"
#: The file of :data:`PULL_FILES` that must be its owner's only.
PULL_KEY = "client-key.pem"
#: The TCP ports a pull job's NBD server may listen on (libvirt needs one given; 10809 is
#: NBD's own, and 64 of them let that many pulls run on one host at once).
PULL_PORTS = range(10809, 10873)

#: ``[user@]host[:port]``, a URI's authority (an IPv6 host in brackets).
_AUTHORITY = re.compile(r"(?:[^@]*@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\[\]]*)(?::[0-9]*)?", re.ASCII)
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\]", re.ASCII)


_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}", re.ASCII)


@dataclass(frozen=True)
class PullTarget:
    """Where and how a pull reads: the NBD server's address, the client PKI directory and
    the token that names the job's exports and scratch files (the point's id)."""

    address: str
    certificates: str
    token: str

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.token):
            raise InvalidInput("letters, digits and '-'", what=f"pull token {self.token!r}")

    @classmethod
    def of(cls, address: str, certificates: str, point: str | None) -> PullTarget:
        """The pull of recovery point ``point`` (None: a random token, which no journal
        holds: a clean-up after a crash then never ends that job)."""
        return cls(address, certificates, point or secrets.token_hex(6))

    def export(self, target: str) -> str:
        """The export name of disk ``target``: ``vmvault-<token>-<target>``."""
        return f"{EXPORT_PREFIX}{self.token}-{target}"

    def scratch(self, image: str) -> str:
        """The scratch file of the disk whose image is ``image``, next to it on the host."""
        return f"{image}.{EXPORT_PREFIX}{self.token}.scratch"


def pulled_for(exports: tuple[str, ...], point: str) -> bool:
    """The exports of a running backup job are those of the pull of recovery point ``point``
    (:meth:`PullTarget.export`): the clean-up's ownership rule for a remote job."""
    prefix = f"{EXPORT_PREFIX}{point}-"
    return (
        bool(point)
        and bool(exports)
        and all(e.startswith(prefix) and len(e) > len(prefix) for e in exports)
    )


def pull_dir_problems(
    directory: str, found: Mapping[str, tuple[int, bool] | None], dir_mode: int | None
) -> list[str]:
    """What is wrong with client PKI directory ``directory``: ``found`` maps each of
    :data:`PULL_FILES` to its ``(st_mode, readable by this process)`` or None (absent),
    ``dir_mode`` is the directory's ``st_mode`` (None: absent).  Empty when usable."""
    if dir_mode is None or not stat.S_ISDIR(dir_mode):
        return [f"it lacks {', '.join(PULL_FILES)} ({directory} is no directory)"]
    problems = []
    missing = [
        f
        for f in PULL_FILES
        if (entry := found.get(f)) is None or not stat.S_ISREG(entry[0]) or not entry[1]
    ]
    if missing:
        problems.append(
            f"it lacks {', '.join(missing)} (no such regular file readable by this process)"
        )
    key = found.get(PULL_KEY)
    if key is not None and key[0] & 0o044:
        problems.append(
            f"{PULL_KEY} is readable by its group or others (mode {stat.S_IMODE(key[0]):04o}): "
            f"chmod 600 it"
        )
    if dir_mode & 0o002:
        problems.append(
            f"the directory is writable by others (mode {stat.S_IMODE(dir_mode):04o}): chmod o-w it"
        )
    return problems


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


def backed_up_by(pull_tls: str | None) -> str:
    """How a host whose ``pull_tls`` is this is backed up, in words (``host update``'s
    output, ``HOST_JOBS_ACTIVE``)."""
    if pull_tls is None:
        return "backed up by its own node"
    return f"backed up by pulling over NBD with TLS ({pull_tls})"


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
    "PULL_KEY",
    "PULL_PORTS",
    "PullTarget",
    "backed_up_by",
    "nbd_address",
    "pull_dir_problems",
    "pulled_for",
    "validate_pull_dir",
]
