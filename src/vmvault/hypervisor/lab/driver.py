"""The :class:`~vmvault.services.ports.LabDriver` port over the lab modules."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from vmvault.hypervisor import daemons
from vmvault.hypervisor.lab import guest, vms


def _public(vm: vms.LabVm) -> dict[str, object]:
    doc = asdict(vm)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in doc.items()} | {
        "disks": [str(d) for d in vm.disks]
    }


class LocalLab:
    def __init__(self, uri: str, lab_dir: Path, cache_dir: Path, state_dir: Path) -> None:
        self.uri = uri
        self.lab_dir = lab_dir
        self.cache_dir = cache_dir
        self.state_dir = state_dir

    def ensure_daemons(self, state_dir: Path) -> bool:
        return daemons.ensure_libvirtd(state_dir)

    def build(self, force: bool) -> str:
        return guest.build_guest(self.cache_dir, force=force).key

    def up(self, counts: dict[str, int]) -> list[dict[str, object]]:
        return [_public(vm) for vm in vms.lab_up(self.uri, self.lab_dir, self.cache_dir, counts)]

    def status(self) -> list[dict[str, object]]:
        if not daemons.libvirtd_running(self.uri):
            return []
        return [_public(vm) for vm in vms.lab_status(self.uri, self.lab_dir)]

    def down(self) -> list[str]:
        daemons.ensure_libvirtd(self.state_dir)  # leftovers are only found through libvirt
        return vms.lab_down(self.uri, self.lab_dir)
