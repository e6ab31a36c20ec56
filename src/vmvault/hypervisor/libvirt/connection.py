"""Opening libvirt connections with our errors instead of libvirt's.

libvirt's default error handler prints every error to stderr; we silence it once and turn
failures into :class:`~vmvault.domain.errors.HostUnreachable` (``HostAuthFailed`` when the
TLS certificate or SSH key check failed) so no traceback reaches a user.
:func:`error_message` is how every adapter words a libvirt error in one of ours.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import libvirt

from vmvault.domain.errors import HostAuthFailed, HostUnreachable, VmDeleted
from vmvault.domain.host_uri import uri_transport

_silenced = False


def _silence() -> None:
    global _silenced
    if not _silenced:
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        _silenced = True


def error_message(exc: libvirt.libvirtError) -> str:
    """What a libvirt error says, as libvirt words it (``virGetLastError``'s message, else the
    exception's text): the ``detail`` every adapter puts in the error it raises."""
    return str(exc.get_error_message() or exc).strip()


#: What libvirt's TLS client says when the host refused this node's certificate (it closes
#: the session: ``virnetclient.c``); libvirt gives it no code of its own.
_TLS_REFUSED = ("Unable to read TLS confirmation", "server verification")


def _identity_refused(uri: str, exc: libvirt.libvirtError) -> bool:
    """Whether the connection failed on an identity check: libvirt's ``VIR_ERR_AUTH_FAILED``
    (the host's certificate did not verify, or SASL/polkit refused), or — for ``+tls`` — the
    host refusing this node's client certificate."""
    if exc.get_error_code() == libvirt.VIR_ERR_AUTH_FAILED:
        return True
    tls = uri_transport(uri) == "tls"
    return tls and any(s in error_message(exc) for s in _TLS_REFUSED)


def open_connection(uri: str) -> libvirt.virConnect:
    _silence()
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        if _identity_refused(uri, exc):
            raise HostAuthFailed(error_message(exc), uri=uri) from None
        raise HostUnreachable(error_message(exc), uri=uri) from None
    if conn is None:  # pragma: no cover - old bindings returned None
        raise HostUnreachable(uri=uri)
    return conn


@contextmanager
def connection(uri: str) -> Iterator[libvirt.virConnect]:
    conn = open_connection(uri)
    try:
        yield conn
    finally:
        with suppress(libvirt.libvirtError):
            conn.close()


def lookup_domain(conn: Any, uri: str, vm_uuid: str) -> Any:
    """The domain with ``vm_uuid``: ``VM_DELETED`` when the host has none, ``HOST_UNREACHABLE``
    when libvirt fails otherwise."""
    try:
        return conn.lookupByUUIDString(vm_uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise VmDeleted(vm=vm_uuid, host=uri) from None
        raise HostUnreachable(error_message(exc), uri=uri) from None
