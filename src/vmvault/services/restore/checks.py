"""Step 1, up front: every check a restore passes before anything is written.

A failure raises the error that refuses the request (exit 2) with nothing changed; the table
of checks and codes is in docs/restore.md ("The workflow", step 1).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from vmvault.dataplane.chunk import ZERO_ID
from vmvault.dataplane.manifest import Manifest
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.cluster import refuse_replace
from vmvault.domain.errors import (
    HostNotFound,
    InsufficientSpace,
    PointNotFound,
    PointOfAnotherVm,
    RestoreDirUnusable,
    RestoreHostNotLocal,
    RestoreNameExists,
    RestoreTargetExists,
    RestoreVmHasSnapshots,
    RestoreVmNotDefined,
)
from vmvault.domain.host_uri import same_host
from vmvault.domain.instant import plan_instant
from vmvault.domain.recovery_point import RecoveryPoint
from vmvault.domain.restore import (
    DomainShape,
    RestoreMode,
    RestorePlan,
    check_vm_name,
    plan_new,
    plan_replace,
    space_by_device,
)
from vmvault.domain.vm import VmItem
from vmvault.services.paths import UserPath
from vmvault.services.restore.model import QCOW2_OVERHEAD, RestoreRequest
from vmvault.services.vm_facts import refresh
from vmvault.services.vm_refs import resolve_vm

if TYPE_CHECKING:
    from vmvault.services.restore.service import RestoreService


def vm_and_point(svc: RestoreService, vm_ref: str, point_id: str) -> tuple[VmItem, RecoveryPoint]:
    """The VM and one of its points, or the error that refuses the request."""
    with svc.uow() as uow:
        vm = resolve_vm(uow, vm_ref)
        point = uow.points.get(point_id)
    if point is None:
        raise PointNotFound(point=point_id, path="the catalog")
    if point.vm_uuid != vm.uuid:
        raise PointOfAnotherVm(
            point=point_id, owner=f"{point.vm_name} ({point.vm_uuid})", vm=vm.label
        )
    return vm, point


def known_host(svc: RestoreService, host: str | None) -> None:
    """``--host``, when given, must be a host of the catalog (``HOST_NOT_FOUND``)."""
    if host is not None:
        with svc.uow() as uow:
            if uow.hosts.get(host) is None:
                raise HostNotFound(uri=host)


def target_host(svc: RestoreService, vm: VmItem, host: str | None) -> str:
    """The host the restore writes to: this node's own (``VMVAULT_NODE_HOST``, as the
    operator declared it: a ``qemu+tls://`` URI of the node's host is local to it), or one
    whose libvirtd runs on this machine (``RESTORE_HOST_NOT_LOCAL`` otherwise)."""
    uri = host or vm.host_uri
    known_host(svc, host)
    if not same_host(uri, svc.ctx.nodes.node_host) and not svc.driver.is_local(uri):
        raise RestoreHostNotLocal(uri=uri)
    return uri


def check_new(
    svc: RestoreService,
    mode: RestoreMode,
    vm: VmItem,
    point: RecoveryPoint,
    store: VaultStore,
    manifest: Manifest,
    shape: DomainShape,
    name: str,
    directory: UserPath | None,
    host: str | None,
) -> RestoreRequest:
    """``--as-new`` and the restore test: a free name, a usable directory, nothing in the way."""
    check_vm_name(name)
    uri = target_host(svc, vm, host)
    driver = svc.driver
    if driver.domain_named(uri, name) is not None:
        raise RestoreNameExists(name=name, host=uri)
    default_dir = driver.default_dir(uri)
    target_dir = directory.path if directory else default_dir
    problem = driver.dir_problem(target_dir)
    if problem:
        raise RestoreDirUnusable(path=directory or target_dir, why=problem)
    problems = {n.index: driver.nic_problem(uri, n) for n in shape.nics}
    plan = plan_new(
        mode,
        shape,
        point.disks,
        name=name,
        uuid=str(uuid.uuid4()),
        host_uri=uri,
        directory=target_dir,
        default_dir=default_dir,
        nic_problems=problems,
        taken_macs=driver.used_macs(uri),
    )
    if plan.links:
        problem = driver.dir_problem(default_dir)
        if problem:
            raise RestoreDirUnusable(path=default_dir, why=problem)
    # a staging file left by an interrupted restore is ours: it is simply overwritten
    in_the_way = [d.path for d in plan.disks] + [link for link, _ in plan.links]
    in_the_way += [Path(p) for p in plan.files.values()]
    existing = [p for p in in_the_way if svc.files.exists(p)]
    if existing:
        raise RestoreTargetExists(target=", ".join(str(p) for p in existing))
    check_space(svc, store, manifest, plan)
    return RestoreRequest(vm, point, store, manifest, shape, plan)


def check_replace(
    svc: RestoreService,
    vm: VmItem,
    point: RecoveryPoint,
    store: VaultStore,
    manifest: Manifest,
    shape: DomainShape,
) -> RestoreRequest:
    """``--replace``: the VM is not cluster-managed (the catalog's view, then as discovery
    sees it now: metadata marker, pacemaker, host settings), is still defined, has no
    snapshots, and only file disks."""
    refuse_replace(vm)
    uri = target_host(svc, vm, None)
    driver = svc.driver
    facts = svc.hypervisor.domain_facts(uri, vm.uuid)
    live = driver.domain(uri, vm.uuid)
    if facts is None or live is None:
        raise RestoreVmNotDefined(vm=vm.label, host=uri)
    now_seen = replace(vm)
    refresh(svc.uow, now_seen, facts, svc.clock())  # ownership unknown: the catalog's stays
    refuse_replace(now_seen)
    current = driver.inspect(live.xml)
    if live.snapshots:
        raise RestoreVmHasSnapshots(vm=live.name, snapshots=", ".join(live.snapshots))
    problems = {n.index: driver.nic_problem(uri, n) for n in shape.nics}
    plan = plan_replace(shape, point.disks, current=current, host_uri=uri, nic_problems=problems)
    strangers = [d.path for d in plan.disks if d.previous is None and svc.files.exists(d.path)]
    if strangers:
        raise RestoreTargetExists(target=", ".join(str(p) for p in strangers))
    for parent in sorted({d.path.parent for d in plan.disks}):
        problem = driver.dir_problem(parent)
        if problem:
            raise RestoreDirUnusable(path=parent, why=problem)
    check_space(svc, store, manifest, plan)
    return RestoreRequest(vm, point, store, manifest, shape, plan, live=live)


def check_space(
    svc: RestoreService, store: VaultStore, manifest: Manifest, plan: RestorePlan
) -> None:
    """The staged images are written next to their targets: per file system, the point's
    non-zero data must fit (plus the qcow2 metadata)."""
    needs = []
    where: dict[int, tuple[Path, int]] = {}
    for d in plan.disks:
        index = store.read_point_index(manifest, d.target)
        need = sum(index.chunk_length(i) for i, c in enumerate(index.ids) if c != ZERO_ID)
        if d.fmt == "qcow2":
            need += QCOW2_OVERHEAD
        space = svc.files.free_space(d.staging.parent)
        where.setdefault(space.fs, (space.at, space.free))
        needs.append((space.fs, need))
    for fs, need in space_by_device(needs).items():
        at, free = where[fs]
        if free < need:
            raise InsufficientSpace(path=at, need=need, free=free)


def check_instant(svc: RestoreService, req: RestoreRequest) -> None:
    """``--instant``: the overlays and the export's socket are free to make, and QEMU can
    reach the socket's directory."""
    iplan = plan_instant(req.plan)
    existing = [p for p in iplan.made if svc.files.exists(p)]
    if existing:
        raise RestoreTargetExists(target=", ".join(str(p) for p in existing))
    problem = svc.driver.dir_problem(iplan.socket.parent)
    if problem:
        raise RestoreDirUnusable(path=iplan.socket.parent, why=problem)
