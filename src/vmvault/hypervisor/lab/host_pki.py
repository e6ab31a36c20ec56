"""Certificates for the lab host's ``qemu+tls`` listener: a CA of the lab, the server's
certificate and a client's, laid out as libvirt reads them (docs/lab.md, "A second libvirt
host"; https://libvirt.org/kbase/tlscerts.html).

``write_pki(DIR)`` writes::

    DIR/ca/cacert.pem, cakey.pem            the lab's CA (its key never leaves DIR/ca)
    DIR/server/servercert.pem, serverkey.pem the libvirtd's (libvirtd.conf's cert_file, key_file)
    DIR/client/cacert.pem, clientcert.pem, clientkey.pem
                                            a client's: the URI's ``?pkipath=DIR/client``
    DIR/nbd-client/ca-cert.pem, client-cert.pem, client-key.pem
                                            the same client's, as libnbd reads them: the
                                            ``host add --pull-tls`` of a pulling node
    QEMU_DIR/ca-cert.pem, server-cert.pem, server-key.pem
                                            the server's, as QEMU reads them: qemu.conf's
                                            ``backup_tls_x509_cert_dir`` (domain/pull.py)

The last two are the first two under the file names of GnuTLS's x509 directories (libvirt's
qemu.conf documents QEMU's; ``nbd_set_tls_certificates`` libnbd's).  QEMU runs as
``libvirt-qemu`` and opens its files itself: QEMU_DIR is ``root:libvirt-qemu`` 0750, its key
0640 (as Debian's ``/etc/pki/qemu`` is meant to be set up), outside DIR (0700).

RSA 2048 keys, the extensions libvirt checks (``virNetTLSContextCheckCert*``): the CA with
``basicConstraints CA:TRUE`` and ``keyCertSign``; each leaf ``CA:FALSE``, ``digitalSignature``
and ``keyEncipherment``, and the purpose ``serverAuth`` or ``clientAuth``.  The server's
subject alternative names are ``localhost`` and ``127.0.0.1``: the client checks the URI's
host name against them.  Keys are written mode 0600 (a new file, renamed over the old), in
directories of mode 0700.  Lab only: a production CA is the
operator's.
"""

from __future__ import annotations

import grp
import ipaddress
import os
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
    #: the same client's certificates as libnbd reads them (``host add --pull-tls``)
    nbd_client: Path | None = None
    #: the server's as QEMU reads them (qemu.conf's ``backup_tls_x509_cert_dir``)
    qemu_server: Path | None = None


def write_pki(directory: Path, org: str = "vmvault lab", qemu_dir: Path | None = None) -> HostPki:
    """A new CA named ``org`` and the server's and a client's certificates in ``directory``;
    also the client's for libnbd and, with ``qemu_dir``, the server's for QEMU."""
    pki = HostPki(
        directory / "ca", directory / "server", directory / "client",
        directory / "nbd-client", qemu_dir,
    )  # fmt: skip
    make_dirs(directory.parent)  # the host's own directory: QEMU must traverse it
    for d in (directory, pki.ca, pki.server, pki.client, pki.nbd_client):
        assert d is not None
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
    _gnutls_dir(pki.client, pki.nbd_client, "client")
    if qemu_dir is not None:
        make_dirs(qemu_dir, 0o750)
        _gnutls_dir(pki.server, qemu_dir, "server")
        try:
            gid = grp.getgrnam("libvirt-qemu").gr_gid
        except KeyError:  # no such group: QEMU runs as root
            gid = 0
        for path, mode in ((qemu_dir, 0o750), (qemu_dir / "server-key.pem", 0o640)):
            os.chown(path, 0, gid)
            path.chmod(mode)
    return pki


def _gnutls_dir(source: Path, target: Path | None, stem: str) -> None:
    """``source``'s CA, certificate and key (libvirt's names) in ``target`` under GnuTLS's
    x509 directory names (``ca-cert.pem``, ``STEM-cert.pem``, ``STEM-key.pem``)."""
    assert target is not None
    (target / "ca-cert.pem").write_bytes((source.parent / "ca" / "cacert.pem").read_bytes())
    (target / f"{stem}-cert.pem").write_bytes((source / f"{stem}cert.pem").read_bytes())
    write_private(target / f"{stem}-key.pem", (source / f"{stem}key.pem").read_bytes())


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
