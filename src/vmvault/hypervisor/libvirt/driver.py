"""The :class:`~vmvault.services.ports.Hypervisor` port implemented over libvirt."""

from __future__ import annotations

import socket
from dataclasses import replace

import libvirt

from vmvault.domain.errors import HostUnreachable, VmDeleted, VmvaultError
from vmvault.domain.inventory import AgentReport
from vmvault.domain.vm import DomainFacts
from vmvault.hypervisor.libvirt import agent
from vmvault.hypervisor.libvirt.connection import connection, error_message
from vmvault.hypervisor.libvirt.domxml import facts_from_xml
from vmvault.hypervisor.pacemaker import CibCache, CibView, owner_of, read_text
from vmvault.hypervisor.pull_dir import pull_dir_problems_here

#: What discovery asks ``getAllDomainStats`` for: each domain's state (``state.state``, a
#: virDomainState), nothing of QEMU's monitor.
STATE_STATS = libvirt.VIR_DOMAIN_STATS_STATE
#: Every domain, and never wait for one whose job another caller holds (a backup's).
STATS_FLAGS = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
PERSISTENT = libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT


def _with_pacemaker(facts: DomainFacts, cib: CibView) -> DomainFacts:
    """``facts`` with ``cluster_managed`` set when a pacemaker primitive owns the domain, or
    ``cluster_unknown`` when the CIB could not be read (and nothing else marks it)."""
    if facts.cluster_managed is not None:
        return facts
    if cib.unknown is not None:
        return replace(facts, cluster_unknown=f"pacemaker ownership not known: {cib.unknown}")
    owner = owner_of(cib.domains, facts.name, facts.uuid, read_text)
    return replace(facts, cluster_managed=owner) if owner else facts


class LibvirtHypervisor:
    def __init__(self, cib: CibCache | None = None) -> None:
        self.cib = cib or CibCache()

    def _cluster(self, hostname: str) -> CibView:
        """Pacemaker's VirtualDomain resources, when the libvirt host is this machine."""
        if hostname.split(".")[0] != socket.gethostname().split(".")[0]:
            return CibView()  # cibadmin here knows nothing of another host's cluster
        return self.cib.view(hostname)

    def pull_dir_problems(self, directory: str) -> list[str]:
        return pull_dir_problems_here(directory)  # this node's files, whatever the hypervisor

    def hostname(self, uri: str) -> str:
        with connection(uri) as conn:
            try:
                return str(conn.getHostname())
            except libvirt.libvirtError as exc:
                raise HostUnreachable(error_message(exc), uri=uri) from None

    def list_domains(self, uri: str) -> list[DomainFacts]:
        """Every domain of the host: three calls for the host whatever its number of domains
        (its name, every domain with its state — ``getAllDomainStats`` — and the persistent
        ones), then one per domain, its XML (``docs/deployment.md``, "Fleet scale")."""
        with connection(uri) as conn:
            try:
                hostname = str(conn.getHostname())
                records = conn.getAllDomainStats(STATE_STATS, STATS_FLAGS)
                persistent = {d.UUIDString() for d in conn.listAllDomains(PERSISTENT)}
            except libvirt.libvirtError as exc:
                raise HostUnreachable(error_message(exc), uri=uri) from None
            facts = []
            cluster = self._cluster(hostname)
            for dom, stats in records:
                try:
                    xml = dom.XMLDesc(0)
                    state = stats.get("state.state")
                    if state is None:  # a record without its state: ask the domain
                        state = dom.state()[0]
                except libvirt.libvirtError:
                    continue  # undefined while we looked: it is simply not there
                found = facts_from_xml(
                    xml,
                    uri=uri,
                    hostname=hostname,
                    state=int(state),
                    persistent=dom.UUIDString() in persistent,
                )
                facts.append(_with_pacemaker(found, cluster))
            return facts

    def domain_facts(self, uri: str, uuid: str) -> DomainFacts | None:
        with connection(uri) as conn:
            try:
                dom = conn.lookupByUUIDString(uuid)
                hostname = str(conn.getHostname())
                found = facts_from_xml(
                    dom.XMLDesc(0),
                    uri=uri,
                    hostname=hostname,
                    state=dom.state()[0],
                    persistent=bool(dom.isPersistent()),
                )
                return _with_pacemaker(found, self._cluster(hostname))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                raise HostUnreachable(error_message(exc), uri=uri) from None

    def agent_report(self, uri: str, uuid: str, timeout: int) -> AgentReport:
        with connection(uri) as conn:
            try:
                dom = conn.lookupByUUIDString(uuid)
            except libvirt.libvirtError:
                raise VmDeleted(vm=uuid, host=uri) from None
            if not agent.ping(dom, timeout=timeout):
                return AgentReport(responded=False)
            try:
                version = str(agent.info(dom, timeout=timeout).get("version", ""))
            except VmvaultError:  # an agent that pings but cannot say its version
                return AgentReport(responded=True, version=None)
            return AgentReport(responded=True, version=version)
