"""Choosing, at run time, what the lab guest's application hook does at the next freeze.

Every lab guest with an agent runs vmvault's fsfreeze hook dispatcher
(``guest/fsfreeze-hook``) with an empty ``/etc/qemu/fsfreeze-hook.d/`` (the ``app-hook``
variant adds its flush hook).  :func:`set_test_hook` links ``/usr/lib/lab/test-hook`` into
that directory and writes its mode — ``ok``, ``fail`` or ``sleep N`` — or (``None``) removes
it again, so one image serves every consistency test.
"""

from __future__ import annotations

from typing import Any

from vmvault.domain.errors import LabFailed
from vmvault.hypervisor.libvirt import agent

TEST_HOOK = "/usr/lib/lab/test-hook"
TEST_HOOK_LINK = "/etc/qemu/fsfreeze-hook.d/50-lab-test"
MODE_PATH = "/run/lab/hook-mode"


def set_test_hook(dom: Any, mode: str | None) -> None:
    """Enable the lab's test hook with ``mode`` (``ok`` | ``fail`` | ``sleep N``), or remove it."""
    if mode is None:
        _run(dom, ["rm", "-f", TEST_HOOK_LINK, MODE_PATH])
        return
    if mode not in ("ok", "fail") and not (
        mode.startswith("sleep ") and mode.removeprefix("sleep ").isdigit()
    ):
        raise LabFailed(f"unknown test hook mode {mode!r} (ok, fail, sleep N)")
    agent.write_file(dom, MODE_PATH, f"{mode}\n".encode())
    _run(dom, ["ln", "-sf", TEST_HOOK, TEST_HOOK_LINK])


def _run(dom: Any, argv: list[str]) -> None:
    res = agent.exec_(dom, "/bin/busybox", argv, timeout=30)
    if res.exitcode != 0:
        raise LabFailed(f"{' '.join(argv)} failed in the guest: {res.stderr.decode()!r}")


__all__ = ["set_test_hook"]
