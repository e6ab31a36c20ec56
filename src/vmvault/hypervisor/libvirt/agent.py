"""The QEMU guest agent, reached through libvirt (``libvirt_qemu.qemuAgentCommand``).

qemu-ga speaks QMP-like JSON over a virtio-serial port named ``org.qemu.guest_agent.0``;
libvirt owns the host end of that channel, so we never open the socket ourselves. Each
function here sends one command and returns its ``"return"`` value, or raises
:class:`~vmvault.domain.errors.AgentCommandFailed`. :func:`ping` is the exception: it answers a
question and never raises. Whether a domain has the channel at all is
:func:`~vmvault.hypervisor.libvirt.domxml.has_agent_channel` (libvirt's rule).

While the guest's file systems are frozen, qemu-ga refuses almost every command (``guest-exec``,
``guest-file-*``, a second freeze); start guest-side helpers before a freeze and always thaw.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import libvirt
import libvirt_qemu

from vmvault.domain.errors import AgentCommandFailed
from vmvault.hypervisor.libvirt.connection import error_message

_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExecResult:
    """Outcome of a command run in the guest with ``guest-exec``."""

    exitcode: int  # 128 + N if the process was killed by signal N
    stdout: bytes
    stderr: bytes


def _name(dom: Any) -> str:
    try:
        return str(dom.name())
    except libvirt.libvirtError:
        return "?"


def agent_command(
    dom: Any, command: str, arguments: dict[str, Any] | None = None, timeout: int = 5
) -> Any:
    """Run ``command`` in the guest agent of ``dom`` and return its ``"return"`` value."""
    payload: dict[str, Any] = {"execute": command}
    if arguments is not None:
        payload["arguments"] = arguments
    try:
        raw = libvirt_qemu.qemuAgentCommand(dom, json.dumps(payload), max(1, int(timeout)), 0)
    except libvirt.libvirtError as exc:
        raise AgentCommandFailed(error_message(exc), vm=_name(dom), command=command) from None
    try:
        reply = json.loads(raw)
    except (TypeError, ValueError):
        raise AgentCommandFailed(
            f"unreadable reply {raw!r}", vm=_name(dom), command=command
        ) from None
    if "error" in reply:
        err = reply["error"]
        raise AgentCommandFailed(
            f"{err.get('class', 'Error')}: {err.get('desc', err)}", vm=_name(dom), command=command
        )
    return reply.get("return")


def ping(dom: Any, timeout: int = 5) -> bool:
    """True if the guest agent answers ``guest-ping``; never raises."""
    try:
        agent_command(dom, "guest-ping", timeout=timeout)
        return True
    except AgentCommandFailed:
        return False


def info(dom: Any, timeout: int = 5) -> dict[str, Any]:
    """``guest-info``: the agent's ``version`` and its ``supported_commands``."""
    result: dict[str, Any] = agent_command(dom, "guest-info", timeout=timeout)
    return result


def fsinfo(dom: Any, timeout: int = 10) -> list[dict[str, Any]]:
    """``guest-get-fsinfo``: one dict per mounted file system (``mountpoint``, ``type``, ...)."""
    result: list[dict[str, Any]] = agent_command(dom, "guest-get-fsinfo", timeout=timeout)
    return result


def exec_(
    dom: Any,
    path: str,
    args: list[str],
    timeout: float = 30,
    input_data: bytes | None = None,
) -> ExecResult:
    """Run ``path args...`` in the guest, wait for it (polling ``guest-exec-status``)."""
    arguments: dict[str, Any] = {"path": path, "arg": list(args), "capture-output": True}
    if input_data is not None:
        arguments["input-data"] = base64.b64encode(input_data).decode()
    pid = agent_command(dom, "guest-exec", arguments)["pid"]
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        status = agent_command(dom, "guest-exec-status", {"pid": pid})
        if status.get("exited"):
            break
        if time.monotonic() > deadline:
            raise AgentCommandFailed(
                f"{path} did not exit within {timeout:g}s", vm=_name(dom), command="guest-exec"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
    code = status.get("exitcode")
    if code is None:
        code = 128 + int(status.get("signal", 0))
    return ExecResult(
        exitcode=int(code),
        stdout=base64.b64decode(status.get("out-data", "")),
        stderr=base64.b64decode(status.get("err-data", "")),
    )


def read_file(dom: Any, path: str) -> bytes:
    """The whole content of the guest file ``path`` (``guest-file-open/read/close``)."""
    handle = agent_command(dom, "guest-file-open", {"path": path, "mode": "r"})
    chunks = []
    try:
        while True:
            r = agent_command(dom, "guest-file-read", {"handle": handle, "count": _READ_CHUNK})
            chunks.append(base64.b64decode(r.get("buf-b64", "")))
            if r.get("eof") or not r.get("count"):
                break
    finally:
        with contextlib.suppress(AgentCommandFailed):
            agent_command(dom, "guest-file-close", {"handle": handle})
    return b"".join(chunks)


def write_file(dom: Any, path: str, data: bytes, timeout: int = 5) -> None:
    """Create or replace the guest file ``path`` with ``data`` (``guest-file-open/write``)."""
    handle = agent_command(dom, "guest-file-open", {"path": path, "mode": "w"}, timeout)
    try:
        agent_command(
            dom,
            "guest-file-write",
            {"handle": handle, "buf-b64": base64.b64encode(data).decode()},
            timeout,
        )
    finally:
        with contextlib.suppress(AgentCommandFailed):
            agent_command(dom, "guest-file-close", {"handle": handle}, timeout)


@contextlib.contextmanager
def response_timeout(dom: Any, seconds: float) -> Iterator[None]:
    """Bound how long libvirt waits for the agent inside the block (by default it waits
    forever: a stopped qemu-ga blocked ``fsFreeze`` for 14.5 s), then restore the default."""
    changed = False
    try:
        dom.agentSetResponseTimeout(max(1, int(seconds)), 0)
        changed = True
    except libvirt.libvirtError:
        pass
    try:
        yield
    finally:
        if changed:
            with contextlib.suppress(libvirt.libvirtError):
                dom.agentSetResponseTimeout(libvirt.VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT, 0)
