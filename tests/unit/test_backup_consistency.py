"""The backup service's consistency rules on the in-memory hypervisor: the level from the
hooks' report, the saved-state fallback after a failed freeze (and its journal), FREEZE_REQUIRED
when pausing is not allowed, ``--require`` and policies that require a level."""

from __future__ import annotations

import pytest

from tests.unit import test_backup_service as base
from tests.unit.test_backup_service import UUID, World, _kill_at, now
from vmvault.domain.consistency import Consistency, HookOutcome, HookResult, HookState
from vmvault.domain.errors import FreezeRequired, InvalidInput
from vmvault.domain.job import JobState
from vmvault.domain.policy import Policy
from vmvault.domain.recovery_point import Method
from vmvault.domain.retention import Retention
from vmvault.domain.vm import PowerState

world = pytest.fixture()(base.world.__wrapped__)  # the backup service tests' world

OK = HookOutcome(HookState.SUCCEEDED, (HookResult("10-db", 0, "flushed"),))
FAILED = HookOutcome(HookState.FAILED, (HookResult("10-db", 3, "disk full"),))


def test_hooks_that_succeed_give_application_consistent(world: World) -> None:
    assert world.dom.agent is not None
    world.dom.agent.hooks = OK
    point = world.ok()
    assert point.consistency is Consistency.APPLICATION and point.method is Method.GUEST_QUIESCE
    assert world.points()[0].hooks == OK  # stored (migration 0008) and read back


def test_a_failing_hook_is_file_system_consistent_with_a_warning(world: World) -> None:
    assert world.dom.agent is not None
    world.dom.agent.hooks = FAILED
    out = world.backup()
    assert out.result is not None
    assert out.result.consistency is Consistency.FILE_SYSTEM
    assert out.job.state is JobState.COMPLETED_WITH_WARNINGS
    assert any("10-db exited 3: disk full" in w for w in out.job.warnings), out.job.warnings
    assert world.points()[0].hooks == FAILED


def test_a_failed_freeze_takes_a_saved_state_point(world: World) -> None:
    assert world.dom.agent is not None
    world.dom.agent.mode = "fail"
    out = world.backup()
    point = out.result
    assert point is not None
    assert point.method is Method.SAVED_STATE  # never guest-quiesce when not frozen
    assert point.consistency is Consistency.CRASH and point.paused_ms > 0
    assert "could not be frozen" in (point.method_reason or "")
    assert out.job.state is JobState.COMPLETED_WITH_WARNINGS
    steps = world.steps(out.job.id)
    assert steps.index("freezing") < steps.index("pausing") < steps.index("point-taken")
    world.assert_clean()


def test_freeze_required_when_the_vm_may_not_be_paused(world: World) -> None:
    assert world.dom.agent is not None
    world.dom.agent.mode = "fail"
    session = world.driver.take_point(
        "memory:///", UUID, [], checkpoint="vmvault-x", incremental_from=None,
        quiesce="freeze", cancel=lambda: False, allow_pause=False,
    )  # fmt: skip
    with pytest.raises(FreezeRequired), session:
        pass
    assert world.dom.power is PowerState.RUNNING and "vmvault-x" not in world.dom.checkpoints
    world.assert_clean()


@pytest.mark.parametrize("at", ["pausing", "window"])
def test_a_kill_in_the_saved_state_fallback_is_resumed(world: World, at: str) -> None:
    first = world.ok()
    assert world.dom.agent is not None
    world.dom.agent.mode = "fail"
    dead = _kill_at(world, at)
    assert world.steps(dead.id)[-1] == "pausing"
    if at == "window":
        assert world.dom.power is PowerState.PAUSED  # the process died inside the pause
    [recovered] = world.recovery().recover()
    assert recovered.job.error_code == "JOB_INTERRUPTED"
    assert world.dom.power is PowerState.RUNNING
    world.assert_clean()
    world.dom.agent.mode = "ok"
    again = world.ok()
    assert again.method is Method.GUEST_QUIESCE and [p.id for p in world.points()][-1] == first.id


def test_require_refuses_a_lower_level_and_keeps_no_point(world: World) -> None:
    first = world.ok()  # file-system-consistent: no hooks
    out = world.service().backup(None, [UUID], require="application-consistent")[0]
    assert out.result is None and out.error is not None
    assert out.error.code == "CONSISTENCY_NOT_MET"
    assert "file-system-consistent" in out.error.text
    assert [p.id for p in world.points()] == [first.id]
    world.assert_clean()  # no stray checkpoint, no half point, guest released
    met = world.service().backup(None, [UUID], require="file-system-consistent")[0]
    assert met.result is not None and all(d.incremental for d in met.result.disks)
    with pytest.raises(InvalidInput):
        world.service().backup(None, [UUID], require="crash-consistent")


def test_a_policy_requirement_applies_to_its_vms(world: World) -> None:
    policy = Policy.create(
        "gold", "daily@02:00", "UTC", Retention(daily=7), require="application-consistent"
    )
    assert Policy.from_json(policy.to_json()) == policy
    assert "require:   application-consistent" in policy.describe()
    with world.uow() as uow:
        uow.policies.add("main", policy, now())
        vm = uow.vms.get(UUID)
        assert vm is not None
        vm.policy = "gold"
        uow.vms.save(vm)
        uow.commit()
    out = world.backup()
    assert out.error is not None and out.error.code == "CONSISTENCY_NOT_MET"
    assert world.dom.agent is not None
    world.dom.agent.hooks = OK
    assert world.ok().consistency is Consistency.APPLICATION
