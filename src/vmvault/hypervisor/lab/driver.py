"""The :class:`~vmvault.services.ports.LabDriver` port over the lab modules."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from vmvault.domain.errors import InvalidInput
from vmvault.hypervisor import daemons
from vmvault.hypervisor.lab import guest, host, vms


def _public(vm: vms.LabVm) -> dict[str, object]:
    doc = asdict(vm)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in doc.items()} | {
        "disks": [str(d) for d in vm.disks]
    }


class LocalLab:
    """The lab on this machine: guests on the main libvirtd (``uri``) or on the lab's second
    host (:mod:`~vmvault.hypervisor.lab.host`), whose guests live under ``LAB_DIR/host/vms``
    and are named ``<prefix>h-<variant>-<n>`` (names stay unique across both hosts)."""

    def __init__(self, uri: str, lab_dir: Path, cache_dir: Path, state_dir: Path) -> None:
        self.uri = uri
        self.lab_dir = lab_dir
        self.cache_dir = cache_dir
        self.state_dir = state_dir

    def _where(self, uri: str | None) -> tuple[str, Path, str | None]:
        """(uri, lab directory, name prefix) of the lab on ``uri`` (None: the main host)."""
        if uri is None or uri == self.uri:
            return self.uri, self.lab_dir, None
        second = host.host_status(self.lab_dir)
        if second["uri"] != uri or second["state"] != "up":
            raise InvalidInput(
                f"--host takes {self.uri} or the lab host's URI while it is up "
                "('vmvault lab host up' prints it)",
                what=f"lab host {uri!r}",
            )
        return uri, host.host_dir(self.lab_dir), vms.lab_prefix() + "h"

    def ensure_daemons(self, state_dir: Path) -> bool:
        return daemons.ensure_libvirtd(state_dir)

    def build(self, force: bool) -> str:
        return guest.build_guest(self.cache_dir, force=force).key

    def up(self, counts: dict[str, int], uri: str | None = None) -> list[dict[str, object]]:
        uri, lab_dir, prefix = self._where(uri)
        found = vms.lab_up(uri, lab_dir, self.cache_dir, counts, prefix=prefix)
        return [_public(vm) for vm in found]

    def status(self, uri: str | None = None) -> list[dict[str, object]]:
        uri, lab_dir, prefix = self._where(uri)
        if not daemons.libvirtd_running(uri):
            return []
        return [_public(vm) for vm in vms.lab_status(uri, lab_dir, prefix)]

    def down(self, uri: str | None = None) -> list[str]:
        uri, lab_dir, prefix = self._where(uri)
        if uri == self.uri:
            daemons.ensure_libvirtd(self.state_dir)  # leftovers are only found through libvirt
        return vms.lab_down(uri, lab_dir, prefix)

    def host_up(self) -> dict[str, Any]:
        return host.host_up(self.lab_dir)

    def host_status(self) -> dict[str, Any]:
        return host.host_status(self.lab_dir)

    def host_down(self) -> list[str] | None:
        return host.host_down(self.lab_dir)
