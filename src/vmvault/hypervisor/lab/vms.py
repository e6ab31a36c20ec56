"""Lab VMs: real libvirt guests of known shapes that vmvault's tests back up and restore.

``lab_up`` makes guests named ``lab-<variant>-<n>`` (numbers continue after the highest that
exists, so a second call adds guests and never recreates one), boots them all in parallel
and waits until every one answers ``guest-ping`` (or, without an agent, prints its READY line).
``lab_status`` lists them, ``lab_down`` removes them and everything they left behind.

The variants (one initramfs for all; the kernel parameter ``vmvault.variant`` tells the guest
which one it is):

==============  ===========================================================================
standard        agent channel; vda ``data.qcow2`` (ext4, /data), vdb ``data2.qcow2`` (/data2)
no-agent        as standard without the agent channel (crash-consistent backups only)
raw-disk        as standard, but vdb is ``data2.raw`` (raw disks support no checkpoints)
passthrough     as standard plus a pass-through SCSI LUN (``device='lun'``, over iSCSI: see
                :mod:`~vmvault.hypervisor.lab.iscsi`), a disk backups must leave out
writer          as standard; the guest appends checksummed records to /data/writer/records.log
                (:func:`check_writer_records` verifies a copy)
app-hook        as standard; qemu-ga runs an fsfreeze hook that makes a tiny app flush its
                in-memory state to /data/app/state and logs freeze/thaw to /data/app/hook.log
files           as standard plus vdc ``files.raw``: xfs in a partition and ext4 in LVM logical
                volumes, with an /etc/fstab (:mod:`~vmvault.hypervisor.lab.files_disk`; the
                guest mounts none of them); not in the integration tests' session lab, the
                file-restore tests start it themselves
==============  ===========================================================================

Layout: ``LAB_DIR/vms/<name>/`` holds the VM's disks, its console log and hard links to the
kernel and initramfs; ``LAB_DIR/daemon/`` the libvirtd/virtlogd/tgtd state.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt

from vmvault.domain.errors import (
    HostUnreachable,
    InvalidInput,
    LabFailed,
    VmvaultError,
)
from vmvault.hypervisor.daemons import ensure_libvirtd, quiet_libvirt
from vmvault.hypervisor.host import qemu_log_tail
from vmvault.hypervisor.lab import iscsi
from vmvault.hypervisor.lab.disks import Templates, build_templates, copy_disk, files_templates
from vmvault.hypervisor.lab.fsutil import check_traversable, link_or_copy, locked, make_dirs
from vmvault.hypervisor.lab.guest import GuestImage, build_guest
from vmvault.hypervisor.lab.waiting import (
    READY_MARK,
    STATES,
    destroy_and_undefine,
    wait_for_agent,
    wait_for_ready,
)
from vmvault.hypervisor.lab.writer import RECORDS_PATH, WriterCheck, check_writer_records
from vmvault.hypervisor.lab.xml import (
    DomainSpec,
    FileDisk,
    IscsiLun,
    console_log,
    domain_xml,
    file_disks,
    iscsi_iqns,
    lab_mark,
)
from vmvault.hypervisor.libvirt.connection import error_message

VARIANTS: tuple[str, ...] = (
    "standard",
    "no-agent",
    "raw-disk",
    "passthrough",
    "writer",
    "app-hook",
    "files",
)

__all__ = [
    "READY_MARK",
    "RECORDS_PATH",
    "VARIANTS",
    "LabVm",
    "WriterCheck",
    "check_writer_records",
    "domain_type",
    "lab_down",
    "lab_status",
    "lab_up",
    "wait_for_agent",
]


@dataclass
class LabVm:
    """A lab guest as libvirt sees it."""

    name: str
    variant: str
    uuid: str
    state: str
    disks: list[Path] = field(default_factory=list)
    console_log: Path = Path("/dev/null")


def lab_prefix() -> str:
    """Name prefix of this lab's guests: ``VMVAULT_LAB_PREFIX`` or ``lab``.

    Separate prefixes let several labs share one libvirtd (e.g. two test runs at once):
    each ``lab_status``/``lab_down`` only sees guests named ``<prefix>-<variant>-<n>``.
    """
    prefix = os.environ.get("VMVAULT_LAB_PREFIX") or "lab"
    if not re.fullmatch(r"[a-z][a-z0-9]{0,15}", prefix):
        raise LabFailed(f"VMVAULT_LAB_PREFIX={prefix!r}: use 1-16 lower-case letters or digits")
    return prefix


def _own(name: str, prefix: str) -> bool:
    return re.fullmatch(rf"{re.escape(prefix)}-[a-z-]+-[0-9]+", name) is not None


def domain_type() -> str:
    """``kvm`` only where hardware virtualization really exists, else ``qemu`` (TCG).

    ``/dev/kvm`` alone proves nothing: on these hosts it is PVM (``kvm_pvm``), which cannot
    run a stock Debian kernel. So the CPU must also advertise vmx or svm.
    """
    if not Path("/dev/kvm").exists():
        return "qemu"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "qemu"
    return "kvm" if re.search(r"^flags\s*:.*\b(vmx|svm)\b", cpuinfo, re.M) else "qemu"


# --- helpers ---------------------------------------------------------------------------------


def _is_local(uri: str) -> bool:
    return uri.startswith("qemu:///")


def _connect(uri: str, lab_dir: Path) -> Any:
    quiet_libvirt()
    if _is_local(uri):
        ensure_libvirtd(lab_dir / "daemon")
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise HostUnreachable(error_message(exc), uri=uri) from None


def _lab_domains(conn: Any, prefix: str | None = None) -> list[tuple[Any, str]]:
    """(domain, XML) of every domain that carries the lab mark (and, given a prefix, is
    named ``<prefix>-<variant>-<n>``)."""
    out = []
    for dom in conn.listAllDomains(0):
        if prefix is not None and not _own(dom.name(), prefix):
            continue
        try:
            xml = dom.XMLDesc(0)
        except libvirt.libvirtError:
            continue  # vanished meanwhile
        if lab_mark(xml) is not None:
            out.append((dom, xml))
    return out


def _to_vm(dom: Any, xml: str) -> LabVm:
    mark = lab_mark(xml)
    try:
        state = STATES.get(dom.state()[0], "unknown")
    except libvirt.libvirtError:
        state = "unknown"
    return LabVm(
        name=dom.name(),
        variant=mark.variant if mark else "",
        uuid=dom.UUIDString(),
        state=state,
        disks=file_disks(xml),
        console_log=console_log(xml) or Path("/dev/null"),
    )


def _sort_key(vm: LabVm) -> tuple[int, int, str]:
    m = re.search(r"-([0-9]+)\Z", vm.name)
    idx = VARIANTS.index(vm.variant) if vm.variant in VARIANTS else len(VARIANTS)
    return (idx, int(m.group(1)) if m else 0, vm.name)


# --- lab up ----------------------------------------------------------------------------------


def _next_names(
    conn: Any, lab_dir: Path, counts: dict[str, int], prefix: str
) -> list[tuple[str, str]]:
    taken = {d.name() for d in conn.listAllDomains(0)}
    vms_dir = lab_dir / "vms"
    if vms_dir.is_dir():
        taken |= {p.name for p in vms_dir.iterdir()}
    out = []
    for variant in VARIANTS:
        pattern = re.compile(rf"{re.escape(prefix)}-{re.escape(variant)}-([0-9]+)")
        n = max((int(m.group(1)) for t in taken if (m := pattern.fullmatch(t))), default=0)
        for i in range(1, counts.get(variant, 0) + 1):
            out.append((variant, f"{prefix}-{variant}-{n + i}"))
    return out


def _prepare(
    name: str,
    variant: str,
    lab_dir: Path,
    image: GuestImage,
    tpl: Templates,
    tgt_sbin: Path | None,
    files_tpl: Path | None = None,
) -> DomainSpec:
    """Make the VM's directory: hard links to the boot files, private disk copies, a LUN."""
    vm_dir = lab_dir / "vms" / name
    make_dirs(vm_dir)
    for src in (image.kernel, image.initrd):
        if not (vm_dir / src.name).exists():
            link_or_copy(src, vm_dir / src.name)
    disks = [FileDisk("vda", vm_dir / "data.qcow2", "qcow2")]
    if variant == "raw-disk":
        disks.append(FileDisk("vdb", vm_dir / "data2.raw", "raw"))
    else:
        disks.append(FileDisk("vdb", vm_dir / "data2.qcow2", "qcow2"))
    templates = {
        "data.qcow2": tpl.data_qcow2,
        "data2.qcow2": tpl.data2_qcow2,
        "data2.raw": tpl.data2_raw,
    }
    if variant == "files":
        assert files_tpl is not None
        disks.append(FileDisk("vdc", vm_dir / "files.raw", "raw"))
        templates["files.raw"] = files_tpl
    for d in disks:
        copy_disk(templates[d.path.name], d.path)
    luns = []
    if variant == "passthrough":
        assert tgt_sbin is not None
        iqn = iscsi.add_lun(tgt_sbin, name, vm_dir / "lun.img")
        luns.append(IscsiLun("sda", iqn, 1, iscsi.PORTAL_HOST, iscsi.PORT))
    return DomainSpec(
        name=name,
        uuid=str(uuid.uuid4()),
        variant=variant,
        vm_dir=vm_dir,
        kernel=vm_dir / image.kernel.name,
        initrd=vm_dir / image.initrd.name,
        console_log=vm_dir / "console.log",
        domain_type=domain_type(),
        agent=variant != "no-agent",
        disks=disks,
        luns=luns,
    )


