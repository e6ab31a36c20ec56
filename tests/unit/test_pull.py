"""A pull's pure parts (domain/pull.py): the NBD address of a host's URI, the ``--pull-tls``
directory, the backup XML of a pull (TCP with TLS, vmvault's export names, scratch files
next to the images) and how a job's NBD server is told to be vmvault's pull."""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from vmvault.domain.errors import InvalidInput, PullDiskNotFile, PullTlsFailed
from vmvault.domain.job import JournalStep
from vmvault.domain.pull import PULL_PORTS, PullTarget, nbd_address, validate_pull_dir
from vmvault.domain.recovery_point import BackupStep, UnfinishedBackup, unfinished_backup
from vmvault.hypervisor.libvirt import backup_xml, stale
from vmvault.hypervisor.libvirt.backup import DiskSpec, PullBackup
from vmvault.hypervisor.libvirt.domxml import DomainDisk, parse_disks
from vmvault.hypervisor.libvirt.jobcontrol import BackupServer, backup_server, end_backup_job
from vmvault.hypervisor.libvirt.pulljob import is_our_pull, pulled_disks
from vmvault.hypervisor.libvirt.rundir import RunDir
from vmvault.hypervisor.nbd import NbdTls, check_client_files
from vmvault.hypervisor.pull_dir import pull_dir_problems_here


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


def _domain(*disks: str) -> list[DomainDisk]:
    return parse_disks(f"<domain><devices>{''.join(disks)}</devices></domain>")


def _file(target: str, path: str, fmt: str = "qcow2") -> str:
    return (
        f"<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>"
        f"<source file='{path}'/><target dev='{target}'/></disk>"
    )


POINT = "20261203T081500Z-3f9a1c"


