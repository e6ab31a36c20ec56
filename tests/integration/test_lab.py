"""The lab against real libvirt, QEMU (TCG here) and real guests: no mocks.

One guest of every variant is booted once for the module (about 15 s warm); the last test
tears the lab down and checks that nothing is left. Only guests named ``lab-*`` are made,
through ``lab_up``, and ``lab_down`` removes every lab guest on the host at the end.

Directories: ``VMVAULT_LAB_DIR`` / ``VMVAULT_LAB_CACHE``, else /var/lib/vmvault/lab and
/var/cache/vmvault/lab (QEMU runs as libvirt-qemu and cannot reach anything under /root).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.guests import sh
from vmvault.hypervisor.lab import guest, iscsi
from vmvault.hypervisor.lab.vms import (
    READY_MARK,
    RECORDS_PATH,
    VARIANTS,
    LabVm,
    check_writer_records,
    lab_down,
    lab_prefix,
    lab_status,
    lab_up,
)
from vmvault.hypervisor.lab.xml import GROUP_NS, LAB_NS
from vmvault.hypervisor.libvirt import agent
from vmvault.hypervisor.libvirt.domxml import has_agent_channel

URI = "qemu:///system"
LAB_DIR = Path(os.environ.get("VMVAULT_LAB_DIR", "/var/lib/vmvault/lab"))
CACHE_DIR = Path(os.environ.get("VMVAULT_LAB_CACHE", "/var/cache/vmvault/lab"))

lab = pytest.mark.lab


# --- pure: the record checker and the image key ------------------------------------------


def _records(n: int, start: int = 1) -> bytes:
    out = []
    for seq in range(start, start + n):
        body = f"seq={seq} t={seq * 0.3:.2f} payload={seq:032x}"
        out.append(f"{body} sum={hashlib.md5(body.encode()).hexdigest()}\n")
    return "".join(out).encode()


def test_checker_accepts_intact_records_and_a_torn_tail() -> None:
    assert check_writer_records(b"").ok
    good = _records(10)
    assert check_writer_records(good) == check_writer_records(good + b"seq=11 t=3.3 payl")
    result = check_writer_records(good + b"seq=11 t=3.3 payl")
    assert (result.ok, result.records, result.last_seq) == (True, 10, 10)
    assert check_writer_records(good + b"\x00" * 100).ok  # zero-filled tail after a crash


def test_checker_rejects_corruption_gaps_and_garbage() -> None:
    good = _records(10)
    corrupt = good.replace(b"payload=" + f"{4:032x}".encode(), b"payload=" + b"f" * 32)
    result = check_writer_records(corrupt)
    assert not result.ok
    assert result.records == 3
    assert result.problem is not None and "checksum" in result.problem
    lines = good.split(b"\n")
    del lines[5]
    gap = check_writer_records(b"\n".join(lines))
    assert not gap.ok and gap.problem is not None and "seq=7 follows seq=5" in gap.problem
    assert not check_writer_records(_records(3, start=2)).ok  # the first records are lost
    assert not check_writer_records(good + b"garbage\n").ok
    assert not check_writer_records(good + b"\x00\x00junk").ok


def test_image_key_follows_every_input(tmp_path: Path) -> None:
    files = tmp_path / "guest"
    shutil.copytree(guest.GUEST_FILES_DIR, files)
    binaries = [guest.BUSYBOX]
    key = guest.image_key("linux-image-x 1", binaries, files)
    assert key == guest.image_key("linux-image-x 1", binaries, files)
    assert key != guest.image_key("linux-image-x 2", binaries, files)
    assert key != guest.image_key("linux-image-x 1", [guest.BUSYBOX, guest.QEMU_GA], files)
    with open(files / "rc.sh", "a") as fh:
        fh.write("# changed\n")
    assert key != guest.image_key("linux-image-x 1", binaries, files)


# --- lab ---------------------------------------------------------------------------------


@lab
def test_build_guest_is_cached() -> None:
    first = guest.build_guest(CACHE_DIR)
    started = time.monotonic()
    second = guest.build_guest(CACHE_DIR)
    assert time.monotonic() - started < 2.0
    assert second == first
    assert second.kernel.stat().st_size > 5_000_000
    assert second.initrd.stat().st_size > 1_000_000


@pytest.fixture(scope="module", autouse=True)
def own_prefix() -> Iterator[None]:
    """This module brings labs up and down: give it a prefix of its own, so its ``lab_down``
    never takes the session's shared guests (tests/integration/conftest.py) with it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VMVAULT_LAB_PREFIX", f"{lab_prefix()}t")
        yield


