"""Method choice, consistency and the full-or-incremental plan (pure)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from vmvault.domain.consistency import HookOutcome, HookResult, HookState
from vmvault.domain.job import JournalStep
from vmvault.domain.recovery_point import (
    Consistency,
    Method,
    PointDisk,
    RecoveryPoint,
    checkpoint_name,
    choose_method,
    consistency_of,
    is_our_checkpoint,
    new_point_id,
    plan_reads,
    unfinished_backup,
)
from vmvault.domain.vm import PowerState

NOW = datetime(2026, 11, 22, 3, 15, tzinfo=UTC)


def point(checkpoint: str | None = "vmvault-x", **sizes: int) -> RecoveryPoint:
    disks = [PointDisk(t, s, "qcow2") for t, s in (sizes or {"vda": 100, "vdb": 50}).items()]
    return RecoveryPoint(
        "p1",
        "v",
        "u",
        "vm",
        NOW,
        Consistency.FILE_SYSTEM,
        Method.GUEST_QUIESCE,
        5,
        checkpoint,
        disks,
    )


def test_method_choice() -> None:
    assert choose_method(PowerState.RUNNING, True, False).method is Method.GUEST_QUIESCE
    assert choose_method(PowerState.RUNNING, True, False).quiesce == "freeze"
    no_agent = choose_method(PowerState.RUNNING, False, True)
    assert no_agent.method is Method.SAVED_STATE and no_agent.quiesce == "pause"
    assert "no guest agent" in no_agent.reason
    crash_only = choose_method(PowerState.RUNNING, True, True)
    assert crash_only.quiesce == "pause" and "crash-consistent" in crash_only.reason
    paused = choose_method(PowerState.PAUSED, True, False)
    assert paused.method is Method.SAVED_STATE and paused.quiesce == "none"
    assert choose_method(PowerState.SHUT_OFF, True, False).method is Method.OFFLINE


def test_consistency() -> None:
    ok = HookOutcome(HookState.SUCCEEDED, (HookResult("h", 0),))
    assert consistency_of(True, ok) is Consistency.APPLICATION
    assert consistency_of(True) is Consistency.FILE_SYSTEM
    assert consistency_of(False, ok) is Consistency.CRASH


def test_point_ids_and_checkpoint_names() -> None:
    pid = new_point_id(NOW)
    assert re.fullmatch(r"20261122T031500Z-[0-9a-f]{6}", pid)
    assert new_point_id(NOW) != pid
    assert is_our_checkpoint(checkpoint_name(pid)) and not is_our_checkpoint("virtnbdbackup.0")
    # the one rule the service, the adapter and delete_checkpoint share: the bare prefix and
    # a name that merely contains it are not ours
    assert is_our_checkpoint("vmvault-hb-full")
    assert not is_our_checkpoint("vmvault-") and not is_our_checkpoint("x-vmvault-1")


def test_first_backup_is_full() -> None:
    reads = plan_reads([("vda", "qcow2", 100)], None, False)
    assert [(r.incremental, r.reason) for r in reads] == [(False, "first backup: full read")]


def test_incremental_when_chain_intact() -> None:
    reads = plan_reads([("vda", "qcow2", 100), ("vdb", "qcow2", 50)], point(), True)
    assert all(r.incremental for r in reads) and "vmvault-x" in reads[0].reason


def test_fallbacks_name_their_reason() -> None:
    prev = point()
    broken = plan_reads([("vda", "qcow2", 100)], prev, False, "checkpoint vmvault-x missing")
    assert (
        not broken[0].incremental
        and "chain broken (checkpoint vmvault-x missing)" in broken[0].reason
    )
    reads = plan_reads(
        [("vda", "qcow2", 200), ("vdb", "qcow2", 50), ("vdc", "qcow2", 10), ("vde", "raw", 10)],
        prev,
        True,
    )
    by = {r.target: r for r in reads}
    assert "resized" in by["vda"].reason and not by["vda"].incremental
    assert by["vdb"].incremental
    assert "added" in by["vdc"].reason
    assert "raw disk" in by["vde"].reason and not by["vde"].incremental


def test_previous_point_without_checkpoint_means_full() -> None:
    reads = plan_reads([("vda", "qcow2", 100)], point(checkpoint=None), True)
    assert not reads[0].incremental


def test_sizes_sum_over_backed_up_disks() -> None:
    p = point()
    p.disks.append(PointDisk("sda", 0, excluded=True, reason="lun"))
    assert p.bytes_logical == 150


# --- the backup journal, read back -----------------------------------------------------------


def _journal(*steps: tuple[str, dict[str, object]]) -> list[JournalStep]:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    return [JournalStep(7, i, name, dict(data), at) for i, (name, data) in enumerate(steps)]


PLANNED = ("planned", {"point": "P", "checkpoint": "vmvault-P", "quiesce": "pause"})


def test_a_journal_without_a_plan_or_cleaned_up_leaves_nothing() -> None:
    assert unfinished_backup(7, []) is None
    assert unfinished_backup(7, _journal(PLANNED, ("cleaned-up", {}))) is None


def test_a_kill_in_the_window_may_hold_the_guest() -> None:
    left = unfinished_backup(7, _journal(PLANNED, ("freezing", {})))
    assert left is not None and left.may_hold_guest and not left.point_taken
    assert (left.point, left.checkpoint, left.quiesce) == ("P", "vmvault-P", "pause")


def test_after_point_taken_the_guest_was_released() -> None:
    left = unfinished_backup(
        7, _journal(PLANNED, ("freezing", {}), ("point-taken", {"released": True}), ("reading", {}))
    )
    assert left is not None and not left.may_hold_guest and left.last_step == "reading"


def test_a_committed_backup_is_finished_unless_its_thaw_failed() -> None:
    done = [PLANNED, ("freezing", {}), ("point-taken", {"released": True}), ("committed", {})]
    assert unfinished_backup(7, _journal(*done)) is None
    held = [PLANNED, ("freezing", {}), ("point-taken", {"released": False}), ("committed", {})]
    left = unfinished_backup(7, _journal(*held))
    assert left is not None and left.left_guest_held


def test_the_point_was_in_the_vault_after_manifest_written() -> None:
    steps = [PLANNED, ("point-taken", {"released": True}), ("manifest-written", {"point": "P"})]
    left = unfinished_backup(7, _journal(*steps))
    assert left is not None and left.manifest_written
