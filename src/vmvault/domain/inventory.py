"""Discovery and registration rules, as pure functions.

*Discovery* compares what the hosts of a location report now with what the catalog knows and
sorts every VM into new / changed / unchanged / vanished.  A VM is only declared vanished when
the host it lived on was actually scanned: an unreachable host makes its VMs *unknown*, not
gone.

*Registration* decides whether a VM can be prepared for backup (docs/architecture.md,
"Registration"): its disks, the disk-count limit, its power state and its guest agent.
Failures raise :class:`~vmvault.domain.errors.VmvaultError`; acceptable deviations become
warnings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from vmvault.domain.cluster import refuse_pause
from vmvault.domain.errors import (
    AgentNotConfigured,
    AgentNotResponding,
    AgentTooOld,
    AlreadyRegistered,
    TooManyDisks,
    UnsupportedConfiguration,
    VmAmbiguous,
    VmDeleted,
    VmNotFound,
)
from vmvault.domain.vm import EXCLUDED_BY_USER, DomainFacts, PowerState, VmItem, VmState


@dataclass
class DiscoveryResult:
    new: list[VmItem] = field(default_factory=list)
    changed: list[VmItem] = field(default_factory=list)
    unchanged: list[VmItem] = field(default_factory=list)
    vanished: list[VmItem] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.new)} new, {len(self.changed)} changed, "
            f"{len(self.unchanged)} unchanged, {len(self.vanished)} vanished"
        )


def reconcile(
    known: Iterable[VmItem],
    seen: Iterable[DomainFacts],
    scanned_hosts: set[str],
    now: datetime,
) -> DiscoveryResult:
    """Merge one discovery pass into the known VM items (mutates and returns them sorted)."""
    by_uuid = {vm.uuid: vm for vm in known}
    result = DiscoveryResult()
    seen_uuids: set[str] = set()
    for facts in seen:
        seen_uuids.add(facts.uuid)
        vm = by_uuid.get(facts.uuid)
        if vm is None:
            result.new.append(VmItem.from_facts(facts, now))
            continue
        was_vanished = vm.vanished_at is not None
        differs = (
            vm.fingerprint != facts.fingerprint
            or vm.name != facts.name
            or vm.host_uri != facts.host_uri
            or vm.power_state != facts.power_state
            or vm.group != facts.group
        )
        vm.apply(facts, now)
        (result.changed if differs or was_vanished else result.unchanged).append(vm)
    for uuid, vm in by_uuid.items():
        if uuid in seen_uuids or vm.host_uri not in scanned_hosts:
            continue
        if vm.vanished_at is None:
            vm.vanished_at = now
            result.vanished.append(vm)
    return result


def seen_as_before(before: VmItem, after: VmItem) -> bool:
    """True when ``after`` (a VM as a discovery left it) differs from ``before`` (as the
    catalog had it) by its ``last_seen`` alone: only that needs writing."""
    return replace(before, last_seen=after.last_seen) == after


def match_vm(candidates: Sequence[VmItem], ref: str) -> VmItem:
    """Resolve a user's reference to exactly one VM item.

    Accepted forms: a uuid (or unique uuid prefix of 8+ characters), ``NAME``,
    ``HOSTNAME/NAME`` or ``GROUP/NAME``.  Vanished VMs match too (so they can be shown).
    """
    ref = ref.strip()
    exact = [vm for vm in candidates if vm.uuid == ref]
    if exact:
        return exact[0]
    if len(ref) >= 8:
        prefixed = [vm for vm in candidates if vm.uuid.startswith(ref)]
        if len(prefixed) == 1:
            return prefixed[0]
    if "/" in ref:
        scope, _, name = ref.rpartition("/")
        hits = [
            vm
            for vm in candidates
            if vm.name == name and scope in (vm.hostname, vm.group, vm.host_uri)
        ]
    else:
        hits = [vm for vm in candidates if vm.name == ref]
    if len(hits) > 1:
        live = [vm for vm in hits if vm.vanished_at is None]
        if len(live) == 1:
            return live[0]
        names = ", ".join(f"{vm.hostname}/{vm.name} ({vm.uuid[:8]})" for vm in hits)
        raise VmAmbiguous(vm=ref, candidates=names)
    if not hits:
        raise VmNotFound(vm=ref)
    return hits[0]


# --- registration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentReport:
    """What the guest agent said when registration asked (None fields: not asked/answered)."""

    responded: bool
    version: str | None = None


@dataclass(frozen=True)
class RegistrationLimits:
    max_disks: int = 8
    min_agent_version: str = "5.0.0"


@dataclass
class RegistrationOutcome:
    warnings: list[str] = field(default_factory=list)
    crash_consistent_only: bool = False
    agent_version: str | None = None


def parse_version(text: str) -> tuple[int, ...]:
    """``"7.2.22"`` → ``(7, 2, 22)``; trailing non-numeric parts are ignored."""
    parts: list[int] = []
    for piece in text.strip().split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def version_at_least(version: str, minimum: str) -> bool:
    have, need = parse_version(version), parse_version(minimum)
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) >= need + (0,) * (width - len(need))


def check_registrable(vm: VmItem, limits: RegistrationLimits) -> list[str]:
    """Checks that need no agent: state, vanished, disks.  Returns disk warnings."""
    if vm.state is not VmState.DISCOVERED:
        raise AlreadyRegistered(vm=vm.label, vault=vm.vault or "?")
    if vm.vanished_at is not None:
        raise VmDeleted(vm=vm.label, host=vm.hostname)
    disks = vm.backup_disks
    if not disks:
        reasons = "; ".join(f"{d.target}: {d.reason}" for d in vm.excluded_disks) or "no disks"
        raise UnsupportedConfiguration(vm=vm.label, reasons=reasons)
    if len(disks) > limits.max_disks:
        raise TooManyDisks(vm=vm.label, count=len(disks), limit=limits.max_disks)
    warnings = [  # the operator's own exclusions are no warning
        f"disk {d.target} is excluded from backups: {d.reason}"
        for d in vm.excluded_disks
        if d.reason != EXCLUDED_BY_USER
    ]
    warnings += [
        f"disk {d.target} is {d.format}: no checkpoints, so it gets a full backup every time"
        for d in disks
        if not d.supports_checkpoints
    ]
    return warnings


def assess_registration(
    vm: VmItem,
    agent: AgentReport | None,
    limits: RegistrationLimits,
    *,
    allow_crash_consistent: bool = False,
) -> RegistrationOutcome:
    """Decide the outcome of registering ``vm``.

    ``agent`` is ``None`` when the agent was not asked (no channel, or the VM is not running).
    ``allow_crash_consistent`` lets a VM without a working agent register anyway, marked
    crash-consistent only (the operator accepted that).
    """
    outcome = RegistrationOutcome(warnings=check_registrable(vm, limits))
    if not vm.agent_channel:
        if not allow_crash_consistent:
            raise AgentNotConfigured(vm=vm.label)
        refuse_pause(vm, "no guest agent channel: crash-consistent backups pause the VM")
        outcome.crash_consistent_only = True
        outcome.warnings.append("no guest agent channel: backups will be crash-consistent only")
        return outcome
    if (vm.power_state is not PowerState.RUNNING or agent is None) and vm.cluster_managed:
        outcome.warnings.append(
            f"VM is {vm.power_state.value}: the guest agent could not be validated; it is "
            "cluster-managed, so a backup while it runs fails unless its agent freezes it"
        )
        return outcome
    if vm.power_state is not PowerState.RUNNING or agent is None:
        outcome.warnings.append(
            f"VM is {vm.power_state.value}: the guest agent could not be validated; "
            "backups are crash-consistent only until it is registered while running"
        )
        outcome.crash_consistent_only = True
        return outcome
    if not agent.responded:
        if not allow_crash_consistent:
            raise AgentNotResponding(vm=vm.label)
        refuse_pause(vm, "its guest agent does not answer: crash-consistent backups pause it")
        outcome.crash_consistent_only = True
        outcome.warnings.append("guest agent not answering: backups will be crash-consistent")
        return outcome
    version = agent.version or "0"
    if not version_at_least(version, limits.min_agent_version):
        raise AgentTooOld(vm=vm.label, version=version, minimum=limits.min_agent_version)
    outcome.agent_version = version
    return outcome
