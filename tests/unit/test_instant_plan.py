"""Instant recovery's pure parts: where overlays and the socket go, the XML the VM runs from,
the ETA, the journal record, and what recovery does after a kill (no hypervisor)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_restore_plan import XML, new_plan
from vmvault.domain.instant import (
    MAX_SOCKET,
    InstantDisk,
    Resolution,
    eta,
    overlay_path,
    plan_instant,
    resolve,
    socket_path,
)
from vmvault.domain.job import JournalStep
from vmvault.domain.restore import RestorePlan
from vmvault.domain.vm import PowerState
from vmvault.hypervisor.libvirt.instant_xml import copy_destination, disk_sources, instant_xml
from vmvault.hypervisor.libvirt.restore_xml import render_xml
from vmvault.services.restore import journal


def plan() -> RestorePlan:
    p = new_plan()
    assert isinstance(p, RestorePlan)
    return p


def test_overlays_sit_hidden_next_to_their_local_image_and_the_socket_in_the_directory() -> None:
    iplan = plan_instant(plan())
    assert [(d.target, d.final, d.overlay, d.fmt) for d in iplan.disks] == [
        ("vda", Path("/srv/restores/web-2-vda.qcow2"),
         Path("/srv/restores/.web-2-vda.qcow2.instant.qcow2"), "qcow2"),
        ("vdb", Path("/srv/restores/web-2-vdb.raw"),
         Path("/srv/restores/.web-2-vdb.raw.instant.qcow2"), "raw"),
    ]  # fmt: skip
    assert iplan.socket == Path("/srv/restores/.web-2.instant.sock")
    assert iplan.made == [d.overlay for d in iplan.disks] + [iplan.socket]
    assert iplan.overlays == {d.target: d.overlay for d in iplan.disks}
    assert overlay_path(Path("/a/b.raw")) == Path("/a/.b.raw.instant.qcow2")


def test_a_socket_path_too_long_for_a_unix_socket_gets_a_short_name() -> None:
    deep = Path("/" + "d" * 80)
    short = socket_path(deep, "x" * 40)
    assert short == deep / ".vv.instant.sock"
    assert len(str(short).encode()) <= MAX_SOCKET
    assert socket_path(Path("/srv"), "web") == Path("/srv/.web.instant.sock")


def test_the_vm_runs_from_overlays_backed_by_the_export_and_stops_on_io_errors() -> None:
    p = plan()
    final = render_xml(XML, p)
    iplan = plan_instant(p)
    root = ET.fromstring(instant_xml(final, iplan.overlays, iplan.socket))
    disks = {d.find("target").get("dev"): d for d in root.findall("./devices/disk")}  # type: ignore[union-attr]
    for target, overlay in iplan.overlays.items():
        d = disks[target]
        assert d.get("type") == "file"
        driver = d.find("driver")
        assert driver is not None
        assert driver.get("type") == "qcow2"
        assert driver.get("error_policy") == "stop" and driver.get("rerror_policy") == "stop"
        assert driver.get("detect_zeroes") == "unmap"
        source = d.find("source")
        assert source is not None and source.attrib == {"file": str(overlay)}
        [backing] = d.findall("backingStore")
        assert backing.get("type") == "network"
        assert backing.find("format").get("type") == "raw"  # type: ignore[union-attr]
        nbd = backing.find("source")
        assert nbd is not None and nbd.attrib == {"protocol": "nbd", "name": target}
        host = nbd.find("host")
        assert host is not None and host.attrib == {
            "transport": "unix",
            "socket": str(iplan.socket),
        }
        assert backing.find("backingStore") is not None  # the chain ends there
        assert list(d).index(backing) == list(d).index(source) + 1
        assert d.find("target") is not None
    assert disks["vda"].find("address") is not None  # bus, address, discard stay
    assert disks["sdb"].find("backingStore") is None  # the shared CD-ROM is left alone
    assert root.findtext("name") == "web-2"  # the as-new identity is kept
    assert disk_sources(ET.tostring(root, encoding="unicode"))["vda"] == str(iplan.overlays["vda"])
    assert disk_sources(final) == {
        "vda": "/srv/restores/web-2-vda.qcow2",
        "vdb": "/srv/restores/web-2-vdb.raw",
        "sdb": "/iso/debian.iso",
    }


def test_the_copy_destination_is_a_new_file_of_the_images_format() -> None:
    dest = ET.fromstring(copy_destination(Path("/srv/x.raw"), "raw"))
    assert dest.get("type") == "file"
    assert dest.find("source").get("file") == "/srv/x.raw"  # type: ignore[union-attr]
    assert dest.find("driver").get("type") == "raw"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("done", "total", "elapsed", "left"),
    [(0, 100, 5.0, None), (50, 100, 5.0, 5.0), (100, 100, 3.0, 0.0), (25, 100, 1.0, 3.0)],
)
def test_eta_is_the_rest_at_the_rate_so_far(
    done: int, total: int, elapsed: float, left: float | None
) -> None:
    assert eta(done, total, elapsed) == left


def _resolve(**kw: Any) -> Resolution:
    args = {"cleaned": False, "defined": True, "on_local": False, "copies_ready": False}
    return resolve(**(args | kw), replace=kw.pop("replace", False))


def test_recovery_after_a_kill_completes_when_it_can_and_never_loses_a_write() -> None:
    assert _resolve(cleaned=True) is Resolution.NOTHING
    assert _resolve(defined=False) is Resolution.REMOVE
    assert _resolve(on_local=True) is Resolution.FINISH
    assert _resolve(copies_ready=True) is Resolution.PIVOT
    assert _resolve() is Resolution.REBUILD  # the export is gone: rebuild + commit the overlay
    assert resolve(
        cleaned=False, defined=True, on_local=False, copies_ready=False, replace=True
    ) is Resolution.ROLL_BACK  # fmt: skip
    assert resolve(
        cleaned=False, defined=True, on_local=False, copies_ready=True, replace=True
    ) is Resolution.PIVOT  # fmt: skip


def test_the_instant_record_round_trips_through_the_journal() -> None:
    p = plan()
    iplan = plan_instant(p)
    switch = journal.Switch(
        "web-2", p.uuid, p.host_uri, PowerState.RUNNING, "<domain/>",
        [journal.Move("vda", Path("/v/a"), Path("/v/.a.instant.qcow2"), Path("/v/a.pre-restore-7"))],
    )  # fmt: skip
    rec = journal.Instant(
        "web-2", p.uuid, p.host_uri, "P1", iplan.socket, iplan.disks, "<domain/>",
        iplan.made, p.links, switch,
    )  # fmt: skip
    assert journal.Instant.from_json(rec.to_json()) == rec
    assert rec.links == [
        (Path("/var/lib/libvirt/images/web-2-vda.qcow2"), Path("/srv/restores/web-2-vda.qcow2")),
        (Path("/var/lib/libvirt/images/web-2-vdb.raw"), Path("/srv/restores/web-2-vdb.raw")),
    ]
    steps = [
        _step(journal.INSTANT, rec.to_json()),
        _step(journal.EXPORTING, {"job": 12}),
        _step(journal.PIVOTED, {"target": "vda"}),
    ]
    j = journal.RestoreJournal.read(steps)
    assert j.instant == rec and j.export_job == 12 and j.pivoted == {"vda"}
    assert InstantDisk.from_json(iplan.disks[0].to_json()) == iplan.disks[0]


def _step(name: str, data: dict[str, Any]) -> JournalStep:
    return JournalStep(1, 0, name, data, datetime(2026, 12, 1, tzinfo=UTC))


def test_the_copy_destination_escapes_its_path() -> None:
    odd = Path("/srv/a&b'<c\".raw")
    dest = ET.fromstring(copy_destination(odd, "raw"))
    assert dest.find("source").get("file") == str(odd)  # type: ignore[union-attr]
