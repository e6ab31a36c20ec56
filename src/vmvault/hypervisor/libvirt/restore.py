"""The libvirt side of a restore: the domain's life cycle on its host.

:class:`LibvirtRestoreDriver` is the service's ``RestoreDriver``: default directory,
networks, shutdown, undefine, define, start, guest agent, image checks; the domain XML in and
out is :mod:`vmvault.hypervisor.libvirt.restore_xml`.

Facts that shape this module (libvirt 9.0, QEMU 7.2, measured on the lab):

* A plain ``undefine`` refuses a domain with checkpoints; ``--replace`` undefines with the
  checkpoint metadata, the managed-save image (its memory would not match the new disks) and
  keeps NVRAM and TPM state (same VM, same uuid).
* ``virDomainShutdownFlags(GUEST_AGENT)`` waits for the agent forever by default: the agent's
  response timeout is set to 5 s around it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt

from vmvault.domain.errors import (
    AgentCommandFailed,
    HostUnreachable,
    RestoreDefineFailed,
    RestoreShutdownFailed,
    RestoreStartFailed,
    RestoreVerifyFailed,
    VmDeleted,
)
from vmvault.domain.restore import (
    FALLBACK_DEFAULT_DIR,
    DomainShape,
    LiveDomain,
    RestorePlan,
    XmlNic,
)
from vmvault.domain.vm import PowerState
from vmvault.hypervisor.host import qemu_log_tail
from vmvault.hypervisor.libvirt import agent
from vmvault.hypervisor.libvirt.connection import connection, error_message, lookup_domain
from vmvault.hypervisor.libvirt.domxml import (
    POWER_STATES,
    has_agent_channel,
)
from vmvault.hypervisor.libvirt.restore_xml import DEFAULT_POOL, inspect_xml, render_xml


def _power(dom: Any) -> PowerState:
    return POWER_STATES.get(dom.state()[0], PowerState.UNKNOWN)


class LibvirtRestoreDriver:
    """The restore service's ``RestoreDriver`` over libvirt (local hosts)."""

    def __init__(self, poll: float = 0.25) -> None:
        self.poll = poll

    def inspect(self, xml: str) -> DomainShape:
        return inspect_xml(xml)

    def render(self, xml: str, plan: RestorePlan) -> str:
        return render_xml(xml, plan)

    # --- host ----------------------------------------------------------------------------------

    def is_local(self, uri: str) -> bool:
        """True when ``uri`` is a libvirtd on this machine (files written here are its files)."""
        if uri.startswith(("qemu:///", "qemu+unix:///")):
            return True
        with connection(uri) as conn:
            try:
                remote = str(conn.getHostname())
            except libvirt.libvirtError as exc:
                raise HostUnreachable(error_message(exc), uri=uri) from None
        local = socket.gethostname()
        return remote.split(".")[0] == local.split(".")[0]

    def default_dir(self, uri: str) -> Path:
        """The directory of the storage pool ``default``; without one, /var/lib/libvirt/images
        (created 0711 like Debian's libvirt package does)."""
        with connection(uri) as conn:
            try:
                pool = conn.storagePoolLookupByName(DEFAULT_POOL)
                path = ET.fromstring(pool.XMLDesc(0)).findtext("./target/path")
                if path:
                    return Path(path)
            except libvirt.libvirtError:
                pass
        if not FALLBACK_DEFAULT_DIR.is_dir():
            FALLBACK_DEFAULT_DIR.mkdir(parents=True, exist_ok=True)
            FALLBACK_DEFAULT_DIR.chmod(0o711)
        return FALLBACK_DEFAULT_DIR

    def refresh_default_pool(self, uri: str) -> None:
        """Let libvirt's pool ``default`` (if any) see the images and links just written."""
        with connection(uri) as conn:
            try:
                pool = conn.storagePoolLookupByName(DEFAULT_POOL)
                if pool.isActive():
                    pool.refresh(0)
            except libvirt.libvirtError:
                pass

    def dir_problem(self, path: Path) -> str | None:
        """Why ``path`` (existing or to be created) cannot take restored disks, or None."""
        path = path.absolute()
        probe = path
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            return f"{probe} is not a directory"
        if not os.access(probe, os.W_OK | os.X_OK):
            return f"{probe} is not writable"
        for p in (probe, *probe.parents):
            mode = p.stat().st_mode
            if not mode & stat.S_IXOTH:
                return f"QEMU (user libvirt-qemu) cannot enter {p} (mode {stat.filemode(mode)})"
        return None

    def nic_problem(self, uri: str, nic: XmlNic) -> str | None:
        """Why a NIC cannot be attached as it was (network/bridge missing or inactive)."""
        if nic.type == "network" and nic.source:
            with connection(uri) as conn:
                try:
                    net = conn.networkLookupByName(nic.source)
                except libvirt.libvirtError:
                    return f"network '{nic.source}' does not exist on {uri}"
                try:
                    if not net.isActive():
                        return f"network '{nic.source}' is not active on {uri}"
                except libvirt.libvirtError as exc:
                    return f"network '{nic.source}': {error_message(exc)}"
            return None
        if nic.type == "bridge" and nic.source:
            if not Path("/sys/class/net", nic.source, "bridge").is_dir():
                return f"bridge '{nic.source}' does not exist on {uri}"
            return None
        if nic.type == "direct" and nic.source and not Path("/sys/class/net", nic.source).exists():
            return f"host interface '{nic.source}' does not exist on {uri}"
        return None

    def used_macs(self, uri: str) -> set[str]:
        """Every MAC address of every domain on the host (new ones must differ)."""
        out: set[str] = set()
        with connection(uri) as conn:
            for dom in conn.listAllDomains(0):
                try:
                    root = ET.fromstring(dom.XMLDesc(0))
                except (libvirt.libvirtError, ET.ParseError):
                    continue
                out |= {
                    m.get("address", "").lower() for m in root.findall("./devices/interface/mac")
                }
        return out

    # --- domains -------------------------------------------------------------------------------

    def domain_named(self, uri: str, name: str) -> str | None:
        """The uuid of the domain called ``name`` on the host, or None."""
        with connection(uri) as conn:
            try:
                return str(conn.lookupByName(name).UUIDString())
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                raise HostUnreachable(error_message(exc), uri=uri) from None

    def domain(self, uri: str, uuid: str) -> LiveDomain | None:
        with connection(uri) as conn:
            try:
                dom = conn.lookupByUUIDString(uuid)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                raise HostUnreachable(error_message(exc), uri=uri) from None
            try:
                flags = libvirt.VIR_DOMAIN_XML_INACTIVE if dom.isPersistent() else 0
                return LiveDomain(
                    uuid=uuid,
                    name=str(dom.name()),
                    power=_power(dom),
                    xml=str(dom.XMLDesc(flags)),
                    snapshots=[str(s.getName()) for s in dom.listAllSnapshots(0)],
                    checkpoints=[str(c.getName()) for c in dom.listAllCheckpoints(0)],
                )
            except libvirt.libvirtError as exc:
                raise HostUnreachable(error_message(exc), uri=uri) from None

    def shutdown(self, uri: str, uuid: str, timeout: float) -> str:
        """Shut the domain off: through the agent (else ACPI), forced after ``timeout`` s.

        Returns how it went, for the job log.
        """
        with connection(uri) as conn:
            dom = lookup_domain(conn, uri, uuid)
            name = str(dom.name())
            if not dom.isActive():
                return "already shut off"
            started = time.monotonic()
            how = "forced (the VM was paused)"
            if _power(dom) is not PowerState.PAUSED:
                how = self._ask_shutdown(dom)
                deadline = started + timeout
                while time.monotonic() < deadline:
                    if not dom.isActive():
                        return f"{how} in {time.monotonic() - started:.1f} s"
                    time.sleep(self.poll)
                how = f"{how} did not finish within {timeout:g} s: forced off"
            for attempt in range(5):
                try:
                    if dom.isActive():
                        dom.destroy()
                    break
                except libvirt.libvirtError as exc:
                    if attempt == 4:
                        raise RestoreShutdownFailed(error_message(exc), vm=name) from None
                    time.sleep(0.5)
            return f"{how} ({time.monotonic() - started:.1f} s)"

    def _ask_shutdown(self, dom: Any) -> str:
        if has_agent_channel(dom.XMLDesc(0)) and agent.ping(dom, timeout=2):
            try:
                with agent.response_timeout(dom, 5):
                    dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT)
                return "shutdown through the guest agent"
            except libvirt.libvirtError:
                pass
        try:
            dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
            return "ACPI shutdown"
        except libvirt.libvirtError as exc:
            return f"no graceful shutdown ({error_message(exc)})"

    def undefine(self, uri: str, uuid: str) -> None:
        """Undefine a shut-off domain with its checkpoint metadata and managed-save image,
        keeping NVRAM and TPM state (``--replace`` defines the same VM again)."""
        flags = (
            libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM
            | libvirt.VIR_DOMAIN_UNDEFINE_KEEP_TPM
        )
        with connection(uri) as conn:
            dom = lookup_domain(conn, uri, uuid)
            try:
                dom.undefineFlags(flags)
            except libvirt.libvirtError as exc:
                raise RestoreDefineFailed(
                    f"undefine: {error_message(exc)}", vm=dom.name()
                ) from None

    def define(self, uri: str, xml: str) -> str:
        """Define the domain; returns its uuid."""
        name = ET.fromstring(xml).findtext("name", default="?")
        with connection(uri) as conn:
            try:
                return str(conn.defineXML(xml).UUIDString())
            except libvirt.libvirtError as exc:
                raise RestoreDefineFailed(error_message(exc), vm=name) from None

    def start(self, uri: str, uuid: str) -> None:
        with connection(uri) as conn:
            dom = lookup_domain(conn, uri, uuid)
            try:
                dom.create()
            except libvirt.libvirtError as exc:
                name = str(dom.name())
                raise RestoreStartFailed(
                    f"{error_message(exc)}\n{qemu_log_tail(name)}".strip(), vm=name
                ) from None

    def wait_for_agent(self, uri: str, uuid: str, timeout: float) -> bool:
        """True once the guest agent answers guest-ping; False if the domain stops or the
        time runs out."""
        deadline = time.monotonic() + timeout
        with connection(uri) as conn:
            dom = lookup_domain(conn, uri, uuid)
            while True:
                if agent.ping(dom, timeout=2):
                    return True
                try:
                    if not dom.isActive():
                        return False
                except libvirt.libvirtError:
                    return False
                if time.monotonic() > deadline:
                    return False
                time.sleep(self.poll)

    def guest_filesystems(self, uri: str, uuid: str) -> list[dict[str, Any]] | None:
        """``guest-get-fsinfo`` now, or None when the agent does not answer."""
        with connection(uri) as conn:
            dom = lookup_domain(conn, uri, uuid)
            try:
                return agent.fsinfo(dom, timeout=10)
            except AgentCommandFailed:
                return None

    def console_tail(self, uri: str, uuid: str, lines: int = 20) -> str:
        """The last lines of the domain's console log, if it has one (for a failure report)."""
        with connection(uri) as conn:
            try:
                root = ET.fromstring(lookup_domain(conn, uri, uuid).XMLDesc(0))
            except (libvirt.libvirtError, VmDeleted):
                return ""
        log = root.find("./devices/serial/log")
        if log is None or not log.get("file"):
            return ""
        try:
            text = Path(log.get("file", "")).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def remove(self, uri: str, uuid: str) -> None:
        """Destroy and undefine a domain with all its metadata, NVRAM and TPM state (the
        restore test's VM, or a half-made new VM).  Gone already: nothing to do."""
        flags = (
            libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            | libvirt.VIR_DOMAIN_UNDEFINE_TPM
        )
        with connection(uri) as conn:
            try:
                dom = conn.lookupByUUIDString(uuid)
            except libvirt.libvirtError:
                return
            for attempt in range(5):
                try:
                    if dom.isActive():
                        dom.destroy()
                    break
                except libvirt.libvirtError:
                    if attempt == 4:
                        raise
                    time.sleep(0.5)
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isPersistent():
                    dom.undefineFlags(flags)

    # --- images --------------------------------------------------------------------------------

    def image_size(self, path: Path, fmt: str, target: str) -> int:
        """Virtual size of the restored image of disk ``target`` as QEMU reads it; a qcow2
        must also pass ``qemu-img check``.  Raises ``RESTORE_VERIFY_FAILED`` otherwise."""

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            try:
                return subprocess.run(
                    ["qemu-img", *args], capture_output=True, text=True, timeout=300, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise RestoreVerifyFailed(str(exc), target=target, why="qemu-img failed") from None

        info = run("info", "--output=json", "-f", fmt, str(path))
        if info.returncode != 0:
            raise RestoreVerifyFailed(info.stderr.strip(), target=target, why="unreadable image")
        size = int(json.loads(info.stdout)["virtual-size"])
        if fmt == "qcow2":
            check = run("check", "-f", "qcow2", str(path))
            if check.returncode != 0:
                raise RestoreVerifyFailed(
                    (check.stdout + check.stderr).strip()[-500:],
                    target=target,
                    why="qemu-img check failed",
                )
        return size
