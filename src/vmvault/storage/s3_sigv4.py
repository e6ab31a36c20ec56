"""AWS Signature Version 4 of one HTTP request, header form (what every S3 request carries).

The algorithm of AWS's "Signature Version 4 signing process", in four steps:

1. the *canonical request*: method, URI path (each segment percent-encoded once, as S3 wants:
   unreserved characters ``A-Z a-z 0-9 - _ . ~`` kept), the query sorted by encoded name
   then value (``name=value``, a flag as ``name=``), the signed headers (lowercase name,
   trimmed value, sorted; ``host`` and ``x-amz-date`` always), their names joined by ``;``,
   and the payload's SHA-256 in hex — or ``UNSIGNED-PAYLOAD`` (the body is then not hashed:
   vmvault authenticates its own objects);
2. the *string to sign*: ``AWS4-HMAC-SHA256``, the request time, the scope
   ``<yyyymmdd>/<region>/<service>/aws4_request`` and the canonical request's SHA-256;
3. the *signing key*: HMAC-SHA256 chained over ``"AWS4" + secret``, the date, the region,
   the service and ``aws4_request`` (cached per day and region: one chain a day, not one per
   request);
4. the ``Authorization`` header: ``AWS4-HMAC-SHA256 Credential=<key id>/<scope>,
   SignedHeaders=<names>, Signature=<hex HMAC of the string to sign>``.

A session token goes in ``x-amz-security-token`` (signed).  The secret never leaves
:class:`Signer` (no ``repr`` shows it, nothing logs it).  Checked against AWS's published
vectors (``tests/unit/storage/test_s3_sigv4.py``: the test suite's ``get-vanilla`` cases and
the S3 API reference's "GET Object" example).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Mapping
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_SAFE = "-_.~"


def quote_path(path: str) -> str:
    """``path`` percent-encoded for the URI and the canonical request ('/' kept)."""
    return quote(path, safe="/" + _SAFE)


def canonical_query(query: Mapping[str, str]) -> str:
    """``name=value`` pairs, encoded and sorted (also the query string that is sent)."""
    pairs = sorted((quote(k, safe=_SAFE), quote(v, safe=_SAFE)) for k, v in query.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def amz_date(epoch: float) -> str:
    """``yyyymmddThhmmssZ`` of ``epoch`` (UTC)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


class Signer:
    """Signs requests with one key pair for one region and service."""

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        region: str,
        service: str = "s3",
        session_token: str | None = None,
    ) -> None:
        self._access_key = access_key
        self._secret = secret_key
        self._token = session_token
        self.region = region
        self.service = service
        self._mu = threading.Lock()
        self._keys: dict[str, bytes] = {}  # yyyymmdd -> signing key

    def __repr__(self) -> str:
        return f"Signer(region={self.region!r}, service={self.service!r})"

    def sign(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: dict[str, str],
        payload_sha256: str,
        *,
        now: float | None = None,
    ) -> None:
        """Add ``x-amz-date``, ``x-amz-content-sha256`` (for S3), the session token and
        ``Authorization`` to ``headers`` (lowercase names; ``host`` already there).
        ``path`` is the encoded URI path, as sent."""
        stamp = amz_date(time.time() if now is None else now)
        headers["x-amz-date"] = stamp
        if self.service == "s3":
            headers["x-amz-content-sha256"] = payload_sha256
        if self._token:
            headers["x-amz-security-token"] = self._token
        names = sorted(headers)
        canonical = "\n".join(
            (
                method,
                path,
                canonical_query(query),
                "".join(f"{n}:{' '.join(str(headers[n]).split())}\n" for n in names),
                ";".join(names),
                payload_sha256,
            )
        )
        scope = f"{stamp[:8]}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(
            (ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        signature = hmac.new(self._key(stamp[:8]), to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"{ALGORITHM} Credential={self._access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )

    def _key(self, day: str) -> bytes:
        with self._mu:
            key = self._keys.get(day)
            if key is None:
                key = ("AWS4" + self._secret).encode()
                for part in (day, self.region, self.service, "aws4_request"):
                    key = hmac.new(key, part.encode(), hashlib.sha256).digest()
                self._keys = {day: key}  # yesterday's key is not needed again
            return key
