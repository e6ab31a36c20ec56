"""The paper key (domain/paper_key.py): round trips, forgiving form, strict content."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmvault.domain import paper_key as pk
from vmvault.domain.errors import PaperKeyInvalid

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
secrets = st.binary(min_size=96, max_size=96)
fingerprints = st.from_regex(r"[0-9a-f]{32}", fullmatch=True)


def key(secret: bytes | None = None) -> pk.PaperKey:
    return pk.PaperKey("demo", "0123456789abcdef0123456789abcdef", secret or os.urandom(96))


@given(names, fingerprints, secrets)
def test_the_block_and_the_qr_text_read_back_to_the_same_key(
    vault: str, fp: str, secret: bytes
) -> None:
    k = pk.PaperKey(vault, fp, secret)
    for text in (pk.render(k), pk.qr_payload(k)):
        back = pk.parse(text)
        assert (back.vault, back.fingerprint, back.secret) == (vault, fp, secret)


@given(secrets, st.sampled_from(["lower", "nohyphen", "spaces", "lookalike", "indent"]))
def test_case_spacing_hyphens_and_lookalikes_do_not_matter(secret: bytes, form: str) -> None:
    k = key(secret)
    lines = pk.render(k).splitlines()
    body = [i for i, ln in enumerate(lines) if re.match(r"\s*\d+\s", ln)] + [len(lines) - 1]
    for i in body:
        ln = lines[i]
        if form == "lower":
            ln = ln.lower()
        elif form == "nohyphen":
            ln = ln.replace("-", "")
        elif form == "spaces":
            ln = ln.replace("-", " ")
        elif form == "lookalike":
            head, _, rest = ln.strip().partition(" ")
            ln = head + " " + rest.replace("0", "O").replace("1", "l")
        else:
            ln = "   " + ln + "  "
        lines[i] = ln
    assert pk.parse("\n".join(lines)).secret == secret


@settings(max_examples=300)
@given(secrets, st.data())
def test_any_mistyped_character_is_refused_and_its_line_named(
    secret: bytes, data: st.DataObject
) -> None:
    lines = pk.render(key(secret)).splitlines()
    rows = [i for i, ln in enumerate(lines) if re.match(r"\s*\d+\s", ln)]
    i = data.draw(st.sampled_from(rows))
    number = int(lines[i].split()[0])
    chars = [j for j, ch in enumerate(lines[i]) if ch.isalnum() and j > 3]
    j = data.draw(st.sampled_from(chars))
    other = data.draw(st.sampled_from([c for c in pk.ALPHABET if c != lines[i][j]]))
    lines[i] = lines[i][:j] + other + lines[i][j + 1 :]
    with pytest.raises(PaperKeyInvalid) as exc:
        pk.parse("\n".join(lines))
    # the line's own check names it (a 1-in-1024 miss is caught by the whole key's check)
    assert f"line {number}:" in exc.value.text or "the check line:" in exc.value.text


def test_a_missing_duplicated_or_foreign_line_is_refused() -> None:
    lines = pk.render(key()).splitlines()
    rows = [i for i, ln in enumerate(lines) if re.match(r"\s*\d+\s", ln)]
    cases = {
        "missing": lines[: rows[2]] + lines[rows[2] + 1 :],
        "twice": [*lines[: rows[2]], lines[rows[1]], *lines[rows[2] :]],
        "junk": [*lines, "hello world"],
        "no check": lines[:-1],
        "no header": lines[1:],
    }
    for name, case in cases.items():
        with pytest.raises(PaperKeyInvalid):
            pk.parse("\n".join(case))
        assert name


def test_a_mistyped_check_line_or_qr_text_is_refused() -> None:
    k = key()
    lines = pk.render(k).splitlines()
    last = lines[-1]
    lines[-1] = last[:-1] + ("0" if last[-1] != "0" else "1")
    with pytest.raises(PaperKeyInvalid, match="check"):
        pk.parse("\n".join(lines))
    qr = pk.qr_payload(k)
    bad = qr[:-20] + ("A" if qr[-20] != "A" else "B") + qr[-19:]
    with pytest.raises(PaperKeyInvalid):
        pk.parse(bad)
    with pytest.raises(PaperKeyInvalid):
        pk.parse("VMVAULT-KEY1:demo:nothex:ABC")


def test_the_key_material_is_never_in_its_repr() -> None:
    k = key(bytes(range(96)))
    assert bytes(range(96)).hex()[:16] not in repr(k) and "demo" in repr(k)
