"""Which vmvault nodes serve which libvirt hosts (see :mod:`vmvault.domain.placement`)."""

from __future__ import annotations

from typing import Protocol


class NodeDirectory(Protocol):
    """Answers whether a job touching a VM's disks can run for a host.

    ``node_host`` is the libvirt URI of the host this process runs on (``VMVAULT_NODE_HOST``).
    ``serves(host_uri)`` is True when a node that can run such a job for ``host_uri`` exists:
    today only this process's own node host does
    (:class:`~vmvault.domain.placement.OwnNode`); with nodes leased in the catalog, any live
    node whose node host it is. It must not raise for an unknown host (it is False).
    """

    node_host: str

    def serves(self, host_uri: str) -> bool: ...
