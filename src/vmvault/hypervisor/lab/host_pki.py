"""Certificates for the lab host's ``qemu+tls`` listener: a CA of the lab, the server's
certificate and a client's, laid out as libvirt reads them (docs/lab.md, "A second libvirt
host"; https://libvirt.org/kbase/tlscerts.html).

``write_pki(DIR)`` writes::

    DIR/ca/cacert.pem, cakey.pem            the lab's CA (its key never leaves DIR/ca)
    DIR/server/servercert.pem, serverkey.pem the libvirtd's (libvirtd.conf's cert_file, key_file)
    DIR/client/cacert.pem, clientcert.pem, clientkey.pem
                                            a client's: the URI's ``?pkipath=DIR/client``

RSA 2048 keys, the extensions libvirt checks (``virNetTLSContextCheckCert*``): the CA with
``basicConstraints CA:TRUE`` and ``keyCertSign``; each leaf ``CA:FALSE``, ``digitalSignature``
and ``keyEncipherment``, and the purpose ``serverAuth`` or ``clientAuth``.  The server's
subject alternative names are ``localhost`` and ``127.0.0.1``: the client checks the URI's
host name against them.  Keys are written mode 0600 (a new file, renamed over the old), in
directories of mode 0700.  Lab only: a production CA is the
operator's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vmvault.hypervisor.lab.fsutil import make_dirs, write_private

VALID_FOR = timedelta(days=365)


@dataclass(frozen=True)
class HostPki:
    ca: Path
    server: Path
    #: libvirt's ``pkipath`` of a client the lab's CA signed
    client: Path


def write_pki(directory: Path, org: str = "vmvault lab") -> HostPki:
    """A new CA named ``org`` and the server's and a client's certificates in ``directory``."""
    pki = HostPki(directory / "ca", directory / "server", directory / "client")
    make_dirs(directory.parent)  # the host's own directory: QEMU must traverse it
    for d in (directory, pki.ca, pki.server, pki.client):
        make_dirs(d, 0o700)
        d.chmod(0o700)  # also when it existed: only root reads the keys
    ca_key = _key()
    ca_name = _name(org, f"{org} CA")
    now = datetime.now(UTC)
    ca = (
        _builder(ca_name, ca_name, ca_key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (pki.ca / "cacert.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.ca / "cakey.pem", ca_key)
    (pki.client / "cacert.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for where, stem, purpose, alt in (
        (pki.server, "server", ExtendedKeyUsageOID.SERVER_AUTH, True),
        (pki.client, "client", ExtendedKeyUsageOID.CLIENT_AUTH, False),
    ):
        key = _key()
        builder = (
            _builder(_name(org, f"lab {stem}"), ca_name, key, now)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        )
        if alt:
            names: list[x509.GeneralName] = [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        (where / f"{stem}cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(where / f"{stem}key.pem", key)
    return pki


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(org: str, common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey, now: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    write_private(path, pem)
