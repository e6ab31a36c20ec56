"""API tokens: the domain's format and hashing rules (Hypothesis), and the token and audit
services over a real SQLite catalog with an injected clock."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain import tokens
from vmvault.domain.access import Principal, Role
from vmvault.domain.errors import InvalidInput, TokenExists, TokenNotFound

# --- domain -----------------------------------------------------------------------------------


@given(st.binary(min_size=8, max_size=8), st.binary(min_size=32, max_size=32))
def test_an_issued_token_parses_back_to_its_id_and_a_secret_that_matches(
    id_bytes: bytes, secret_bytes: bytes
) -> None:
    chunks = iter([id_bytes, secret_bytes])
    issued = tokens.issue(lambda n: next(chunks))
    assert issued.text.startswith("vmv_") and len(issued.text) == 4 + 16 + 1 + 43
    parts = tokens.parse(issued.text)
    assert parts is not None and parts.public_id == id_bytes.hex() == issued.public_id
    assert tokens.matches(parts.secret, issued.secret_sha256)
    assert issued.secret_sha256 == hashlib.sha256(parts.secret.encode()).hexdigest()
    assert parts.secret not in issued.secret_sha256


@given(st.text(max_size=80))
def test_parse_accepts_only_the_exact_format(text: str) -> None:
    parts = tokens.parse(text)
    if parts is not None:
        assert text == f"vmv_{parts.public_id}_{parts.secret}"
        assert len(parts.public_id) == 16 and len(parts.secret) == 43


@pytest.mark.parametrize(
    "text",
    [
        "",
        "vmv_",
        "vmv_0123456789abcdef_" + "a" * 42,  # a secret one short
        "vmv_0123456789abcdef_" + "a" * 44,
        "vmv_0123456789ABCDEF_" + "a" * 43,  # the id is lower-case hex
        "vmw_0123456789abcdef_" + "a" * 43,
        "vmv_0123456789abcdef_" + "a" * 42 + "=",
        " vmv_0123456789abcdef_" + "a" * 43,
        "vmv_0123456789abcdef_" + "a" * 43 + "\n",
    ],
)
def test_malformed_tokens_do_not_parse(text: str) -> None:
    assert tokens.parse(text) is None


def test_two_issued_tokens_differ() -> None:
    a, b = tokens.issue(), tokens.issue()
    assert a.public_id != b.public_id and a.text != b.text and a.secret_sha256 != b.secret_sha256


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=43, max_size=43))
def test_a_different_secret_never_matches(secret: str) -> None:
    issued = tokens.issue()
    parts = tokens.parse(issued.text)
    assert parts is not None
    assert tokens.matches(secret, issued.secret_sha256) == (secret == parts.secret)


def test_last_used_is_written_at_most_once_a_minute() -> None:
    t0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    assert tokens.needs_touch(None, t0)
    assert not tokens.needs_touch(t0, t0 + timedelta(seconds=59))
    assert tokens.needs_touch(t0, t0 + timedelta(seconds=60))


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 64, "é", "a/b"])
def test_token_names_are_validated_as_vault_names(name: str) -> None:
    with pytest.raises(InvalidInput, match="token name"):
        tokens.validate_token_name(name)


# --- services over a real catalog -------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def svc(tmp_path: Path, clock: Clock) -> Services:
    return bootstrap(Settings.from_env({"VMVAULT_HOME": str(tmp_path / "home")}), clock)


def test_create_authenticate_and_the_stored_hash(svc: Services, tmp_path: Path) -> None:
    token, text = svc.tokens.create("ci", Role.OPERATOR, "local:root")
    assert svc.tokens.authenticate(text) == Principal("ci", Role.OPERATOR)
    with sqlite3.connect(tmp_path / "home" / "catalog.db") as db:
        [(public_id, digest)] = db.execute("SELECT public_id, secret_sha256 FROM api_tokens")
    parts = tokens.parse(text)
    assert parts is not None
    secret = parts.secret
    assert public_id == token.public_id and digest == hashlib.sha256(secret.encode()).hexdigest()
    dump = "\n".join(sqlite3.connect(tmp_path / "home" / "catalog.db").iterdump())
    assert secret not in dump and text not in dump  # the secret is nowhere in the catalog


def test_wrong_unknown_malformed_and_revoked_tokens_are_refused(svc: Services) -> None:
    _token, text = svc.tokens.create("ci", Role.ADMIN, "local:root")
    other = tokens.issue().text
    tampered = text[:-1] + ("A" if text[-1] != "A" else "B")
    same_id_other_secret = text[:21] + other[21:]  # vmv_ + 16 hex + _ = 21 characters
    for bad in (other, tampered, same_id_other_secret, "", "Bearer " + text, text + " "):
        assert svc.tokens.authenticate(bad) is None, bad
    revoked = svc.tokens.revoke("ci")
    assert revoked.revoked_at is not None
    assert svc.tokens.authenticate(text) is None
    assert svc.tokens.revoke("ci").revoked_at == revoked.revoked_at  # stays as revoked
    with pytest.raises(TokenNotFound):
        svc.tokens.revoke("nope")


def test_a_name_is_taken_for_ever_and_names_are_validated(svc: Services) -> None:
    svc.tokens.create("ci", Role.READER, "local:root")
    with pytest.raises(TokenExists) as caught:
        svc.tokens.create("ci", Role.ADMIN, "local:root")
    assert caught.value.code == "TOKEN_EXISTS" and caught.value.kind == "usage"
    svc.tokens.revoke("ci")
    with pytest.raises(TokenExists):
        svc.tokens.create("ci", Role.ADMIN, "local:root")
    with pytest.raises(InvalidInput):
        svc.tokens.create("no spaces", Role.ADMIN, "local:root")
    assert [t.name for t in svc.tokens.list_tokens()] == ["ci"]


def test_last_used_is_written_once_a_minute(svc: Services, clock: Clock) -> None:
    _token, text = svc.tokens.create("ci", Role.READER, "local:root")
    t0 = clock.now

    def last_used() -> datetime | None:
        [token] = svc.tokens.list_tokens()
        return token.last_used_at

    assert last_used() is None
    svc.tokens.authenticate(text)
    assert last_used() == t0
    clock.now = t0 + timedelta(seconds=30)
    svc.tokens.authenticate(text)
    assert last_used() == t0  # not written again within the minute
    clock.now = t0 + timedelta(seconds=61)
    svc.tokens.authenticate(text)
    assert last_used() == clock.now


def test_audit_entries_are_listed_newest_first_filtered_and_paged(
    svc: Services, clock: Clock
) -> None:
    t0 = clock.now
    for i in range(5):
        clock.now = t0 + timedelta(hours=i)
        actor = "ci" if i % 2 == 0 else "local:root"
        svc.audit.record(actor, "admin", f"POST /api/v1/x{i}", None, 200, "10.0.0.1")
    clock.now = t0 + timedelta(hours=4, minutes=30)
    entries, total = svc.audit.list_entries()
    assert total == 5 and [e.action for e in entries] == [
        f"POST /api/v1/x{i}" for i in (4, 3, 2, 1, 0)
    ]
    entries, total = svc.audit.list_entries(actor="ci")
    assert total == 3 and {e.actor for e in entries} == {"ci"}
    entries, total = svc.audit.list_entries(since=timedelta(hours=2))
    assert total == 2 and [e.action for e in entries] == ["POST /api/v1/x4", "POST /api/v1/x3"]
    entries, total = svc.audit.list_entries(limit=2, offset=1)
    assert total == 5 and [e.action for e in entries] == ["POST /api/v1/x3", "POST /api/v1/x2"]
    with pytest.raises(InvalidInput):
        svc.audit.list_entries(limit=0)
    long = svc.audit.record("a" * 500, None, "b" * 500, "c" * 500, 0, "cli")
    assert len(long.actor) == len(long.action) == len(long.target or "") == 300
