"""The restore service and a point marked damaged (``vmvault.services.healing``): a restore,
a ``--replace`` and a restore test are refused with ``POINT_DAMAGED`` before anything changes
when no other vault holds the point (the fixtures of ``test_restore_service``: the in-memory
host, a real catalog, a real local vault)."""

from __future__ import annotations

import pytest

from tests.unit.test_restore_service import (  # noqa: F401  (template, world: fixtures)
    NEW_DIR,
    POINT,
    World,
    original_state,
    template,
    world,
)
from vmvault.domain.errors import PointDamaged
from vmvault.domain.recovery_point import DamagedDisk
from vmvault.domain.restore import RestoreMode


def test_a_point_marked_damaged_is_refused_before_anything_changes(world: World) -> None:  # noqa: F811
    with world.uow() as uow:
        uow.copies.set_damaged(POINT, "main", [DamagedDisk("vdb", ((0, 65536),))])
        uow.commit()

    for attempt in (
        lambda: world.restore(RestoreMode.AS_NEW, name="web2", directory=str(NEW_DIR)),
        lambda: world.restore(RestoreMode.REPLACE),
        lambda: world.svc.restore_test("web", POINT, directory=str(NEW_DIR)),
    ):
        with pytest.raises(
            PointDamaged, match=r"damaged in vault main: disk vdb bytes \[0, 65536\)"
        ):
            attempt()

    original_state(world)
    assert world.jobs.list_jobs() == []  # no job was started


def test_an_intact_point_restores_as_before(world: World) -> None:  # noqa: F811
    out = world.restore(RestoreMode.AS_NEW, name="web2", directory=str(NEW_DIR))
    assert out.error is None, world.show(out.job.id)
    assert not any("healed" in line for line in world.show(out.job.id)[1])
