"""Which VM a user means: the one resolver of VM references, used by every service.

A *VM reference* is what a user types for a VM: its uuid, a unique uuid prefix of 8+
characters, ``NAME``, ``HOST/NAME`` or ``GROUP/NAME``
(:func:`vmvault.domain.inventory.match_vm` is the rule; vanished VMs match too).  Services
resolve references here and never with a loop of their own, so every command accepts the
same forms and refuses with the same errors, checked in this order:

* ``VM_NOT_FOUND`` / ``VM_AMBIGUOUS``: the reference names no VM, or several;
* ``VM_NOT_IN_LOCATION``: the request is for a vault and the VM's host is in another location;
* ``ALREADY_REGISTERED`` (``must_be=UNREGISTERED``): the VM is registered with a vault;
* ``VM_NOT_REGISTERED`` (``must_be=REGISTERED``): it is not registered with this vault.

A request that names several VMs is checked whole before anything starts
(:func:`resolve_vms`): one bad reference refuses it all, and a VM named twice counts once.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from vmvault.domain.errors import (
    AlreadyRegistered,
    InvalidInput,
    VmNotInLocation,
    VmNotRegistered,
)
from vmvault.domain.inventory import match_vm
from vmvault.domain.vault import Vault
from vmvault.domain.vm import VmItem, VmState
from vmvault.services.ports import UnitOfWork


class MustBe(StrEnum):
    """What a request needs of the VMs it names, relative to its vault."""

    ANY = "any"  # any VM the catalog knows
    UNREGISTERED = "unregistered"  # discovered, registered with no vault (to register it)
    REGISTERED = "registered"  # registered with the request's vault (in any protection state)


def resolve_vm(
    uow: UnitOfWork, ref: str, *, vault: Vault | None = None, must_be: MustBe = MustBe.ANY
) -> VmItem:
    """The one VM ``ref`` names, checked as :func:`resolve_vms` checks each reference."""
    return resolve_vms(uow, [ref], vault=vault, must_be=must_be)[0]


def resolve_vms(
    uow: UnitOfWork,
    refs: Sequence[str],
    *,
    vault: Vault | None = None,
    must_be: MustBe = MustBe.ANY,
) -> list[VmItem]:
    """The VMs ``refs`` name, in order and without repeats, or the error that refuses the
    whole request.  With ``vault``, each VM's host must be in the vault's location;
    ``must_be`` other than ``ANY`` needs the vault it is relative to."""
    if not refs:
        raise InvalidInput("name at least one VM", what="VM list")
    if must_be is not MustBe.ANY and vault is None:
        raise ValueError(f"must_be={must_be.value} needs the request's vault")
    known = uow.vms.all()
    locations = {h.uri: h.location for h in uow.hosts.all()} if vault is not None else {}
    chosen: list[VmItem] = []
    for ref in refs:
        vm = match_vm(known, ref)
        if vault is not None:
            _check(vm, vault, locations.get(vm.host_uri, "?"), must_be)
        if all(c.uuid != vm.uuid for c in chosen):
            chosen.append(vm)
    return chosen


def _check(vm: VmItem, vault: Vault, location: str, must_be: MustBe) -> None:
    if location != vault.location:
        raise VmNotInLocation(
            vm=vm.label, host=vm.host_uri, location=location, vault_location=vault.location
        )
    if must_be is MustBe.UNREGISTERED and vm.state is not VmState.DISCOVERED:
        raise AlreadyRegistered(vm=vm.label, vault=vm.vault or "?")
    if must_be is MustBe.REGISTERED and (vm.state is VmState.DISCOVERED or vm.vault != vault.name):
        raise VmNotRegistered(vm=vm.label, vault=vault.name)
