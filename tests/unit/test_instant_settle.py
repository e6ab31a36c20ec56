"""services/restore/instant_settle.settle on a VM some of whose disks were pivoted already
(stand-ins for libvirt and the files: the decision and the calls, not QEMU)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.unit.test_instant_plan import plan
from vmvault.domain.instant import plan_instant
from vmvault.domain.vm import PowerState
from vmvault.services.restore import journal
from vmvault.services.restore.instant_settle import settle


class _Libvirt:
    """Where each disk runs from, which copies are in sync, what was asked."""

    def __init__(self, sources: dict[str, str], in_sync: set[str]) -> None:
        self._sources = sources
        self.in_sync = in_sync
        self.calls: list[Any] = []

    # driver
    def domain(self, uri: str, uuid: str) -> Any:
        return SimpleNamespace(power=PowerState.RUNNING, xml="<domain/>")

    def define(self, uri: str, xml: str) -> None:
        self.calls.append(("define",))

    def refresh_default_pool(self, uri: str) -> None:
        pass

    # instant
    def sources(self, uri: str, uuid: str) -> dict[str, str]:
        return dict(self._sources)

    def copy_state(self, uri: str, uuid: str, target: str) -> Any:
        # a pivoted disk has no block job: libvirt reports no copy, so not "ready"
        return SimpleNamespace(ready=target in self.in_sync)

    def pivot(self, uri: str, uuid: str, target: str) -> None:
        self.calls.append(("pivot", target))

    def paused_on_error(self, uri: str, uuid: str) -> bool:
        return False


class _Files:
    def exists(self, path: Path) -> bool:
        return False

    def symlink(self, link: Path, target: Path) -> None:
        pass

    def remove(self, path: Path) -> bool:
        return False


def test_a_disk_pivoted_before_a_kill_is_kept_and_the_others_pivoted() -> None:
    p = plan()
    iplan = plan_instant(p)
    vda, vdb = iplan.disks[0], iplan.disks[1]
    rec = journal.Instant(
        "web-2", p.uuid, p.host_uri, "P1", iplan.socket, iplan.disks, "<domain/>",
        iplan.made, [], None,
    )  # fmt: skip
    lv = _Libvirt({vda.target: str(vda.final), vdb.target: str(vdb.overlay)}, {vdb.target})
    svc = SimpleNamespace(driver=lv, instant=lv, files=_Files())
    j = journal.RestoreJournal(seen={journal.INSTANT_DEFINED})
    lines = settle(svc, rec, j)  # type: ignore[arg-type]
    assert lines[0] == "instant restore of web-2: pivot", lines
    assert lv.calls == [("pivot", vdb.target), ("define",)]  # vda's image, with its writes, kept
