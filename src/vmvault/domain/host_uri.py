"""libvirt host URIs: which vmvault accepts (:func:`validate_uri`, docs/input.md), the
parameters libvirt reads in them (:func:`uri_params`), and how two name the same host
(:func:`host_key`: the key hosts are stored and compared by, ``VMVAULT_NODE_HOST`` too)."""

from __future__ import annotations

import re
from urllib.parse import unquote

from vmvault.domain.errors import HostUriRunsCommand, InvalidInput
from vmvault.domain.inputs import check_printable, quoted

DEFAULT_HOST_URI = "qemu:///system"

#: ``driver[+transport]://[user@][host[:port]]/path[?query]``
_URI = re.compile(
    r"(?P<driver>[a-z][a-z0-9]*)(?:\+(?P<transport>[a-z0-9]+))?://"
    r"(?P<authority>[^/?#\s]*)(?P<path>/[^?#\s]*)(?:\?(?P<query>[^#\s]*))?",
    re.ASCII,
)
MAX_URI = 1024
#: libvirt drivers vmvault talks to: QEMU/KVM, and libvirt's built-in ``test`` driver.
DRIVERS = {"qemu", "test"}
#: Transports that only open a connection (``None``: a local socket).
TRANSPORTS = {None, "unix", "ssh", "libssh", "libssh2", "tcp", "tls"}
#: What makes libvirt run a command of the URI's choosing: the ``ext`` transport, and the
#: ``command`` (local) and ``netcat`` (remote) parameters of the ssh transports.
COMMAND_TRANSPORTS = {"ext"}
COMMAND_PARAMETERS = {"command", "netcat"}
#: The parameter that turns off libvirt's check of the server (the TLS certificate against
#: the CA, the SSH host key against known_hosts): a host that does not verify is refused.
NO_VERIFY = "no_verify"
#: The libssh/libssh2 transports' host-key policy: only ``normal`` (an unknown or changed
#: key refused) checks the host; ``auto`` trusts a new key, ``ignore`` any.
KNOWN_HOSTS_VERIFY = "known_hosts_verify"


def validate_uri(uri: str, *, allow_command: bool = False) -> str:
    """Accept libvirt connection URIs such as ``qemu:///system`` or ``qemu+ssh://h/system``.

    Drivers :data:`DRIVERS`, transports :data:`TRANSPORTS`; a URI that makes libvirt run a
    command (:data:`COMMAND_TRANSPORTS`, :data:`COMMAND_PARAMETERS`) only with
    ``allow_command`` (``host add --allow-command``), see docs/input.md.
    """
    uri = check_printable(uri.strip(), "URI", max_length=MAX_URI)
    m = _URI.fullmatch(uri)
    hint = "expected a libvirt URI such as qemu:///system or qemu+ssh://HOST/system"
    if not m or m.group("path") == "/":
        raise InvalidInput(hint, what=f"URI {quoted(uri)}")
    if m.group("driver") not in DRIVERS:
        raise InvalidInput(
            f"vmvault backs up QEMU/KVM: use a qemu:// URI ({hint})", what=f"URI {quoted(uri)}"
        )
    transport = m.group("transport")
    pairs = uri_params(m.group("query") or "")
    if any(not (k + v).isprintable() for k, v in pairs):  # libvirt would cut a name at a NUL
        raise InvalidInput(
            "a parameter holds a control character once decoded", what=f"URI {quoted(uri)}"
        )
    params = {k.lower() for k, _ in pairs}
    runs = transport in COMMAND_TRANSPORTS or bool(params & COMMAND_PARAMETERS)
    if runs and not allow_command:
        raise HostUriRunsCommand(uri=uri)
    if any(k.lower() == NO_VERIFY and v.strip() != "0" for k, v in pairs):
        raise InvalidInput(
            "a host is reached only with its identity checked: remove no_verify (libvirt then "
            "verifies the server's TLS certificate against its CA, or the SSH host key "
            "against known_hosts)",
            what=f"URI {quoted(uri)}",
        )
    if any(k.lower() == KNOWN_HOSTS_VERIFY and v.strip().lower() != "normal" for k, v in pairs):
        raise InvalidInput(
            "a host is reached only with its identity checked: known_hosts_verify must be "
            "'normal' (an unknown or changed SSH host key refused)",
            what=f"URI {quoted(uri)}",
        )
    if transport not in TRANSPORTS | COMMAND_TRANSPORTS:
        raise InvalidInput(
            "use no transport or one of " + ", ".join(sorted(t for t in TRANSPORTS if t)),
            what=f"URI {quoted(uri)}",
        )
    return uri


def uri_transport(uri: str) -> str | None:
    """The transport of a libvirt URI (``tls`` of ``qemu+tls://h/system``; None: none, or
    not a URI :func:`validate_uri` would take)."""
    m = _URI.fullmatch(uri.strip())
    return m.group("transport") if m else None


def uri_authority(uri: str) -> str | None:
    """The authority of a libvirt URI (``root@h1:22`` of ``qemu+ssh://root@h1:22/system``; ``""``
    for a local URI; None: not a URI :func:`validate_uri` would take)."""
    m = _URI.fullmatch(uri.strip())
    return m.group("authority") if m else None


def uri_params(query: str) -> list[tuple[str, str]]:
    """At least every parameter libvirt reads in a URI's query (``virURIParseParams``: split on
    ``&``, or on ``;`` where no ``&`` follows; names and values percent-decoded).  Both
    separators are split here always — a stricter parse than libvirt's —, so that no spelling
    (``no%5Fverify``, ``a=b;no_verify=1``) hides a parameter from the checks above; a decoded
    control character (``command%00x``, which libvirt reads as ``command``) is refused there."""
    pairs = []
    for part in re.split(r"[&;]", query):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs


def host_key(uri: str) -> str:
    """A libvirt URI as hosts are compared and stored (``VMVAULT_NODE_HOST``, ``host add``):
    as written, but for surrounding blanks, trailing slashes (``qemu:///system/``) and the
    case of the scheme; ``qemu:///`` stays as it is."""
    scheme, sep, rest = uri.strip().partition("://")
    path = rest.rstrip("/")
    return f"{scheme.lower()}{sep}{path or rest}"


def same_host(a: str, b: str) -> bool:
    """Whether two libvirt URIs name the same host (:func:`host_key`)."""
    return host_key(a) == host_key(b)
