"""The SigV4 signer against AWS's published values (:mod:`vmvault.storage.s3_sigv4`).

* AWS's Signature Version 4 test suite (``aws-sig-v4-test-suite``): key ``AKIDEXAMPLE``,
  region ``us-east-1``, service ``service``, 2015-08-30T12:36:00Z; cases ``get-vanilla``,
  ``get-vanilla-query-order-key-case`` and ``post-vanilla``.
* The Amazon S3 API Reference, "Signature Calculations for the Authorization Header:
  Transferring Payload in a Single Chunk", *Example: GET Object* (the first ten bytes of
  ``test.txt`` in ``examplebucket``, 2013-05-24T00:00:00Z).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vmvault.storage.s3_sigv4 import EMPTY_SHA256, Signer, canonical_query, quote_path

SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_AT = datetime(2015, 8, 30, 12, 36, tzinfo=UTC).timestamp()
SUITE_SCOPE = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"


@pytest.mark.parametrize(
    ("method", "query", "signature"),
    [
        ("GET", {}, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        (
            "GET",
            {"Param2": "value2", "Param1": "value1"},
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        ("POST", {}, "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ],
    ids=["get-vanilla", "get-vanilla-query-order-key-case", "post-vanilla"],
)
def test_the_signature_v4_test_suite(method: str, query: dict[str, str], signature: str) -> None:
    headers = {"host": "example.amazonaws.com"}
    Signer("AKIDEXAMPLE", SUITE_SECRET, "us-east-1", "service").sign(
        method, "/", query, headers, EMPTY_SHA256, now=SUITE_AT
    )
    assert headers["x-amz-date"] == "20150830T123600Z"
    assert "x-amz-content-sha256" not in headers  # S3's header only
    assert headers["authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={SUITE_SCOPE}, SignedHeaders=host;x-amz-date, "
        f"Signature={signature}"
    )


def test_the_s3_reference_s_get_object_example() -> None:
    headers = {"host": "examplebucket.s3.amazonaws.com", "range": "bytes=0-9"}
    signer = Signer("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1")
    at = datetime(2013, 5, 24, tzinfo=UTC).timestamp()
    signer.sign("GET", "/test.txt", {}, headers, EMPTY_SHA256, now=at)
    assert headers["x-amz-content-sha256"] == EMPTY_SHA256
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_paths_and_queries_are_encoded_once_with_the_unreserved_characters_kept() -> None:
    assert quote_path("/b/chunks/ab/x y+z~._-") == "/b/chunks/ab/x%20y%2Bz~._-"
    assert canonical_query({"prefix": "v/a b", "list-type": "2", "delete": ""}) == (
        "delete=&list-type=2&prefix=v%2Fa%20b"
    )


def test_the_secret_and_the_token_never_show() -> None:
    signer = Signer("AKID", "s3cr3t", "us-east-1", session_token="t0k3n")
    headers = {"host": "h"}
    signer.sign("GET", "/", {}, headers, EMPTY_SHA256, now=SUITE_AT)
    assert "s3cr3t" not in repr(signer) and "AKID" not in repr(signer)
    assert "s3cr3t" not in "".join(headers.values())
    assert headers["x-amz-security-token"] == "t0k3n"
    assert "x-amz-security-token" in headers["authorization"]  # signed
