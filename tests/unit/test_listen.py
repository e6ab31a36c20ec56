"""Where ``vmvault serve`` may listen, and which addresses make it speak TLS only."""

from __future__ import annotations

import pytest

from vmvault.config import ListenAddress, parse_listen
from vmvault.domain.errors import InvalidInput

#: Reachable from other hosts (or may become so): the server uses TLS there.
NOT_LOOPBACK = [
    ("0.0.0.0:8470", ListenAddress("0.0.0.0", 8470)),  # every IPv4 address
    ("[::]:8470", ListenAddress("::", 8470)),  # every IPv6 address
    (":::8470", ListenAddress("::", 8470)),
    ("192.0.2.10:8470", ListenAddress("192.0.2.10", 8470)),
    ("[2001:db8::1]:8470", ListenAddress("2001:db8::1", 8470)),
    # IPv4-mapped: an IPv6 socket, not the loopback interface
    ("[::ffff:127.0.0.1]:8470", ListenAddress("::ffff:127.0.0.1", 8470)),
    ("vmvault.example:8470", ListenAddress("vmvault.example", 8470)),  # may resolve to anything
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8470", ListenAddress("127.0.0.1", 8470)),
        ("127.3.2.1:1", ListenAddress("127.3.2.1", 1)),
        ("localhost:65535", ListenAddress("localhost", 65535)),
        ("LocalHost:1", ListenAddress("LocalHost", 1)),
        ("[::1]:8470", ListenAddress("::1", 8470)),
        ("::1:8470", ListenAddress("::1", 8470)),
        (":8470", ListenAddress("127.0.0.1", 8470)),
    ],
)
def test_loopback_addresses(value: str, expected: ListenAddress) -> None:
    assert parse_listen(value) == expected and expected.loopback


@pytest.mark.parametrize(("value", "expected"), NOT_LOOPBACK)
def test_other_addresses_are_accepted_and_need_tls(value: str, expected: ListenAddress) -> None:
    address = parse_listen(value)
    assert address == expected and not address.loopback


def test_an_address_prints_as_it_is_written() -> None:
    assert str(ListenAddress("::1", 8470)) == "[::1]:8470"
    assert str(ListenAddress("127.0.0.1", 8470)) == "127.0.0.1:8470"


@pytest.mark.parametrize(
    "value",
    ["", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x", "127.0.0.1:\u00b2", "::1",
     "[::1]", "[::1]8470", "[zz]:1", "a b:1", "-x:1", "h\u00e9:1"],
)  # fmt: skip
def test_malformed_addresses_are_invalid_input(value: str) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_listen(value)
    assert e.value.code == "INVALID_INPUT"
