"""The error catalog and input validation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from vmvault.documents import catalog_markdown
from vmvault.domain.errors import InvalidInput, VmNotFound, VmvaultError
from vmvault.domain.host_uri import validate_uri
from vmvault.domain.job import parse_since
from vmvault.domain.vault import validate_location, validate_name


def test_every_error_has_code_message_and_remedy() -> None:
    assert len(VmvaultError.registry) >= 20
    for code, cls in VmvaultError.registry.items():
        assert code == cls.code and code.isupper()
        assert cls.message and cls.remedy and cls.kind in ("usage", "failure")


def test_docs_errors_md_is_current() -> None:
    doc = Path(__file__).parents[2] / "docs" / "errors.md"
    assert doc.read_text() == catalog_markdown(), "regenerate: vmvault errors --markdown"


def test_error_formats_fields_and_detail() -> None:
    e = VmNotFound(vm="lab-1")
    assert e.text == "no VM matches 'lab-1'" and e.as_dict()["code"] == "VM_NOT_FOUND"
    assert InvalidInput("too short", what="x").text == "x is not valid: too short"


def test_duplicate_codes_are_refused() -> None:
    with pytest.raises(TypeError):

        class Twin(VmvaultError):
            code = "VM_NOT_FOUND"


@pytest.mark.parametrize(
    "uri",
    [
        "qemu:///system",
        "qemu:///session",
        "qemu+ssh://root@h1/system",
        "test:///default",
        "qemu+tcp://10.0.0.1:16509/system?no_verify=0",
    ],
)
def test_good_uris(uri: str) -> None:
    assert validate_uri(uri) == uri


@pytest.mark.parametrize(
    "uri",
    ["", "qemu", "qemu://", "qemu:/system", "qemu+pigeon://h/system", "bogus uri", "qemu:///"],
)
def test_bad_uris(uri: str) -> None:
    with pytest.raises(InvalidInput):
        validate_uri(uri)


def test_names_and_locations() -> None:
    assert validate_name("main-1") == "main-1"
    for bad in ("", "-x", "a b", "x" * 64, "é"):
        with pytest.raises(InvalidInput):
            validate_name(bad)
    assert validate_location(" eu-west ") == "eu-west"
    with pytest.raises(InvalidInput):
        validate_location("two words")


def test_parse_since() -> None:
    assert parse_since("24h") == timedelta(hours=24)
    assert parse_since("7d") == timedelta(days=7)
    for bad in ("", "h", "24", "1y", "-1h"):
        with pytest.raises(InvalidInput):
            parse_since(bad)