def test_a_pull_serves_tcp_with_tls_under_export_names_of_its_point() -> None:
    images = {"vda": "/srv/img/a.qcow2", "vdb": "/srv/img/b.qcow2", "vdc": "/srv/img/c.raw"}
    pull = PullTarget("h1.example", "/etc/pull", POINT)
    parsed = _domain(*(_file(t, p) for t, p in images.items()))
    pulled = pulled_disks(pull, parsed, ["vda", "vdc"], vm="web", uri="qemu+tls://h1.example/")
    root = _xml(
        tls_server=("h1.example", 10850),
        pulled=pulled,
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
        assert disk.get("exportname") == f"vmvault-{POINT}-{target}" == pull.export(target)
        assert disk.get("backup") == "yes" and disk.get("backupmode") == mode
        scratch = disk.find("scratch")
        assert scratch is not None
        assert scratch.get("file") == f"{images[target]}.vmvault-{POINT}.scratch"  # on that host
    assert by_name["vda"].get("incremental") == "vmvault-P1"
    assert "/run/v" not in ET.tostring(root, encoding="unicode")  # nothing of this machine


def test_a_pull_refuses_disks_that_are_not_image_files() -> None:
    """A scratch file goes next to the image: a block device's would land in /dev (devtmpfs),
    a volume's or a network disk's would be a relative or meaningless path."""
    pull = PullTarget("h1.example", "/etc/pull", POINT)
    parsed = _domain(
        _file("vda", "/srv/img/a.qcow2"),
        "<disk type='block' device='disk'><driver name='qemu' type='raw'/>"
        "<source dev='/dev/vg0/lv1'/><target dev='vdb'/></disk>",
        "<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source pool='default' volume='c.qcow2'/><target dev='vdc'/></disk>",
        "<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
        "<source protocol='rbd' name='pool/img'/><target dev='vdd'/></disk>",
    )
    uri = "qemu+tls://h1.example/system"
    with pytest.raises(PullDiskNotFile) as refused:
        pulled_disks(pull, parsed, ["vda", "vdb", "vdc", "vdd"], vm="web", uri=uri)
    err = refused.value
    assert err.code == "PULL_DISK_NOT_FILE" and err.fields["disks"] == (
        "vdb (block: /dev/vg0/lv1), vdc (volume: default/c.qcow2), vdd (network: rbd://pool/img)"
    )
    assert "--exclude-disk" in err.remedy_text and "Nothing was begun" in err.remedy_text
    # left out of the backup, they do not matter
    assert list(pulled_disks(pull, parsed, ["vda"], vm="web", uri=uri)) == ["vda"]


def test_a_pull_token_names_nothing_but_letters_digits_and_dashes() -> None:
    assert PullTarget.of("h", "/d", POINT).token == POINT
    assert len(PullTarget.of("h", "/d", None).token) == 12  # random: in no journal
    for bad in ("", "a/b", "-x", "a b", "x" * 65):
        with pytest.raises(InvalidInput):
            PullTarget("h", "/d", bad)


def test_pull_ports_start_at_nbds_own() -> None:
    assert PULL_PORTS[0] == 10809 and len(PULL_PORTS) == 64


class _Dom:
    """A domain whose running backup job libvirt describes as ``desc`` (pure parsing)."""

    def __init__(self, desc: str) -> None:
        self.desc = desc

    def backupGetXMLDesc(self, flags: int) -> str:
        return self.desc


def _pull_job(
    exports: str, server: str = "transport='tcp' tls='yes' name='h1' port='10850'"
) -> str:
    disks = "".join(
        f"<disk name='vd{i}' backup='yes' exportname='{e}'/>" for i, e in enumerate(exports.split())
    )
    return (
        f"<domainbackup mode='pull'><server {server}/><disks>{disks}"
        "<disk name='vdz' backup='no'/></disks></domainbackup>"
    )


def test_a_pull_job_is_told_from_others_by_its_server_and_its_points_exports() -> None:
    mine = f"vmvault-{POINT}-vda vmvault-{POINT}-vdb"
    pulled = backup_server(_Dom(_pull_job(mine)))
    assert pulled == BackupServer(
        "tcp", None, "h1", 10850, True, (f"vmvault-{POINT}-vda", f"vmvault-{POINT}-vdb")
    )
    assert pulled.pulled_for(POINT) and str(pulled) == "NBD server h1:10850 with TLS"
    other = "20261203T081500Z-000000"
    for job, point in [
        (_pull_job(mine), other),  # another backup's point (another deployment's, say)
        (_pull_job("vmvault-vda"), POINT),  # vmvault's prefix alone: whose?
        (_pull_job(f"vmvault-{POINT}-vda vda"), POINT),  # one export not of that point
        (_pull_job(f"vmvault-{POINT}-"), POINT),  # no disk after the point
        (_pull_job(f"vmvault-{POINT}x-vda"), POINT),  # a longer token that starts the same
        (_pull_job(mine, "transport='tcp' name='h1' port='10809'"), POINT),  # no TLS
        (_pull_job(mine, "transport='unix' socket='/tmp/x.sock'"), POINT),
    ]:
        server = backup_server(_Dom(job))
        assert server is not None and not server.pulled_for(point), (job, point)
    assert not pulled.pulled_for("")
    local = backup_server(
        _Dom("<domainbackup><server transport='unix' socket='/s'/></domainbackup>")
    )
    assert local is not None and str(local) == "NBD socket /s"
    assert backup_server(_Dom("not xml")) is None


class _JobDom(_Dom):
    """A domain running the pull-mode backup job ``desc`` until it is aborted."""

    def __init__(self, desc: str) -> None:
        super().__init__(desc)
        self.aborted = False

    def jobStats(self, flags: int) -> dict[str, int]:
        return {} if self.aborted else {"type": 2, "operation": 9}

    def abortJob(self) -> None:
        self.aborted = True


def _left(point: str) -> UnfinishedBackup:
    """What the journal of a pull killed while reading says (its ``planned`` record names
    the point before ``backupBegin``)."""
    at = datetime(2026, 12, 3, tzinfo=UTC)
    planned = {"point": point, "checkpoint": f"vmvault-{point}", "quiesce": "freeze"}
    steps = [
        JournalStep(7, 1, BackupStep.PLANNED, planned, at),
        JournalStep(7, 2, BackupStep.FREEZING, {"quiesce": "freeze"}, at),
        JournalStep(7, 3, BackupStep.POINT_TAKEN, {"released": True}, at),
    ]
    left = unfinished_backup(7, steps)
    assert left is not None
    return left


def test_the_clean_up_ends_only_the_pull_of_the_unfinished_backup(tmp_path: Path) -> None:
    """stale.py's rule: a remote pull job is ended when its exports carry the point of the
    VM's unfinished backup in this catalog's journal; another deployment's live pull of the
    same VM (another point), a job named only with vmvault's prefix, or any pull when the
    journal says nothing, is left alone and reported."""
    run = RunDir.of(tmp_path, "00000000-0000-0000-0000-000000000001")
    ours = f"vmvault-{POINT}-vda"
    other = "vmvault-20261203T070000Z-abcdef-vda"
    for exports, left, ended in [
        (ours, _left(POINT), True),
        (other, _left(POINT), False),
        ("vmvault-vda", _left(POINT), False),
        (ours, None, False),
    ]:
        dom = _JobDom(_pull_job(exports))
        end = end_backup_job(dom, partial(stale._ours, run, left), wait=1.0)
        assert dom.aborted is ended and end.aborted is ended, (exports, left)
        assert (end.foreign is None) is ended, end
        if not ended:
            assert end.foreign == "backup job (NBD server h1:10850 with TLS)"
    # a local job: its socket under the work directory, journal or not
    sock = f"transport='unix' socket='{run.socket}'"
    dom = _JobDom(_pull_job("vda", sock))
    assert end_backup_job(dom, partial(stale._ours, run, None), wait=1.0).aborted


def test_the_live_pull_ends_only_its_own_job() -> None:
    pull = PullTarget("h1", "/etc/pull", POINT)
    tls = NbdTls("h1", 10850, "/etc/pull")
    assert is_our_pull(
        BackupServer("tcp", None, "h1", 10850, True, (pull.export("vda"),)), tls, pull
    )
    for server in (
        BackupServer("tcp", None, "h1", 10851, True, (pull.export("vda"),)),
        BackupServer("tcp", None, "h1", 10850, True, ("vmvault-vda",)),
    ):
        assert not is_our_pull(server, tls, pull)


def _client_dir(where: Path, key_mode: int = 0o600, dir_mode: int = 0o755) -> Path:
    where.mkdir()
    for name in ("ca-cert.pem", "client-cert.pem", "client-key.pem"):
        (where / name).write_text("not read here")
    (where / "client-key.pem").chmod(key_mode)
    where.chmod(dir_mode)
    return where


def test_the_client_directory_keeps_its_key_to_itself(tmp_path: Path) -> None:
    """One rule for ``host add --pull-tls`` and the pull's job (hypervisor/pull_dir.py): the
    three files, a key readable by its owner only, a directory nobody else writes to."""
    assert pull_dir_problems_here(str(_client_dir(tmp_path / "ok"))) == []
    [lax] = pull_dir_problems_here(str(_client_dir(tmp_path / "lax", key_mode=0o640)))
    assert lax == "client-key.pem is readable by its group or others (mode 0640): chmod 600 it"
    [open_dir] = pull_dir_problems_here(str(_client_dir(tmp_path / "o+w", dir_mode=0o777)))
    assert "writable by others (mode 0777)" in open_dir
    partial_dir = _client_dir(tmp_path / "partial")
    (partial_dir / "ca-cert.pem").unlink()
    (partial_dir / "client-cert.pem").unlink()
    (partial_dir / "client-cert.pem").mkdir()  # not a regular file
    assert pull_dir_problems_here(str(partial_dir)) == [
        "it lacks ca-cert.pem, client-cert.pem (no such regular file readable by this process)"
    ]
    [none] = pull_dir_problems_here(str(tmp_path / "nowhere"))
    assert none.startswith("it lacks ca-cert.pem, client-cert.pem, client-key.pem")
    with pytest.raises(PullTlsFailed, match="readable by its group") as refused:
        check_client_files(str(_client_dir(tmp_path / "lax2", key_mode=0o644)), "h1", "web")
    assert "Pulled hosts" in refused.value.remedy_text


@pytest.fixture
def reachable(tmp_path: Path) -> Iterator[Path]:
    """A directory whose ancestors all others may traverse (rundir.py's rule)."""
    with tempfile.TemporaryDirectory(prefix="vmvault-pull-", dir="/tmp") as where:
        yield Path(where)


def test_a_pulled_vm_with_a_block_disk_is_refused_before_its_guest_is_touched(
    reachable: Path,
) -> None:
    """``PullBackup(pull=…)`` on libvirt's test driver: a ``type='block'`` disk is
    ``PULL_DISK_NOT_FILE`` before any freeze, pause or ``backupBegin`` (the old code went
    on to the saved-state point and libvirt's backup job)."""
    tmp_path = reachable
    tmp_path.chmod(0o755)
    node = tmp_path / "node.xml"
    node.write_text(
        "<node><domain type='test'><name>web</name>"
        "<uuid>00000000-0000-0000-0000-0000000000aa</uuid><memory>65536</memory>"
        f"<os><type>hvm</type></os><devices>{_file('vda', '/srv/a.qcow2')}"
        "<disk type='block' device='disk'><driver name='qemu' type='raw'/>"
        "<source dev='/dev/vg0/lv1'/><target dev='vdb'/></disk></devices></domain></node>"
    )
    pki = _client_dir(tmp_path / "pki")
    backup = PullBackup(
        f"test://{node}",
        "00000000-0000-0000-0000-0000000000aa",
        [DiskSpec("vda", "/srv/a.qcow2", "qcow2"), DiskSpec("vdb", "/dev/vg0/lv1", "raw")],
        checkpoint=f"vmvault-{POINT}",
        incremental_from=None,
        work_dir=tmp_path / "work",
        pull=PullTarget("h1.example", str(pki), POINT),
    )
    with pytest.raises(PullDiskNotFile, match=r"vdb \(block: /dev/vg0/lv1\)"), backup:
        pass
    pit = backup.point_in_time
    assert not (pit.frozen or pit.paused_ms or pit.began_at), pit
    assert backup.cleanup_errors == [] and backup.tls is None
