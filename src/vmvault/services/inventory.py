"""Discovery and registration of VMs, each run as jobs (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from copy import copy
from functools import partial

from vmvault.domain.cluster import mark_from_host
from vmvault.domain.disk_selection import select_disks
from vmvault.domain.errors import (
    AlreadyRegistered,
    HostNotFound,
    HostUnreachable,
    InvalidInput,
    VmDeleted,
)
from vmvault.domain.inputs import DEFAULT_PAGE, check_page
from vmvault.domain.inventory import (
    DiscoveryResult,
    RegistrationLimits,
    assess_registration,
    check_registrable,
    reconcile,
    seen_as_before,
)
from vmvault.domain.job import Job, JobType
from vmvault.domain.vault import Host, Vault
from vmvault.domain.vm import DomainFacts, PowerState, VmItem, VmState
from vmvault.services.context import Service, ServiceContext
from vmvault.services.host_pull import checked_pull_dir, set_pull_tls
from vmvault.services.jobs import JobContext, JobOutcome, record_change
from vmvault.services.ports import Hypervisor, UnitOfWork
from vmvault.services.vm_facts import UNKNOWN_OWNERSHIP, refresh
from vmvault.services.vm_refs import MustBe, resolve_vm, resolve_vms

#: How many hosts a discovery lists at once.
LISTERS = 8


class InventoryService(Service):
    def __init__(
        self,
        ctx: ServiceContext,
        hypervisor: Hypervisor,
        limits: RegistrationLimits,
        agent_timeout: int,
    ) -> None:
        super().__init__(ctx)
        self.hypervisor = hypervisor
        self.limits = limits
        self.agent_timeout = agent_timeout

    # --- discovery ---------------------------------------------------------------------------

    def discover(self, vault_name: str | None) -> JobOutcome[DiscoveryResult]:
        vault = self.vaults.resolve(vault_name)
        return self.runner.run(
            JobType.DISCOVERY, vault.name, None, None, lambda ctx: self._discover(vault, ctx)
        )

    def _discover(self, vault: Vault, ctx: JobContext) -> DiscoveryResult:
        hosts = self.vaults.list_hosts(vault.location)
        if not hosts:
            raise InvalidInput(
                f"add one with 'vmvault host add URI --location {vault.location}'",
                what=f"location '{vault.location}' (it has no hosts)",
            )
        seen: list[DomainFacts] = []
        scanned: set[str] = set()
        failures: list[HostUnreachable] = []
        ctx.log_lines([f"listing domains of {host.uri}" for host in hosts])
        for host, found in zip(hosts, self._list_hosts(hosts), strict=True):
            if isinstance(found, HostUnreachable):
                failures.append(found)
                ctx.warn(f"host {host.uri} unreachable, its VMs were not checked: {found.text}")
                continue
            scanned.add(host.uri)
            seen.extend(found)
            for unknown in sorted({f.cluster_unknown for f in found if f.cluster_unknown}):
                ctx.warn(f"{host.uri}: " + UNKNOWN_OWNERSHIP.format(why=unknown))
            if found and found[0].hostname != host.hostname:
                with self.uow() as uow:
                    uow.hosts.set_hostname(host.uri, found[0].hostname)
                    uow.commit()
            ctx.log(f"{host.uri}: {len(found)} domains")
        if not scanned:
            raise failures[0]
        now = self.clock()
        by_uri = {h.uri: h for h in hosts}
        with self.uow() as uow:
            known = uow.vms.all()
            as_read = {vm.uuid: copy(vm) for vm in known}  # reconcile changes them in place
            result = reconcile(known, seen, scanned, now)
            for vm in result.new + result.changed + result.unchanged:
                host = by_uri[vm.host_uri]
                mark_from_host(vm, host.cluster_managed, host.hostname or host.uri)
            alike: list[str] = []  # seen again as they were: only last_seen is written
            rest: list[VmItem] = []
            for vm in result.unchanged:
                if seen_as_before(as_read[vm.uuid], vm):
                    alike.append(vm.uuid)
                else:
                    rest.append(vm)
            uow.vms.save_many(result.new + result.changed + rest + result.vanished)
            uow.vms.seen(alike, now)
            uow.commit()
        lines = []  # one transaction for a fleet's thousands of lines
        for label, vms in (
            ("new", result.new),
            ("changed", result.changed),
            ("vanished", result.vanished),
        ):
            for vm in vms:
                lines.append(f"{label}: {vm.label} ({vm.uuid}) group={vm.group} {vm.power_state}")
                if vm.cluster_managed:
                    lines.append(f"{vm.label} is cluster-managed: {vm.cluster_managed}")
        ctx.log_lines(lines)
        for vm in result.vanished:
            if vm.state is not VmState.DISCOVERED:
                ctx.warn(f"{vm.state.value} VM {vm.label} ({vm.uuid}) no longer exists")
        ctx.log(result.summary())
        return result

    def _list_hosts(self, hosts: list[Host]) -> list[list[DomainFacts] | HostUnreachable]:
        """Every host's domains (or why it could not be reached), in the order of ``hosts``,
        :data:`LISTERS` hosts at a time: a fleet's hosts answer over the network, each in
        its own time (libvirt's calls leave the GIL), so one slow host does not hold the
        others up."""

        def one(host: Host) -> list[DomainFacts] | HostUnreachable:
            try:
                return self.hypervisor.list_domains(host.uri)
            except HostUnreachable as exc:
                return exc

        if len(hosts) == 1:
            return [one(hosts[0])]
        with ThreadPoolExecutor(min(LISTERS, len(hosts)), "discovery") as pool:
            return list(pool.map(one, hosts))

    # --- listing -----------------------------------------------------------------------------

    def list_vms(
        self,
        vault_name: str | None,
        state: VmState | None = None,
        limit: int = DEFAULT_PAGE,
        offset: int = 0,
    ) -> tuple[list[VmItem], int]:
        """A page of the VMs of the vault's location (``limit`` after ``offset``, by name)
        and how many there are in all (two queries, whatever the number of VMs)."""
        check_page(limit, offset)
        vault = self.vaults.resolve(vault_name)
        uris = [h.uri for h in self.vaults.list_hosts(vault.location)]
        with self.uow() as uow:
            vms = uow.vms.all(uris, state=state, limit=limit, offset=offset)
            return vms, uow.vms.count(uris, state=state)

    def find(self, ref: str) -> VmItem:
        """Resolve a VM reference among every VM the catalog knows."""
        with self.uow() as uow:
            return resolve_vm(uow, ref)

    def update_vm(
        self, ref: str, exclude_disks: Sequence[str] = (), include_disks: Sequence[str] = ()
    ) -> VmItem:
        """Change which disks of a VM its backups leave out (``vm update``); takes effect at
        its next backup.  Refused before anything changes when a name is not one of its disks,
        names a disk that cannot be backed up, or leaves no disk to back up."""
        if not exclude_disks and not include_disks:
            raise InvalidInput(
                "give --exclude-disk or --include-disk", what="vm update (nothing to change)"
            )
        with self.uow() as uow:
            vm = resolve_vm(uow, ref)
            before = vm.excluded_targets
            vm.excluded_targets = select_disks(vm, exclude_disks, include_disks)
            uow.vms.save(vm)
            if vm.excluded_targets != before:
                line = (
                    f"vm update: disks excluded by user: {', '.join(vm.excluded_targets) or 'none'}"
                    f" (before: {', '.join(before) or 'none'}); from its next backup"
                )
                vault = vm.vault or self._vault_of(uow, vm)
                change = (vm.uuid, vm.label)
                record_change(
                    uow, JobType.CONFIGURE_PROTECTION, vault, change, [line], self.clock()
                )
            uow.commit()
        return vm

    def _vault_of(self, uow: UnitOfWork, vm: VmItem) -> str:
        """The vault a change of unregistered ``vm`` is recorded under: the first (by name)
        serving its host's location — the vaults its discovery ran for."""
        host = uow.hosts.get(vm.host_uri)
        names = sorted(v.name for v in uow.vaults.all() if host and v.location == host.location)
        return names[0] if names else "-"

    def update_host(
        self,
        uri: str,
        cluster_managed: Sequence[str] = (),
        not_cluster_managed: Sequence[str] = (),
        *,
        pull_tls: str | None = None,
        no_pull_tls: bool = False,
        check: bool = True,
    ) -> Host:
        """Change a host's settings (``host update``): add VMs (names or uuids) to its
        cluster-managed ones or take them off — the host's VMs in the catalog are marked or
        unmarked at once —; mark it pulled from with client PKI directory ``pull_tls`` (or
        change that directory), or (``no_pull_tls``) backed up by its own node again
        (services/host_pull.py: the same check as ``host add --pull-tls``, ``check``: of the
        directory's files; refused while a job of its VMs runs and the mode would change).
        Everything is checked before anything is written."""
        add = [v.strip() for v in cluster_managed if v.strip()]
        remove = [v.strip() for v in not_cluster_managed if v.strip()]
        if not add and not remove and pull_tls is None and not no_pull_tls:
            raise InvalidInput(
                "give --cluster-managed, --not-cluster-managed, --pull-tls DIR or --no-pull-tls",
                what="host update",
            )
        if set(add) & set(remove):
            raise InvalidInput("a VM is either cluster-managed or not", what="host update")
        if pull_tls is not None and no_pull_tls:
            raise InvalidInput(
                "a host is either pulled from (--pull-tls DIR) or backed up by its own node "
                "(--no-pull-tls)",
                what="host update",
            )
        if not check and pull_tls is None:
            raise InvalidInput(
                "--no-check skips the check of --pull-tls DIR's files: give it with --pull-tls",
                what="host update",
            )
        with self.uow() as uow:
            host = uow.hosts.get(uri)
        if host is None:
            raise HostNotFound(uri=uri)
        if pull_tls is not None:
            pull_tls = checked_pull_dir(self.hypervisor, host.uri, pull_tls, check)
        with self.uow() as uow:
            host = uow.hosts.get(uri)
            if host is None:
                raise HostNotFound(uri=uri)
            if pull_tls is not None or no_pull_tls:
                set_pull_tls(uow, host, pull_tls)
            if add or remove:
                self._mark_cluster_managed(uow, host, add, remove)
            uow.commit()
            updated = uow.hosts.get(uri)
        assert updated is not None
        return updated

    @staticmethod
    def _mark_cluster_managed(
        uow: UnitOfWork, host: Host, add: Sequence[str], remove: Sequence[str]
    ) -> None:
        listed = [v for v in host.cluster_managed if v not in remove]
        listed += [v for v in add if v not in listed]
        uow.hosts.set_cluster_managed(host.uri, listed)
        for vm in uow.vms.all([host.uri]):
            before = vm.cluster_managed
            mark_from_host(vm, listed, host.hostname or host.uri)
            if vm.cluster_managed != before:
                uow.vms.save(vm)

    def history(self, vm: VmItem) -> list[Job]:
        with self.uow() as uow:
            return uow.jobs.find(vm_uuid=vm.uuid, limit=20)

    # --- registration ------------------------------------------------------------------------

    def register(
        self,
        vault_name: str | None,
        refs: Sequence[str],
        *,
        allow_crash_consistent: bool = False,
        exclude_disks: Sequence[str] = (),
    ) -> list[JobOutcome[VmItem]]:
        """One ``register`` job per VM.

        Every reference is checked first (exists, unique, in the vault's location, not
        registered yet), and so is ``exclude_disks`` against each VM's disks
        (:func:`~vmvault.domain.disk_selection.select_disks`); one bad reference or disk name
        refuses the whole request and changes nothing.  The VM's own configuration (disks,
        agent, cluster ownership) is then checked by its job, so a refusal is recorded there
        with its code and remedy.
        """
        if not refs:
            raise InvalidInput("name at least one VM", what="VM list")
        vault = self.vaults.resolve(vault_name)
        with self.uow() as uow:
            chosen = resolve_vms(uow, refs, vault=vault, must_be=MustBe.UNREGISTERED)
        excluded = {  # no --exclude-disk: the VM keeps the list it has (vm update)
            vm.uuid: select_disks(vm, exclude_disks) if exclude_disks else vm.excluded_targets
            for vm in chosen
        }
        outcomes = []
        for vm in chosen:
            vm.excluded_targets = excluded[vm.uuid]
            work = partial(self._register, vault, vm, allow_crash_consistent=allow_crash_consistent)
            outcomes.append(self.runner.run(JobType.REGISTER, vault.name, vm.uuid, vm.label, work))
        return outcomes

    def _register(
        self, vault: Vault, vm: VmItem, ctx: JobContext, *, allow_crash_consistent: bool
    ) -> VmItem:
        ctx.log(f"checking {vm.label} on {vm.host_uri}")
        facts = self.hypervisor.domain_facts(vm.host_uri, vm.uuid)
        now = self.clock()
        if facts is None:
            vm.vanished_at = now
            with self.uow() as uow:
                uow.vms.save(vm)
                uow.commit()
            raise VmDeleted(vm=vm.label, host=vm.hostname)
        unknown = refresh(self.uow, vm, facts, now)
        if unknown:
            ctx.warn(unknown)
        ctx.log(
            f"power state {vm.power_state.value}; disks: "
            + ", ".join(
                f"{d.target}({d.type}/{d.device}/{d.format}{' excluded' if d.excluded else ''})"
                for d in vm.effective_disks
            )
        )
        if vm.cluster_managed:
            ctx.log(
                f"cluster-managed ({vm.cluster_managed}): vmvault never pauses, shuts off, "
                "undefines or replaces it"
            )
        report = None
        if vm.agent_channel and vm.power_state is PowerState.RUNNING:
            check_registrable(vm, self.limits)  # disks first: no agent round-trip if refused
            report = self.hypervisor.agent_report(vm.host_uri, vm.uuid, self.agent_timeout)
            ctx.log(f"guest agent: responded={report.responded} version={report.version}")
        outcome = assess_registration(
            vm, report, self.limits, allow_crash_consistent=allow_crash_consistent
        )
        for warning in outcome.warnings:
            ctx.warn(warning)
        vm.state = VmState.REGISTERED
        vm.vault = vault.name
        vm.registered_at = now
        vm.agent_version = outcome.agent_version
        vm.crash_consistent_only = outcome.crash_consistent_only
        vm.registration_warnings = list(outcome.warnings)
        with self.uow() as uow:
            current = uow.vms.get(vm.uuid)
            if current is not None and current.state is not VmState.DISCOVERED:
                raise AlreadyRegistered(vm=vm.label, vault=current.vault or "?")
            uow.vms.save(vm)
            uow.commit()
        ctx.log(f"registered with vault '{vault.name}'")
        return vm
