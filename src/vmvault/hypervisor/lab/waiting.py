"""Waiting for lab guests to come up, and taking them down again.

A guest with an agent is up when ``guest-ping`` answers: libvirt answers at once with an
error while the guest has not opened its end of the channel, so polling is cheap. A guest
without an agent is up when its console log shows the READY line that ``rc.sh`` prints last.
Every failure carries the tail of the guest's console log: that is where a kernel panic, a
missing module or a failed mount shows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import libvirt

from vmvault.domain.errors import LabFailed, LabGuestTimeout
from vmvault.hypervisor.lab.xml import console_log
from vmvault.hypervisor.libvirt.agent import ping
from vmvault.hypervisor.libvirt.connection import error_message

READY_MARK = "LABGUEST-READY"

STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no-state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "in-shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut-off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pm-suspended",
}


def console_tail(path: Path | None, lines: int = 20) -> str:
    """The last ``lines`` lines of a console log, introduced by its path (for error details)."""
    if path is None:
        return "(no console log configured)"
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"
    body = "\n".join(text.splitlines()[-lines:]) or "(empty)"
    return f"console log {path} (last {lines} lines):\n{body}"


def wait_for_agent(dom: Any, timeout: float) -> None:
    """Return once the guest agent of ``dom`` answers guest-ping.

    Raises :class:`LabGuestTimeout`, with the tail of the guest's console log, if it does not
    within ``timeout`` seconds or if the domain stops running meanwhile.
    """
    deadline = time.monotonic() + timeout
    while True:
        if ping(dom, timeout=2):
            return
        problem = not_running(dom)
        if problem or time.monotonic() > deadline:
            raise LabGuestTimeout(
                f"{problem + '; ' if problem else ''}{console_tail(_console_of(dom))}",
                vm=dom.name(),
                seconds=round(timeout),
            )
        time.sleep(0.2)


def _console_of(dom: Any) -> Path | None:
    try:
        return console_log(dom.XMLDesc(0))
    except libvirt.libvirtError:
        return None


def not_running(dom: Any) -> str | None:
    """None while ``dom`` runs; otherwise a phrase saying what it is instead."""
    try:
        state = dom.state()[0]
    except libvirt.libvirtError as exc:
        return f"the domain is gone ({error_message(exc)})"
    if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
        return None
    return f"the domain is {STATES.get(state, 'unknown')}"


def wait_for_ready(dom: Any, log_path: Path, timeout: float) -> None:
    """For guests without an agent: wait for the READY line on the serial console."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if READY_MARK in log_path.read_text(errors="replace"):
                return
        except OSError:
            pass
        problem = not_running(dom)
        if problem or time.monotonic() > deadline:
            raise LabGuestTimeout(
                f"no agent channel, and no {READY_MARK} line on the console; "
                f"{problem + '; ' if problem else ''}{console_tail(log_path)}",
                vm=dom.name(),
                seconds=round(timeout),
            )
        time.sleep(0.2)


def destroy_and_undefine(dom: Any) -> None:
    """Stop ``dom`` hard and undefine it with its checkpoint, snapshot and NVRAM metadata.

    A plain undefine refuses a domain that has checkpoints (libvirt keeps their metadata in
    /var/lib/libvirt/qemu/checkpoint/NAME/); the flags make libvirt drop it too.
    """
    for attempt in range(5):
        try:
            if dom.isActive():
                dom.destroy()
            break
        except libvirt.libvirtError as exc:
            if attempt == 4:
                raise LabFailed(f"cannot stop {dom.name()}: {error_message(exc)}") from None
            time.sleep(0.5)
    flags = (
        libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
        | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    )
    try:
        if dom.isPersistent():
            dom.undefineFlags(flags)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise LabFailed(f"cannot undefine {dom.name()}: {error_message(exc)}") from None
