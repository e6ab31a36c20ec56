"""Where the VMs of a backup set wait for one another (docs/sets.md).

One :class:`SetGate` per set, shared by the threads running its child backups.  Each VM
arrives at each *stage* (``ready``, ``held``, ``written``, ``published``) and waits there until every VM of
the set has arrived — or until the set failed: then every waiter raises at once, and each
child's own error path undoes its backup (thaw / resume, abort the libvirt job, delete the new
checkpoint, drop what it wrote).  A stage may have a timeout: the first waiter whose wait runs
out fails the set in the name of the first VM that has not arrived (``BACKUP_SET_TIMEOUT``).

The last VM to arrive runs the stage's action (inside the lock, before anyone goes on): the
``held`` action only reads the clock (the guests are still held: no I/O), the ``written``
action journals ``set-publishing`` in the set job, the ``published`` action (every manifest
written) commits every VM's catalog row and ``set-published`` in one transaction.  An action
that raises fails the set.

The first failure is the set's cause (:attr:`SetGate.failure`); what the other VMs raise when
they give up because of it is ``BACKUP_SET_ABORTED`` naming that VM.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from vmvault.domain.errors import (
    BackupSetAborted,
    BackupSetTimeout,
    Cancelled,
    InternalError,
    VmvaultError,
)

READY, HELD, WRITTEN, PUBLISHED = "ready", "held", "written", "published"


class SetGate:
    def __init__(self, vms: Sequence[str]) -> None:
        self.vms = list(vms)
        self._cond = threading.Condition()
        self._arrived: dict[str, list[str]] = {}
        self._passed: set[str] = set()
        #: the VM whose failure (or the cancel) ended the set, and its error
        self.failed_vm: str | None = None
        self.failure: VmvaultError | None = None

    @property
    def broken(self) -> bool:
        with self._cond:
            return self.failure is not None

    def passed(self, stage: str) -> bool:
        """Every VM arrived at ``stage`` and its action succeeded."""
        with self._cond:
            return stage in self._passed

    def fail(self, vm: str | None, error: VmvaultError) -> None:
        """The set fails (the first call wins; later ones are consequences)."""
        with self._cond:
            if self.failure is None:
                self.failed_vm, self.failure = vm, error
            self._cond.notify_all()

    def wait(
        self,
        stage: str,
        vm: str,
        timeout: float | None = None,
        action: Callable[[], None] | None = None,
    ) -> None:
        """Arrive at ``stage`` as ``vm`` and wait for every VM (see the module docstring)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._raise_if_broken(vm)
            arrived = self._arrived.setdefault(stage, [])
            if vm not in arrived:
                arrived.append(vm)
            if len(arrived) == len(self.vms) and stage not in self._passed:
                try:
                    if action is not None:
                        action()
                except VmvaultError as exc:
                    self.fail(vm, exc)
                except Exception as exc:  # the set's cause, named in its job
                    self.fail(vm, InternalError(f"{type(exc).__name__}: {exc}"))
                else:
                    self._passed.add(stage)
                self._cond.notify_all()
            while stage not in self._passed:
                self._raise_if_broken(vm)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    late = [v for v in self.vms if v not in arrived]
                    who = late[0] if late else vm
                    self.fail(who, BackupSetTimeout(vm=who, seconds=f"{timeout or 0:g}"))
                    self._raise_if_broken(vm)
                self._cond.wait(left)

    def _raise_if_broken(self, vm: str) -> None:
        if self.failure is None:
            return
        if vm == self.failed_vm:
            raise self.failure
        if isinstance(self.failure, Cancelled):
            raise Cancelled(operation=f"the backup of {vm} (its set was cancelled)")
        raise BackupSetAborted(vm=vm, reason=f"VM {self.failed_vm} failed: {self.failure.text}")