@pytest.fixture(scope="module")
def lab_vms(own_prefix: None) -> Iterator[dict[str, LabVm]]:
    """One running guest of every variant, keyed by variant."""
    vms = lab_up(URI, LAB_DIR, CACHE_DIR, dict.fromkeys(VARIANTS, 1), timeout=180)
    try:
        yield {vm.variant: vm for vm in vms}
    finally:
        lab_down(URI, LAB_DIR)


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    import libvirt

    c = libvirt.open(URI)
    yield c
    c.close()


def _dom(conn: Any, vm: LabVm) -> Any:
    return conn.lookupByName(vm.name)


@lab
def test_every_variant_is_up(lab_vms: dict[str, LabVm], conn: Any) -> None:
    assert set(lab_vms) == set(VARIANTS)
    for variant, vm in lab_vms.items():
        assert vm.name.startswith(f"{lab_prefix()}-{variant}-")
        assert vm.state == "running", vm
        dom = _dom(conn, vm)
        assert READY_MARK in vm.console_log.read_text()
        if variant == "no-agent":
            assert not has_agent_channel(dom.XMLDesc(0))
            assert not agent.ping(dom, timeout=1)
        else:
            assert has_agent_channel(dom.XMLDesc(0))
            assert agent.ping(dom)
    assert agent.info(_dom(conn, lab_vms["standard"]))["version"]


@lab
def test_lab_domains_carry_the_lab_and_group_metadata(lab_vms: dict[str, LabVm], conn: Any) -> None:
    import libvirt

    dom = _dom(conn, lab_vms["writer"])
    group = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, GROUP_NS)
    assert ET.fromstring(group).text == "lab"
    mark = ET.fromstring(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, LAB_NS))
    assert mark.get("variant") == "writer"
    names = {vm.name for vm in lab_status(URI, LAB_DIR)}
    assert {vm.name for vm in lab_vms.values()} <= names


@lab
def test_data_disks_are_ext4_at_data_and_data2(lab_vms: dict[str, LabVm], conn: Any) -> None:
    for variant in ("standard", "raw-disk", "passthrough"):
        fs = {f["mountpoint"]: f for f in agent.fsinfo(_dom(conn, lab_vms[variant]))}
        assert fs["/data"]["type"] == "ext4"
        assert fs["/data2"]["type"] == "ext4"
        assert [d["dev"] for d in fs["/data"]["disk"]] == ["/dev/vda"]
    assert int(sh(_dom(conn, lab_vms["standard"]), "du -sm /data/seed").split()[0]) >= 16


@lab
def test_raw_disk_variant_has_a_raw_second_disk(lab_vms: dict[str, LabVm], conn: Any) -> None:
    vm = lab_vms["raw-disk"]
    assert [p.name for p in vm.disks] == ["data.qcow2", "data2.raw"]
    xml = _dom(conn, vm).XMLDesc(0)
    formats = {}
    for disk in ET.fromstring(xml).iter("disk"):
        driver, target = disk.find("driver"), disk.find("target")
        assert driver is not None and target is not None
        formats[target.get("dev")] = driver.get("type")
    assert formats == {"vda": "qcow2", "vdb": "raw"}


