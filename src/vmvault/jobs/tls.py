"""TLS for ``vmvault serve`` (docs/server.md, "TLS").

Listening on loopback, the API speaks plain HTTP unless a certificate is given. Listening on
anything else — another address, ``0.0.0.0``, ``::``, a host name — it speaks HTTPS only:

* with ``--tls-cert``/``--tls-key`` (or ``VMVAULT_TLS_CERT``/``VMVAULT_TLS_KEY``): that PEM
  certificate (chain) and its key;
* with neither: a self-signed certificate and key in ``$VMVAULT_HOME/tls`` (``cert.pem``,
  ``key.pem``, mode 0600), generated the first time and reused after, so that clients that
  pinned it keep trusting it. Its SHA-256 fingerprint is printed at each start-up to be
  compared with what a client sees (``openssl x509 -noout -fingerprint -sha256``).

Both are loaded before the port is bound: a missing, unreadable or mismatched pair is
``TLS_CERTIFICATE_INVALID`` (exit 2) and nothing has started.

The generated certificate: ECDSA P-256, valid for 5 years, its subject alternative names
``localhost``, this host's names, 127.0.0.1, ::1 and the listen address when it is one.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vmvault.config import ListenAddress
from vmvault.domain.errors import TlsCertificateInvalid

VALID_FOR = timedelta(days=5 * 365)


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    #: ``AB:CD:…``: the SHA-256 of the (first) certificate's DER form.
    fingerprint: str
    generated: bool


def choose(
    address: ListenAddress, home: Path, cert: Path | None, key: Path | None
) -> TlsFiles | None:
    """The certificate and key to serve ``address`` with; None: plain HTTP (loopback, none
    given). Raises :class:`TlsCertificateInvalid` for a pair that cannot be used."""
    if cert is not None and key is not None:
        return load(cert, key, generated=False)
    if address.loopback:
        return None
    directory = home / "tls"
    cert, key = directory / "cert.pem", directory / "key.pem"
    if not (cert.exists() and key.exists()):
        try:
            generate(cert, key, address)
        except OSError as exc:
            why = f"a self-signed pair cannot be written: {_why(exc)}"
            raise TlsCertificateInvalid(why, cert=str(cert), key=str(key)) from None
    return load(cert, key, generated=True)


def load(cert: Path, key: Path, *, generated: bool) -> TlsFiles:
    """Check that ``cert`` and ``key`` are a usable pair (as the server will load them)."""
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        first = ssl.PEM_cert_to_DER_cert(_first_pem(cert.read_text()))
    except (OSError, ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
        raise TlsCertificateInvalid(_why(exc), cert=str(cert), key=str(key)) from None
    return TlsFiles(cert, key, fingerprint(first), generated)


def fingerprint(der: bytes) -> str:
    import hashlib

    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def generate(cert: Path, key: Path, address: ListenAddress) -> None:
    """Write a new self-signed certificate and its key (tmp + rename, the key 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname()
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in _host_names(host)]
    ips = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    try:
        listen_ip = ipaddress.ip_address(address.host)
        if not listen_ip.is_unspecified:
            ips.add(listen_ip)
    except ValueError:
        names.append(x509.DNSName(address.host))
    names += [x509.IPAddress(ip) for ip in sorted(ips, key=str)]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"vmvault on {host}"[:64])])
    now = datetime.now(UTC)
    public = private.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(private, hashes.SHA256())
    )
    key_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(key, key_pem, 0o600)
    _write(cert, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def _host_names(host: str) -> list[str]:
    names = ["localhost"]
    for name in (host, socket.getfqdn()):
        if name and name not in names and all(p.isalnum() or p in "-." for p in name):
            names.append(name)
    return names


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _first_pem(text: str) -> str:
    end = "-----END CERTIFICATE-----"
    start = text.find("-----BEGIN CERTIFICATE-----")
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        raise ValueError("no PEM certificate in the file")
    return text[start : stop + len(end)]


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError):
        return f"{exc.strerror or exc} ({exc.filename})" if exc.filename else str(exc)
    if isinstance(exc, ssl.SSLError):
        return exc.reason.lower().replace("_", " ") if exc.reason else str(exc)
    return str(exc)
