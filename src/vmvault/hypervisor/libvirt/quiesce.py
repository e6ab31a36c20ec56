"""Holding the guest still for the point in time: freeze / thaw, pause / resume, with retries.

The window is as short as it can be: only ``backupBegin`` (and an in-memory hook) runs inside
it.  Two context managers own "always release the guest, even on error":

* :func:`freeze_window` — ``fsFreeze`` through the guest agent, yield, ``fsThaw`` in a
  ``finally``, with retries.  A freeze that fails or times out is recorded in
  :attr:`Window.freeze_error` (the caller then verifies the thaw and takes a saved-state
  point: :class:`~vmvault.hypervisor.libvirt.backup.PullBackup`).  A freeze that libvirt timed out
  **still reaches the guest** once a hung agent wakes up, so every failed freeze — except "no
  agent" and "not connected" — is followed by thaw retries (budget
  ``max(10, 3 × freeze_timeout)`` s).  ``virDomainFSFreeze`` waits for the agent forever by
  default: the window sets ``agentSetResponseTimeout(freeze_timeout)`` around freeze and thaw;
* :func:`pause_window` — ``suspend``, yield, ``resume`` in a ``finally`` (retried for 10 s);
* :func:`freeze_or_pause` — the two together for ``quiesce="freeze"``: the freeze window, or
  after a failed freeze the thaw verified and the saved-state pause (or ``FREEZE_REQUIRED``).

A thaw or resume that finally fails leaves :attr:`Window.held` true: the caller retries once
more when it ends (``PullBackup.__exit__``), and the clean-up after a dead process
(:mod:`~vmvault.hypervisor.libvirt.stale`) uses the same :func:`thaw` and :func:`resume`.

Before a freeze, :func:`why_not_freeze` decides whether to try at all: no agent channel, a
paused VM (its agent cannot answer) or an agent that does not answer ``guest-ping`` within
``min(5, freeze_timeout)`` s — pinging first avoids queueing a freeze nobody would thaw.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import libvirt

from vmvault.domain.consistency import NOT_RUN, HookOutcome
from vmvault.domain.errors import (
    AgentFreezeTimeout,
    BackupBeginFailed,
    FreezeFailed,
    FreezeRequired,
    ThawFailed,
    VmvaultError,
)
from vmvault.hypervisor.libvirt import agent
from vmvault.hypervisor.libvirt.connection import error_message

QUIESCE_MODES = ("freeze", "pause", "none")
T = TypeVar("T")


@dataclass
class Window:
    """What happened around the point in time (filled in by the window managers)."""

    quiesce: str = "freeze"
    frozen: bool = False  # the guest's file systems were frozen by the agent
    fs_frozen: int = 0  # file systems the agent froze
    freeze_call_ms: int = 0  # how long fsFreeze took (the guest's fsfreeze hooks run in it)
    freeze_error: str | None = None  # why there was no freeze (crash-consistent)
    freeze_error_code: str | None = None  # FREEZE_FAILED | AGENT_FREEZE_TIMEOUT | ...
    thaw_error: str | None = None  # set if the thaw failed: the guest may still be frozen
    paused: bool = False  # vmvault paused the VM for the point (quiesce="pause")
    frozen_ms: int = 0  # freeze returned → thaw returned (0 unless frozen)
    paused_ms: int = 0  # suspend returned → resume returned (0 unless vmvault paused it)
    needs_thaw: bool = False  # a freeze may have reached the guest and no thaw succeeded yet
    needs_resume: bool = False  # vmvault paused the VM and no resume succeeded yet
    resume_error: str | None = None
    fs_thawed: int = 0  # what the last successful thaw returned
    hooks: HookOutcome = NOT_RUN  # what the guest's application hooks reported for the freeze
    fallback_reason: str | None = None  # the freeze failed: saved-state instead, and why
    freeze_attempt_ms: int = 0  # a failed freeze: fsFreeze called → thaw verified
    thaw_verified: bool | None = None  # guest-fsfreeze-status said thawed (None: not asked)

    @property
    def held(self) -> bool:
        """The guest may still be frozen or paused by us."""
        return self.needs_thaw or self.needs_resume

    def no_freeze(self, err: VmvaultError) -> None:
        self.freeze_error = err.text
        self.freeze_error_code = err.code


def retry(fn: Callable[[], T], budget: float, stop: Callable[[Exception], bool]) -> T:
    """Call ``fn`` until it succeeds, ``stop(exc)`` or the budget (s) is used; re-raise last."""
    deadline = time.monotonic() + budget
    delay = 0.1
    while True:
        try:
            return fn()
        except libvirt.libvirtError as exc:
            if stop(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def agent_gone(exc: Exception) -> bool:
    """The agent cannot be reached at all (no channel / not connected): retrying is useless."""
    if not isinstance(exc, libvirt.libvirtError):
        return False
    text = error_message(exc)
    return exc.get_error_code() == libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED or (
        "not configured" in text or "not connected" in text
    )


def why_not_freeze(
    dom: Any, vm: str, *, running: bool, has_agent: bool, agent_silent: bool, timeout: int
) -> VmvaultError | None:
    """Why no freeze is even attempted (None: try it).  Asks ``guest-ping`` last."""
    if not has_agent:
        return FreezeFailed("the VM has no guest agent channel", vm=vm)
    if not running:
        return FreezeFailed("the VM is paused: its agent cannot answer", vm=vm)
    ping = min(5, timeout)
    if agent_silent or not agent.ping(dom, timeout=ping):
        # not even sent: a hung agent would run a queued freeze later, with nobody to thaw
        return AgentFreezeTimeout("the agent did not answer guest-ping", vm=vm, seconds=ping)
    return None


@contextmanager
def freeze_window(dom: Any, vm: str, timeout: int, w: Window) -> Iterator[Window]:
    """Freeze the guest's file systems, yield, thaw — always, even when the body raises.

    A freeze that fails is recorded in ``w`` and the body still runs (the caller checks
    :attr:`Window.frozen` before it begins anything); :attr:`Window.frozen_ms` is the time from ``fsFreeze`` returning to
    ``fsThaw`` returning."""
    t_frozen = 0.0
    with agent.response_timeout(dom, timeout):
        try:
            w.needs_thaw = True  # even a failed freeze may land late in the guest
            t0 = time.monotonic()
            try:
                w.fs_frozen = int(dom.fsFreeze(None, 0))
                t_frozen = time.monotonic()
                w.freeze_call_ms = round((t_frozen - t0) * 1000)
                w.frozen = w.fs_frozen > 0
                if not w.frozen:
                    w.no_freeze(FreezeFailed("the agent froze no file system", vm=vm))
            except libvirt.libvirtError as exc:
                w.freeze_call_ms = round((time.monotonic() - t0) * 1000)
                if exc.get_error_code() in (
                    libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                    libvirt.VIR_ERR_OPERATION_TIMEOUT,
                ) and not agent_gone(exc):
                    w.no_freeze(AgentFreezeTimeout(error_message(exc), vm=vm, seconds=timeout))
                else:
                    w.no_freeze(FreezeFailed(error_message(exc), vm=vm))
                    if agent_gone(exc):
                        w.needs_thaw = False
            yield w
        finally:
            if w.needs_thaw:
                thaw(dom, vm, w, budget=max(10.0, 3.0 * timeout))
                if w.frozen and t_frozen:
                    w.frozen_ms = round((time.monotonic() - t_frozen) * 1000)


def freeze_or_pause(
    dom: Any,
    vm: str,
    w: Window,
    *,
    why: VmvaultError | None,
    running: bool,
    timeout: int,
    allow_pause: bool,
    before_pause: Callable[[str], None] | None,
    cancelled: Callable[[], None],
    hold: Callable[[], None],
    report: Callable[[], HookOutcome],
) -> None:
    """The point in time of ``quiesce="freeze"``: freeze → ``hold()`` → thaw, then
    ``report()`` the hooks' outcome.  ``why``: why no freeze is attempted (None: try it).

    A freeze that fails or times out never yields a frozen-labelled point: the guest is thawed
    (a sent freeze: verified with ``guest-fsfreeze-status``), then — if ``allow_pause`` —
    ``before_pause(reason)`` (the guest is released), ``cancelled()`` and the saved-state
    window: suspend → ``hold()`` → resume.  Not allowed: ``FREEZE_REQUIRED``, nothing held."""
    t0 = time.monotonic()
    if why is None:
        with freeze_window(dom, vm, timeout, w):
            if w.frozen:
                hold()
        if w.frozen:
            w.hooks = report()
            return
    else:
        w.no_freeze(why)
    if w.needs_thaw:  # the thaw failed even after its retries
        raise ThawFailed(w.thaw_error, vm=vm)
    if why is None:  # sent: a late freeze may have landed (not sent: nothing can have)
        verify_thawed(dom, vm, w, timeout)
    w.freeze_attempt_ms = round((time.monotonic() - t0) * 1000)
    reason = w.fallback_reason = w.freeze_error or "the freeze failed"
    if not running:  # paused since the plan: it is still already, and stays paused
        hold()
        return
    if not allow_pause:
        raise FreezeRequired(reason, vm=vm)
    if before_pause is not None:
        before_pause(reason)
    cancelled()
    with pause_window(dom, vm, w):
        hold()


def verify_thawed(dom: Any, vm: str, w: Window, timeout: int) -> None:
    """``guest-fsfreeze-status`` after a failed freeze: thaw again if a late freeze landed;
    ``THAW_FAILED`` if the guest stays frozen."""
    status = fsfreeze_status(dom)
    if status == "frozen":
        w.needs_thaw = True
        thaw(dom, vm, w, budget=max(10.0, 3.0 * timeout))
        status = fsfreeze_status(dom)
        if status == "frozen":
            w.needs_thaw = True
            raise ThawFailed("guest-fsfreeze-status still says frozen", vm=vm)
    w.thaw_verified = status == "thawed" if status is not None else None


def thaw(dom: Any, vm: str, w: Window, budget: float = 10.0) -> None:
    """Thaw with retries for ``budget`` s (a slow agent gets several chances); never raises:
    a failure is left in :attr:`Window.thaw_error` with :attr:`Window.needs_thaw` still set."""
    try:
        w.fs_thawed = int(retry(lambda: dom.fsThaw(None, 0), budget, agent_gone))
        w.needs_thaw = False
        w.thaw_error = None
    except libvirt.libvirtError as exc:
        if agent_gone(exc) and not w.frozen:
            w.needs_thaw = False  # nothing reached the guest
            return
        w.thaw_error = ThawFailed(error_message(exc), vm=vm).text


@contextmanager
def pause_window(dom: Any, vm: str, w: Window) -> Iterator[Window]:
    """Pause the VM, yield, resume — always, even when the body raises.  A VM that cannot be
    paused refuses the backup (``BACKUP_BEGIN_FAILED``): nothing was begun."""
    try:
        dom.suspend()
    except libvirt.libvirtError as exc:
        raise BackupBeginFailed(f"cannot pause the VM: {error_message(exc)}", vm=vm) from None
    t0 = time.monotonic()
    w.paused = w.needs_resume = True
    try:
        yield w
    finally:
        resume(dom, w)
        w.paused_ms = round((time.monotonic() - t0) * 1000)


def resume(dom: Any, w: Window, budget: float = 10.0) -> None:
    """Resume with retries; never raises (a failure stays in :attr:`Window.resume_error`)."""
    try:
        retry(
            dom.resume,
            budget,
            lambda exc: (
                getattr(exc, "get_error_code", lambda: None)() == libvirt.VIR_ERR_OPERATION_INVALID
            ),
        )
        w.needs_resume = False
        w.resume_error = None
    except libvirt.libvirtError as exc:
        w.resume_error = f"resume failed: {error_message(exc)}"


def fsfreeze_status(dom: Any, timeout: int = 5) -> str | None:
    """``guest-fsfreeze-status``: ``"frozen"`` | ``"thawed"`` (None: the agent did not answer)."""
    try:
        return str(agent.agent_command(dom, "guest-fsfreeze-status", timeout=timeout))
    except VmvaultError:
        return None


def frozen_now(dom: Any) -> bool:
    """``guest-fsfreeze-status`` says ``frozen`` (False when the agent does not answer)."""
    return fsfreeze_status(dom) == "frozen"


__all__ = [
    "QUIESCE_MODES",
    "Window",
    "agent_gone",
    "freeze_or_pause",
    "freeze_window",
    "frozen_now",
    "fsfreeze_status",
    "pause_window",
    "resume",
    "retry",
    "thaw",
    "verify_thawed",
    "why_not_freeze",
]
