"""Selective disks: which disks of a VM the operator leaves out of its backups.

Azure's selective disk backup, for libvirt: disks are named by target (``vdb``, ``sdc``), as
``vm show`` lists them.  ``register``/``protect --exclude-disk`` and ``vm update
--exclude-disk/--include-disk`` change the VM's list; backups skip those disks and every point
lists them with the reason ``excluded by user``.  Pass-through, network and removable disks
are left out automatically whatever the list says (:func:`vmvault.domain.vm.classify_disk`).

:func:`select_disks` is the one rule for a change of the list: every name must be a disk of
the VM, a disk left out automatically cannot be included, and at least one disk must remain
to back up.  It raises before anything is changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from vmvault.domain.errors import (
    AllDisksExcluded,
    DiskNotBackupable,
    DiskNotOfVm,
    InvalidInput,
)
from vmvault.domain.vm import VmItem, with_exclusions

#: A disk target as libvirt writes it (``<target dev>``): vda, sdb, hdc, xvda, nvme0n1 …
_TARGET = re.compile(r"[a-z][a-z0-9]{1,31}")


def clean_targets(names: Iterable[str], option: str) -> list[str]:
    """The targets named on the command line, stripped and deduplicated (order kept)."""
    out: list[str] = []
    for raw in names:
        name = raw.strip()
        if not _TARGET.fullmatch(name):
            raise InvalidInput("a disk target such as vdb or sdc", what=f"{option} {raw!r}")
        if name not in out:
            out.append(name)
    return out


def select_disks(vm: VmItem, exclude: Iterable[str] = (), include: Iterable[str] = ()) -> list[str]:
    """The VM's new list of excluded targets after ``exclude`` and ``include``; raises
    ``DISK_NOT_OF_VM``, ``DISK_NOT_BACKUPABLE``, ``ALL_DISKS_EXCLUDED`` or ``INVALID_INPUT``."""
    exclude = clean_targets(exclude, "--exclude-disk")
    include = clean_targets(include, "--include-disk")
    both = sorted(set(exclude) & set(include))
    if both:
        raise InvalidInput(
            "a disk is either excluded or included", what=f"disk {', '.join(both)} given twice"
        )
    known = {d.target: d for d in vm.disks}
    names = ", ".join(known) or "none"
    for target in exclude + include:
        if target not in known:
            raise DiskNotOfVm(vm=vm.label, disk=target, disks=names)
    for target in include:
        auto = known[target]
        if auto.excluded:
            raise DiskNotBackupable(vm=vm.label, disk=target, reason=auto.reason or "?")
    chosen = [t for t in vm.excluded_targets if t not in include]
    chosen += [t for t in exclude if t not in chosen]
    left = [d for d in with_exclusions(vm.disks, chosen) if not d.excluded]
    if not left:
        raise AllDisksExcluded(vm=vm.label, excluded=", ".join(chosen) or "its disks")
    return chosen
