"""A VM's states in vmvault (:class:`VmState`) and its domain's power state (:class:`PowerState`).

Their own module, re-exported by :mod:`vmvault.domain.vm`: ``vm list --state`` takes a
:class:`VmState`, and the CLI's listing imports this alone, not the VM model's dataclasses
(~8 ms of its start; docs/deployment.md, "The CLI's start")."""

from __future__ import annotations

from enum import StrEnum


class VmState(StrEnum):
    DISCOVERED = "discovered"
    REGISTERED = "registered"
    PROTECTED = "protected"
    PROTECTION_STOPPED = "protection-stopped"


class PowerState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SHUT_OFF = "shut-off"
    SHUTTING_DOWN = "shutting-down"
    CRASHED = "crashed"
    SUSPENDED = "pmsuspended"
    BLOCKED = "blocked"
    UNKNOWN = "unknown"
