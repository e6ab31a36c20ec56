"""Where ``vmvault serve`` may listen: loopback only, until the API has authentication."""

from __future__ import annotations

import pytest

from vmvault.config import ListenAddress, parse_listen
from vmvault.domain.errors import InvalidInput, ListenNotLoopback

REFUSED = [
    "0.0.0.0:8470",  # every IPv4 address
    "[::]:8470",  # every IPv6 address
    ":::8470",
    "192.0.2.10:8470",
    "[2001:db8::1]:8470",
    "[::ffff:127.0.0.1]:8470",  # IPv4-mapped: an IPv6 socket, not the loopback interface
    "vmvault.example:8470",  # a host name: what it resolves to may change
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8470", ListenAddress("127.0.0.1", 8470)),
        ("127.3.2.1:1", ListenAddress("127.3.2.1", 1)),
        ("localhost:65535", ListenAddress("localhost", 65535)),
        ("[::1]:8470", ListenAddress("::1", 8470)),
        ("::1:8470", ListenAddress("::1", 8470)),
        (":8470", ListenAddress("127.0.0.1", 8470)),
    ],
)
def test_loopback_addresses_are_accepted(value: str, expected: ListenAddress) -> None:
    assert parse_listen(value) == expected


def test_an_address_prints_as_it_is_written() -> None:
    assert str(ListenAddress("::1", 8470)) == "[::1]:8470"
    assert str(ListenAddress("127.0.0.1", 8470)) == "127.0.0.1:8470"


@pytest.mark.parametrize("value", REFUSED)
def test_other_addresses_are_refused(value: str) -> None:
    with pytest.raises(ListenNotLoopback) as e:
        parse_listen(value)
    assert e.value.kind == "usage" and e.value.fields == {"address": value}
    assert "no authentication" in e.value.remedy_text


@pytest.mark.parametrize(
    "value",
    ["", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x", "127.0.0.1:\u00b2", "::1",
     "[::1]", "[::1]8470"],
)  # fmt: skip
def test_malformed_addresses_are_invalid_input(value: str) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_listen(value)
    assert e.value.code == "INVALID_INPUT"
