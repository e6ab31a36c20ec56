"""The CLI's remote mode (``vmvault --server URL``, docs/server.md "Remote CLI"): what it
refuses before any request, and a server it cannot reach or trust."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class RemoteUnsupported(VmvaultError):
    code = "REMOTE_UNSUPPORTED"
    message = "'{command}' does not run against a server (--server / VMVAULT_SERVER)"
    remedy = (
        "Run it on the server host without --server (and with VMVAULT_SERVER unset); "
        "docs/server.md lists the commands the remote CLI runs."
    )
    kind = "usage"


class ServerUnreachable(VmvaultError):
    code = "SERVER_UNREACHABLE"
    message = "cannot reach the vmvault server at {url}: {why}"
    remedy = (
        "Check the URL (--server, VMVAULT_SERVER), that 'vmvault serve' runs there and that "
        "this host may connect to its port."
    )


class ServerUntrusted(VmvaultError):
    code = "SERVER_UNTRUSTED"
    message = "the TLS certificate of {url} is not trusted: {why}"
    remedy = (
        "Give the server's certificate (or its CA) as VMVAULT_SERVER_CA=PEM file, e.g. the "
        "self-signed $VMVAULT_HOME/tls/cert.pem of the server host; compare its fingerprint "
        "with the one 'vmvault serve' logged."
    )


class ProxyUnsupported(VmvaultError):
    code = "PROXY_UNSUPPORTED"
    message = "the proxy {proxy} (from {variable}) is not an http:// proxy"
    remedy = (
        "The remote CLI speaks plain HTTP to its proxy (the requests to an https:// server "
        "are tunnelled through it with CONNECT, still end-to-end TLS): give an http:// proxy "
        "in HTTPS_PROXY / HTTP_PROXY / ALL_PROXY, or add the server's host to NO_PROXY to "
        "reach it directly (a SOCKS or TLS proxy can be used through a local HTTP proxy in "
        "front of it)."
    )
    kind = "usage"


class LocalSocketReadOnly(VmvaultError):
    code = "LOCAL_SOCKET_READ_ONLY"
    message = "the local socket {socket} answers reads only, not {method} {path}"
    remedy = (
        "Run the change with the CLI on this host (it writes the catalog itself), or send it "
        "to the API's port with a token (docs/server.md, 'The local socket')."
    )
    kind = "usage"


class LocalSocketMismatch(VmvaultError):
    code = "LOCAL_SOCKET_MISMATCH"
    message = (
        "the server on {socket} serves another catalog or runs another vmvault version than "
        "the client's ({why})"
    )
    remedy = (
        "The CLI reads the catalog itself in this case. To have the server answer, give the "
        "CLI the server's VMVAULT_CATALOG_URL, or restart 'vmvault serve' after an upgrade."
    )
    kind = "usage"