def _define(conn: Any, spec: DomainSpec) -> Any:
    try:
        return conn.defineXML(domain_xml(spec))
    except libvirt.libvirtError as exc:
        raise LabFailed(f"cannot define {spec.name}: {error_message(exc)}") from None


def _boot(conn: Any, spec: DomainSpec, deadline: float, log: Callable[[str], None]) -> None:
    started = time.monotonic()
    try:
        dom = conn.lookupByName(spec.name)
        dom.create()
    except libvirt.libvirtError as exc:
        raise LabFailed(
            f"{spec.name} did not start: {error_message(exc)}\n{qemu_log_tail(spec.name)}"
        ) from None
    remaining = max(1.0, deadline - time.monotonic())
    if spec.agent:
        wait_for_agent(dom, remaining)
    else:
        wait_for_ready(dom, spec.console_log, remaining)
    log(f"{spec.name} up in {time.monotonic() - started:.1f}s")


def lab_up(
    uri: str,
    lab_dir: Path,
    cache_dir: Path,
    counts: dict[str, int],
    *,
    timeout: float = 120.0,
    log: Callable[[str], None] = lambda s: None,
    prefix: str | None = None,
) -> list[LabVm]:
    """Create, boot and wait for ``counts[variant]`` new guests of each variant, named
    ``<prefix>-<variant>-<n>`` (``prefix``: :func:`lab_prefix` when not given).

    Returns the new guests (existing lab guests are left alone). On failure the guests made so
    far stay defined, for inspection; ``lab_down`` removes them.
    """
    for variant, n in counts.items():
        if variant not in VARIANTS:
            raise InvalidInput(
                f"choose from {', '.join(VARIANTS)}", what=f"lab variant {variant!r}"
            )
        if not isinstance(n, int) or n < 0:
            raise InvalidInput("give a count of 0 or more", what=f"count {n!r} for {variant}")
    if not any(counts.values()):
        return []
    lab_dir, cache_dir = Path(lab_dir).absolute(), Path(cache_dir).absolute()
    check_traversable(lab_dir)
    check_traversable(cache_dir)
    make_dirs(lab_dir / "vms")
    make_dirs(cache_dir)
    conn = _connect(uri, lab_dir)
    try:
        image = build_guest(cache_dir, log=log)
        tpl = build_templates(cache_dir, log=log)
        files_tpl = files_templates(cache_dir, log=log)[0] if counts.get("files") else None
        tgt = None
        if counts.get("passthrough"):
            tgt = iscsi.ensure_tgtd(cache_dir, lab_dir / "daemon" / "tgt")
        with locked(lab_dir / ".lab.lock"):  # two lab_up calls must not pick the same names
            specs = [
                _prepare(name, variant, lab_dir, image, tpl, tgt, files_tpl)
                for variant, name in _next_names(conn, lab_dir, counts, prefix or lab_prefix())
            ]
            for spec in specs:
                _define(conn, spec)
        log(f"booting {len(specs)} guest(s): {', '.join(s.name for s in specs)}")
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(max_workers=len(specs)) as pool:
            futures = [pool.submit(_boot, conn, s, deadline, log) for s in specs]
            errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None]
        if failed:
            first = failed[0]
            if not isinstance(first, VmvaultError):
                raise LabFailed(f"unexpected failure: {first!r}") from first
            if len(failed) > 1:
                others = "; ".join(str(e).splitlines()[0] for e in failed[1:])
                detail = f"{first.detail or ''}\n(also failed: {others})"
                raise type(first)(detail, **first.fields)
            raise first
        by_name = {dom.name(): (dom, xml) for dom, xml in _lab_domains(conn)}
        return [_to_vm(*by_name[s.name]) for s in specs]
    finally:
        conn.close()


