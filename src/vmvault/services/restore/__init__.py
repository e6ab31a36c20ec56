"""Restoring VMs from recovery points: as a new VM, over the original, or as a restore test
(``--disks-only`` stays in :mod:`vmvault.services.points`).  docs/restore.md is the user's
side of this package.

Every restore runs as one ``restore`` job whose conflict key is the *source* VM, so no backup
or other restore of it runs meanwhile (``OPERATION_IN_PROGRESS`` up front).  The order of a
restore, the module that does each step, and what a failure at each step leaves behind:

1. **up front** (:mod:`.checks`; nothing written): the point exists and belongs to the VM;
   the target host is known and local; the new name is free (``--as-new``) or the VM is still
   defined and has no snapshots (``--replace``); the directory is writable and reachable by
   QEMU; the free space of every file system written covers the point's data; any existing
   file in the way refuses the restore.
2. **stage** (:mod:`.staging`): every disk is restored next to its final path (each chunk
   verified as it is read), then QEMU must read the image with the disk's exact size
   (``qemu-img info``, and ``qemu-img check`` for qcow2).  Any failure: the staged images are
   removed; the VM and its disks were not touched (Hyper-V deletes the VM *before*
   restoring; we verify first).
3. ``--replace`` (:mod:`.switch`): shut the VM off (agent, ACPI, then forced after
   ``shutdown_timeout``), undefine it with its checkpoint metadata, move its current images
   aside to ``<image>.pre-restore-<job>`` and the staged ones into place (renames), define the
   point's XML under the VM's name and uuid.  A failure here puts everything back
   (:mod:`.rollback`: images, definition, running state).  The images moved aside are removed
   when the job ends, or kept with ``--keep-previous``.  The VM keeps its registration;
   vmvault's checkpoint records of it are deleted, so its next backup reads every disk in
   full (deduplicated against the vault).
4. ``--as-new`` / test (:mod:`.new_vm`): rename into place, symlinks in the host's default
   directory when another directory was chosen, define the rewritten XML (new name, uuid,
   MACs, file paths; NICs whose network is gone disconnected with a warning).  A failure
   removes the domain and every file made.  The new VM is not registered: a discovery finds
   it.
5. ``--start`` starts the VM and waits for its agent; the **restore test**
   (:mod:`.restore_test`) starts it with every NIC link down, waits for the agent and for the
   file systems the VM had mounted at backup time, records the result on the point, then
   destroys and undefines the VM and deletes its files (also when the test fails).

**Instant** (``--instant``, :mod:`.instant`): no staging; the VM runs at once from the
point's export (qcow2 overlays backed by an ``export`` job's NBD socket), its disks are
block-copied to their final images while it runs and pivoted, then the export and overlays go.
A failure after its start, or a kill, is settled by :mod:`.instant_settle` (pivot, finish,
rebuild from the point with the overlay's writes, or roll a ``--replace`` back).

**Phases and cancel** (:meth:`JobContext.phase`; each is a cancel point):

* ``reading`` — before the point's indexes are read; ``writing`` — before the first disk is
  staged (staging also checks for a cancel between chunks).  A cancel in either removes every
  staged image; the VM was not touched;
* ``switching`` (``--replace``) / ``defining`` (new VM, test) — staged and verified, nothing
  defined or shut off yet: the last cancel point.  After it the restore runs to its end and a
  later cancel is ignored (logged), except in a test:
* ``testing`` — the test VM is booting or being checked: a cancel (seen within seconds)
  destroys and removes it with its files; no result is recorded.

**Interrupted** (the process died): each step above is recorded in the job's journal
(:mod:`.journal`) before it can be left half done, and :mod:`.clean_up`, called by start-up
recovery, reads it: staged images and partial files are removed, a ``--replace`` that died
in its switch is rolled back (the same :mod:`.rollback` as a failure), a half-made new VM or a
test VM is removed.

The service does no file I/O itself: files go through the ``HostFiles`` port, images through
the ``DiskWriter`` port, the hypervisor through ``RestoreDriver`` (services/ports/restore.py).
"""

from vmvault.services.restore.model import RestoredDisk, RestoreReport, RestoreRequest
from vmvault.services.restore.service import RestoreService

__all__ = ["RestoreReport", "RestoreRequest", "RestoreService", "RestoredDisk"]