@lab
def test_passthrough_variant_has_a_lun_the_guest_sees(lab_vms: dict[str, LabVm], conn: Any) -> None:
    dom = _dom(conn, lab_vms["passthrough"])
    luns = ET.fromstring(dom.XMLDesc(0)).findall("devices/disk[@device='lun']")
    assert len(luns) == 1
    assert luns[0].find("target[@bus='scsi']") is not None
    parts = agent.exec_(dom, "/bin/cat", ["/proc/partitions"]).stdout.decode()
    assert " sda" in parts


@lab
def test_writer_records_pass_the_checker(lab_vms: dict[str, LabVm], conn: Any) -> None:
    dom = _dom(conn, lab_vms["writer"])
    deadline = time.monotonic() + 30
    while True:
        result = check_writer_records(agent.read_file(dom, RECORDS_PATH))
        if result.records >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.ok, result.problem
    assert result.records >= 5
    later = check_writer_records(agent.read_file(dom, RECORDS_PATH))
    assert later.ok and later.last_seq >= result.last_seq


@lab
def test_app_hook_runs_on_freeze_and_thaw(lab_vms: dict[str, LabVm], conn: Any) -> None:
    dom = _dom(conn, lab_vms["app-hook"])
    try:
        assert dom.fsFreeze() == 2
        assert agent.agent_command(dom, "guest-fsfreeze-status") == "frozen"
    finally:
        assert dom.fsThaw() == 2
    log = agent.read_file(dom, "/run/fsfreeze-hook.log").decode().split()
    assert log[0::2] == ["freeze", "thaw"]
    assert agent.read_file(dom, "/data/app/hook.log").decode().split()[0::2] == log[0::2]
    state = agent.read_file(dom, "/data/app/state").decode()
    assert "counter=" in state and "token=" in state


@lab
def test_second_lab_up_adds_guests(lab_vms: dict[str, LabVm]) -> None:
    number = int(lab_vms["standard"].name.rsplit("-", 1)[1])
    (added,) = lab_up(URI, LAB_DIR, CACHE_DIR, {"standard": 1})
    assert added.name == f"{lab_prefix()}-standard-{number + 1}"
    assert added.state == "running"


@lab
def test_lab_down_leaves_nothing(lab_vms: dict[str, LabVm], conn: Any) -> None:
    # Give a guest checkpoint metadata (and qcow2 bitmaps), which a plain undefine refuses.
    _dom(conn, lab_vms["standard"]).checkpointCreateXML(
        "<domaincheckpoint><name>lab-test</name></domaincheckpoint>"
    )
    names = set(lab_down(URI, LAB_DIR))
    assert {vm.name for vm in lab_vms.values()} <= names
    assert lab_status(URI, LAB_DIR) == []
    assert not [d.name() for d in conn.listAllDomains(0) if d.name() in names]
    qemus = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True).stdout
    prefix = lab_prefix()
    left = [line for line in qemus.splitlines() if f"guest={prefix}-" in line]
    assert left == []
    assert not [d for d in (LAB_DIR / "vms").iterdir() if d.name.startswith(f"{prefix}-")]
    assert not list(Path("/var/lib/libvirt/qemu/checkpoint").glob(f"{lab_prefix()}-*"))
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert str(LAB_DIR) not in loops
    other_labs = [d for d in conn.listAllDomains(0) if LAB_NS in d.XMLDesc(0)]
    if other_labs:  # tgtd is shared by the labs of every prefix: it stays, our targets go
        ours = iscsi.IQN_PREFIX + f"{prefix}-"
        tgt = iscsi.tgt_tools(CACHE_DIR)
        assert [iqn for iqn in iscsi.targets(tgt) if iqn.startswith(ours)] == []
    else:  # the last lab is gone: so is tgtd, whichever lab started it
        assert _tgtd_pids() == []


def _tgtd_pids() -> list[int]:
    """Processes of a tgtd serving the lab's iSCSI port."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if (
            Path(argv[0].decode(errors="replace")).name == "tgtd"
            and str(iscsi.PORT).encode() in argv
        ):
            pids.append(int(cmdline.parent.name))
    return pids
