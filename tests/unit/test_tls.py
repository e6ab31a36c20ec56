"""The server's TLS pair (jobs/tls.py): none on loopback unless given, a self-signed pair
generated once beyond it and reused, a given pair checked before anything starts."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from vmvault.config import parse_listen
from vmvault.domain.errors import TlsCertificateInvalid
from vmvault.jobs import tls


def test_loopback_is_plain_http_unless_a_pair_is_given(tmp_path: Path) -> None:
    assert tls.choose(parse_listen("127.0.0.1:8470"), tmp_path, None, None) is None
    assert list(tmp_path.iterdir()) == []
    made = tls.choose(parse_listen("0.0.0.0:8470"), tmp_path / "a", None, None)
    assert made is not None
    given = tls.choose(parse_listen("127.0.0.1:8470"), tmp_path, made.cert, made.key)
    assert given is not None and not given.generated and given.fingerprint == made.fingerprint


def test_a_self_signed_pair_is_generated_once_then_reused(tmp_path: Path) -> None:
    address = parse_listen("192.0.2.10:8470")
    first = tls.choose(address, tmp_path, None, None)
    assert first is not None and first.generated
    assert (first.cert, first.key) == (tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem")
    assert first.key.stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate(first.cert.read_bytes())
    der = ssl.PEM_cert_to_DER_cert(first.cert.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    assert first.fingerprint == ":".join(digest[i : i + 2] for i in range(0, 64, 2))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", "::1", "192.0.2.10"} <= ips
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    again = tls.choose(address, tmp_path, None, None)
    assert again == first  # the same files, the same fingerprint: clients keep trusting it


def test_a_bad_pair_is_refused_with_its_code(tmp_path: Path) -> None:
    one = tls.choose(parse_listen("0.0.0.0:1"), tmp_path / "one", None, None)
    two = tls.choose(parse_listen("0.0.0.0:1"), tmp_path / "two", None, None)
    assert one is not None and two is not None and one.fingerprint != two.fingerprint
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        (one.cert, two.key, "key values mismatch"),  # a key of another certificate
        (tmp_path / "missing.pem", one.key, "No such file"),
        (garbage, one.key, ""),
        (one.key, one.key, ""),  # the key given as the certificate
    ]
    for cert, key, why in cases:
        with pytest.raises(TlsCertificateInvalid) as caught:
            tls.choose(parse_listen("127.0.0.1:1"), tmp_path, cert, key)
        err = caught.value
        assert err.code == "TLS_CERTIFICATE_INVALID" and err.kind == "usage"  # exit 2
        assert err.text.startswith(f"the TLS certificate {cert} and key {key} cannot be used")
        assert why in err.text, err.text


def test_a_home_where_no_pair_can_be_written_is_refused(tmp_path: Path) -> None:
    blocked = tmp_path / "home"
    blocked.mkdir()
    (blocked / "tls").write_text("a file where the directory would be\n")
    with pytest.raises(TlsCertificateInvalid, match="a self-signed pair cannot be written"):
        tls.choose(parse_listen("0.0.0.0:1"), blocked, None, None)
