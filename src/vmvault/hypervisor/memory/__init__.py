"""An in-memory hypervisor: fake VMs whose disks are bytearrays, and a restore's host.

For backups, :mod:`.world` and :mod:`.driver` (below); for restores, :mod:`.restore`
(``MemoryRestoreDriver``: domains, networks, an agent that answers or not) and :mod:`.files`
(``MemoryFiles``: the host's files, the ``HostFiles`` and ``DiskWriter`` ports).

Shipped with the product (not only the tests) so that services can be exercised without
libvirt, QEMU or a guest agent — the lab tests keep everything that touches those.  It
implements the :class:`~vmvault.services.ports.BackupDriver` port and the read part of the
:class:`~vmvault.services.ports.Hypervisor` port, with the same contracts and the same
failure modes the libvirt adapter has:

* a :class:`MemoryDisk` keeps one dirty set per checkpoint (blocks of :data:`BLOCK` bytes
  written since it was created) — an incremental reads exactly those;  a bitmap can be
  *broken* (inconsistent after a crash) or lost, and a checkpoint's metadata can be
  *forgotten* while its bitmaps survive (then ``redefine_checkpoint`` brings it back);
* a :class:`FakeAgent` freezes and thaws, or hangs (``AGENT_FREEZE_TIMEOUT``), or fails the
  freeze (``FREEZE_FAILED``), or fails the thaw;
* :meth:`MemoryBackupDriver.take_point` checks, then holds the guest still (freeze or pause),
  calls ``in_window()``, "begins" (copies the disks as they are and creates the new
  checkpoint), releases the guest — always — and asks ``cancel()`` outside the window only;
* a session is the live owner of its VM until it ends: :meth:`MemoryBackupDriver.
  cleanup_stale` does nothing meanwhile.  :meth:`MemoryHypervisor.kill` makes every open
  session "die" where it stands (its exit does nothing, the guest stays frozen or paused,
  the job runs on), as a killed process would leave them.

Every call raises :class:`Killed` while :attr:`MemoryHypervisor.dead` is set (the process is
gone); tests clear it and go on as the next process.
"""

from vmvault.hypervisor.memory.driver import MemoryBackupDriver, MemorySession
from vmvault.hypervisor.memory.world import (
    BLOCK,
    FakeAgent,
    Killed,
    MemoryDisk,
    MemoryDomain,
    MemoryHypervisor,
    MemorySource,
)

__all__ = [
    "BLOCK",
    "FakeAgent",
    "Killed",
    "MemoryBackupDriver",
    "MemoryDisk",
    "MemoryDomain",
    "MemoryHypervisor",
    "MemorySession",
    "MemorySource",
]