# --- status and down -------------------------------------------------------------------------


def lab_status(uri: str, lab_dir: Path, prefix: str | None = None) -> list[LabVm]:
    """Every lab guest on ``uri`` (running or not), in variant and number order."""
    conn = _connect(uri, Path(lab_dir).absolute())
    try:
        guests = _lab_domains(conn, prefix or lab_prefix())
        return sorted((_to_vm(d, x) for d, x in guests), key=_sort_key)
    finally:
        conn.close()


def lab_down(uri: str, lab_dir: Path, prefix: str | None = None) -> list[str]:
    """Remove every lab guest: stop, undefine (with checkpoint/snapshot metadata), delete files.

    Also removes half-created guests (a directory without a domain) and stops the lab's tgtd.
    Returns the names removed.
    """
    lab_dir = Path(lab_dir).absolute()
    conn = _connect(uri, lab_dir)
    tgt = iscsi.recorded_tools(lab_dir / "daemon" / "tgt")
    prefix = prefix or lab_prefix()
    removed = []
    try:
        for dom, xml in _lab_domains(conn, prefix):
            name = dom.name()
            destroy_and_undefine(dom)
            if tgt:
                for iqn in iscsi_iqns(xml):
                    iscsi.remove_target(tgt, iqn)
            mark = lab_mark(xml)
            vm_dir = mark.vm_dir if mark and mark.vm_dir else lab_dir / "vms" / name
            if vm_dir.name == name:  # never trust metadata to point at anything else
                shutil.rmtree(vm_dir, ignore_errors=True)
            removed.append(name)
        names = {d.name() for d in conn.listAllDomains(0)}
        others = _lab_domains(conn)  # guests of other prefixes may still use tgtd
    finally:
        conn.close()
    vms_dir = lab_dir / "vms"
    if vms_dir.is_dir():
        for d in vms_dir.iterdir():
            if _own(d.name, prefix) and d.name not in names:
                if tgt:
                    iscsi.remove_target(tgt, iscsi.IQN_PREFIX + d.name)
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d.name)
    if not others:
        iscsi.stop_tgtd(lab_dir / "daemon" / "tgt", tgt)
    return sorted(set(removed))
