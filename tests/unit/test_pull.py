"""A pull's pure parts (domain/pull.py): the NBD address of a host's URI, the ``--pull-tls``
directory, the backup XML of a pull (TCP with TLS, vmvault's export names, scratch files
next to the images) and how a job's NBD server is told to be vmvault's pull."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from vmvault.domain.errors import InvalidInput
from vmvault.domain.pull import EXPORT_PREFIX, PULL_PORTS, nbd_address, validate_pull_dir
from vmvault.hypervisor.libvirt import backup_xml
from vmvault.hypervisor.libvirt.jobcontrol import BackupServer, backup_server


@pytest.mark.parametrize(
    ("uri", "address"),
    [
        ("qemu+tls://h1.example/system", "h1.example"),
        ("qemu+tls://h1.example:16514/system?pkipath=/x", "h1.example"),
        ("qemu+ssh://root@10.0.0.7/system", "10.0.0.7"),
        ("qemu+tcp://127.0.0.1:16519/system", "127.0.0.1"),
        ("qemu+tls://[fd00::7]:16514/system", "fd00::7"),
    ],
)
def test_the_nbd_address_is_the_host_of_the_uri(uri: str, address: str) -> None:
    assert nbd_address(uri) == address


@pytest.mark.parametrize(
    "uri", ["qemu:///system", "qemu+unix:///system", "qemu+ssh://root@/system", "qemu+tls://h_1/x"]
)
def test_a_uri_without_a_host_name_cannot_be_pulled_from(uri: str) -> None:
    with pytest.raises(InvalidInput, match="host name"):
        nbd_address(uri)


def test_the_pull_directory_is_absolute_and_plain() -> None:
    assert validate_pull_dir(" /etc/vmvault/pull/ ") == "/etc/vmvault/pull"
    for bad in ("etc/pull", "/etc/../root", "/etc//pull", "/etc/pu\x1bll", ""):
        with pytest.raises(InvalidInput):
            validate_pull_dir(bad)


DISKS = {"vda": "qcow2", "vdb": "qcow2", "vdc": "raw"}


def _xml(**kw: Any) -> ET.Element:
    args: dict[str, Any] = dict(
        socket=Path("/run/v/sock/nbd.sock"),
        scratch_dir=Path("/run/v/scratch"),
        incremental_from=None,
        modes={},
    )
    return ET.fromstring(backup_xml.backup_xml(DISKS, ["vda", "vdc"], **(args | kw)))


def test_a_local_backup_serves_its_unix_socket() -> None:
    root = _xml()
    assert root.find("server").attrib == {  # type: ignore[union-attr]
        "transport": "unix",
        "socket": "/run/v/sock/nbd.sock",
    }
    vda = root.find("./disks/disk[@name='vda']")
    assert vda is not None and vda.get("exportname") is None
    assert vda.find("scratch").get("file") == "/run/v/scratch/vda.scratch"  # type: ignore[union-attr]


def test_a_pull_serves_tcp_with_tls_under_vmvaults_export_names() -> None:
    images = {"vda": "/srv/img/a.qcow2", "vdb": "/srv/img/b.qcow2", "vdc": "/srv/img/c.raw"}
    root = _xml(
        tls_server=("h1.example", 10850),
        remote_scratch=images,
        token="ab12",
        incremental_from="vmvault-P1",
        modes={"vda": "incremental", "vdc": "full"},
    )
    server = root.find("server")
    assert server is not None
    assert server.attrib == {
        "transport": "tcp",
        "tls": "yes",
        "name": "h1.example",
        "port": "10850",
    }
    assert root.findtext("incremental") == "vmvault-P1"
    by_name = {d.get("name"): d for d in root.findall("./disks/disk")}
    assert by_name["vdb"].attrib == {"name": "vdb", "backup": "no"}
    for target, mode in (("vda", "incremental"), ("vdc", "full")):
        disk = by_name[target]
        assert disk.get("exportname") == f"{EXPORT_PREFIX}{target}" and disk.get("backup") == "yes"
        assert disk.get("backupmode") == mode
        scratch = disk.find("scratch")
        assert scratch is not None
        assert scratch.get("file") == f"{images[target]}.vmvault-ab12.scratch"  # on that host
    assert by_name["vda"].get("incremental") == "vmvault-P1"
    assert "/run/v" not in ET.tostring(root, encoding="unicode")  # nothing of this machine


def test_pull_ports_start_at_nbds_own() -> None:
    assert PULL_PORTS[0] == 10809 and len(PULL_PORTS) == 64


class _Dom:
    """A domain whose running backup job libvirt describes as ``desc`` (pure parsing)."""

    def __init__(self, desc: str) -> None:
        self.desc = desc

    def backupGetXMLDesc(self, flags: int) -> str:
        return self.desc


def test_a_pull_job_is_told_from_others_by_its_server_and_export_names() -> None:
    pulled = backup_server(
        _Dom(
            "<domainbackup mode='pull'><server transport='tcp' tls='yes' name='h1' port='10850'/>"
            "<disks><disk name='vda' backup='yes' exportname='vmvault-vda'/>"
            "<disk name='vdb' backup='no'/></disks></domainbackup>"
        )
    )
    assert pulled == BackupServer("tcp", None, "h1", 10850, True, ("vmvault-vda",))
    assert pulled.pulled_by_vmvault and str(pulled) == "NBD server h1:10850 with TLS"
    foreign = [
        # another tool's TLS pull: its exports are named after the disks
        "<server transport='tcp' tls='yes' name='h1' port='10809'/><disks>"
        "<disk name='vda' backup='yes'/></disks>",
        # vmvault's names, but no TLS: never a job of vmvault's
        "<server transport='tcp' name='h1' port='10809'/><disks>"
        "<disk name='vda' backup='yes' exportname='vmvault-vda'/></disks>",
        "<server transport='unix' socket='/tmp/x.sock'/><disks>"
        "<disk name='vda' backup='yes' exportname='vmvault-vda'/></disks>",
    ]
    for inner in foreign:
        server = backup_server(_Dom(f"<domainbackup mode='pull'>{inner}</domainbackup>"))
        assert server is not None and not server.pulled_by_vmvault, server
    local = backup_server(
        _Dom("<domainbackup><server transport='unix' socket='/s'/></domainbackup>")
    )
    assert local is not None and str(local) == "NBD socket /s"
    assert backup_server(_Dom("not xml")) is None
