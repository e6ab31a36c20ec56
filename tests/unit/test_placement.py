"""The placement rule's pure parts (domain/placement.py) and its setting."""

from __future__ import annotations

import pytest

from vmvault.config import Settings
from vmvault.domain.errors import InvalidSetting
from vmvault.domain.host_uri import same_host
from vmvault.domain.placement import OwnNode


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("qemu:///system", "qemu:///system", True),
        ("qemu:///system", "qemu:///system/", True),
        ("QEMU+TCP://127.0.0.1:16519/system", "qemu+tcp://127.0.0.1:16519/system", True),
        ("qemu:///system", "qemu+tcp://127.0.0.1:16519/system", False),
        ("qemu+tcp://127.0.0.1:16519/system", "qemu+tcp://127.0.0.1:16520/system", False),
        ("qemu+ssh://h1/system", "qemu+ssh://h2/system", False),
        ("qemu:///system", "qemu:///session", False),
    ],
)
def test_same_host(a: str, b: str, same: bool) -> None:
    assert same_host(a, b) is same
    assert same_host(b, a) is same


def test_own_node_serves_its_host_only() -> None:
    assert OwnNode().node_host == "qemu:///system"
    assert OwnNode().serves("qemu:///system") and not OwnNode().serves("qemu+ssh://h2/system")
    node = OwnNode("qemu+ssh://h2/system")
    assert node.serves("qemu+ssh://h2/system/") and not node.serves("qemu:///system")


def test_the_node_host_setting() -> None:
    assert Settings.from_env({"VMVAULT_HOME": "/tmp/x"}).node_host == "qemu:///system"
    env = {"VMVAULT_HOME": "/tmp/x", "VMVAULT_NODE_HOST": " qemu+tcp://127.0.0.1:16519/system "}
    assert Settings.from_env(env).node_host == "qemu+tcp://127.0.0.1:16519/system"
    for bad in ("http://x", "qemu:///sys\x1btem", "xen:///system", "qemu:///"):
        with pytest.raises(InvalidSetting) as err:
            Settings.from_env({"VMVAULT_HOME": "/tmp/x", "VMVAULT_NODE_HOST": bad})
        assert err.value.fields["name"] == "VMVAULT_NODE_HOST"
