"""API tokens and the server's TLS certificate (docs/server.md, "Authentication" and "TLS")."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class TokenExists(VmvaultError):
    code = "TOKEN_EXISTS"
    message = "a token named {name!r} already exists"
    remedy = (
        "Choose another name ('vmvault token list' shows them). A revoked token keeps its "
        "name, so that the audit log's entries name one token each."
    )
    kind = "usage"


class TokenNotFound(VmvaultError):
    code = "TOKEN_NOT_FOUND"
    message = "no token named {name!r}"
    remedy = "List tokens with 'vmvault token list'."
    kind = "usage"


class TlsCertificateInvalid(VmvaultError):
    code = "TLS_CERTIFICATE_INVALID"
    message = "the TLS certificate {cert} and key {key} cannot be used"
    remedy = (
        "Give a PEM certificate (--tls-cert, VMVAULT_TLS_CERT) and the PEM private key it was "
        "issued for (--tls-key, VMVAULT_TLS_KEY), both readable by vmvault; or give neither "
        "and vmvault generates a self-signed pair in VMVAULT_HOME/tls."
    )
    kind = "usage"
