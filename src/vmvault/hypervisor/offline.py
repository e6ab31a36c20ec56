"""Reading the disk image of a shut-off VM: ``qemu-nbd`` over the image, read-only.

::

    with OfflineExport(Path(".../data.qcow2"), "qcow2", work_dir, bitmap="vmvault-P1") as ex:
        src = ex.source()          # NbdSource; src.dirty_extents() when a bitmap is given

``qemu-nbd --read-only --format=FMT --persistent --shared=4 --socket=SOCK --pid-file=PID
[--bitmap=NAME] IMAGE`` runs in a private directory ``work_dir/offline-<pid>-<n>/`` and is
stopped (SIGTERM, then SIGKILL) on exit; the directory goes with it.  The export name is ``""``;
with a bitmap the meta context ``qemu:dirty-bitmap:NAME`` is offered (only the exported bitmap
is negotiable).

* qemu-nbd takes the image's lock: a VM that is running cannot be exported
  (``OFFLINE_EXPORT_FAILED``), and the VM cannot be started while the export runs, so what is
  read is one point in time.
* ``--bitmap`` needs a bitmap that a QEMU closed cleanly; after a crash/``virsh destroy`` it is
  flagged ``in-use`` (inconsistent) and qemu-nbd refuses it: ``CHECKPOINT_MISSING`` (the
  caller falls back to a full read).

**Offline incrementals.** libvirt 9.0 cannot create a checkpoint of a shut-off VM, and the
VM's persistent bitmaps only track writes while a QEMU runs it.  While it is off, nothing
writes (short of someone opening the image read-write), so an offline backup reads the dirty
extents of the *last* checkpoint's bitmap (``bitmap="vmvault-<last>"``, everything written
since that point, a superset of what changed since the previous recovery point) and creates no
checkpoint: the next backup is again incremental from that same checkpoint, and the first
backup after the VM runs again creates the next one.

A process that dies leaves qemu-nbd running (holding the image's lock): :func:`cleanup_stale_exports`
stops the exports whose owner is dead.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from vmvault.domain.errors import (
    CheckpointMissing,
    InvalidInput,
    NbdReadFailed,
    OfflineExportFailed,
)
from vmvault.hypervisor.host import pid_alive
from vmvault.hypervisor.nbd import DIRTY_BITMAP_PREFIX, NbdSource

_counter = itertools.count(1)
OWNER_NAME = "owner.json"


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


class OfflineExport:
    """A read-only NBD export of one image (see the module docstring)."""

    def __init__(
        self,
        image: Path,
        fmt: str,
        work_dir: Path,
        bitmap: str | None = None,
        *,
        timeout: float = 30.0,
        connections: int = 1,
    ) -> None:
        if fmt not in ("qcow2", "raw"):
            raise InvalidInput("use qcow2 or raw", what=f"format {fmt!r}")
        if bitmap is not None and fmt != "qcow2":
            raise InvalidInput("only qcow2 images have bitmaps", what=f"bitmap {bitmap!r}")
        self.image = Path(image).absolute()
        self.fmt = fmt
        self.work_dir = Path(work_dir).absolute()
        self.bitmap = bitmap
        self.timeout = timeout
        self.connections = connections
        self.dir = self.work_dir / f"offline-{os.getpid()}-{next(_counter)}"
        self.socket = self.dir / "nbd.sock"
        self.pid_file = self.dir / "qemu-nbd.pid"
        self._proc: subprocess.Popen[bytes] | None = None
        self._source: NbdSource | None = None

    def __enter__(self) -> OfflineExport:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def source(self) -> NbdSource:
        """The export as an NbdSource (connected by ``__enter__``, closed on exit)."""
        if self._source is None:
            raise InvalidInput("enter the OfflineExport first", what="offline export")
        return self._source

    # --- start/stop ------------------------------------------------------------------------

    def _start(self) -> None:
        if not self.image.is_file():
            raise OfflineExportFailed("no such file", image=str(self.image))
        if self.bitmap is not None:
            self._check_bitmap()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(mode=0o700)
        (self.dir / OWNER_NAME).write_text(
            json.dumps({"pid": os.getpid(), "image": str(self.image), "started": time.time()})
        )
        cmd = [
            "qemu-nbd",
            "--read-only",
            f"--format={self.fmt}",
            "--persistent",
            "--shared=8",
            f"--socket={self.socket}",
            f"--pid-file={self.pid_file}",
        ]
        if self.bitmap is not None:
            cmd.append(f"--bitmap={self.bitmap}")
        cmd.append(str(self.image))
        log = open(self.dir / "qemu-nbd.log", "wb")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of ours is not its business: we stop it
            )
        except OSError as exc:
            raise OfflineExportFailed(str(exc), image=str(self.image)) from None
        finally:
            log.close()
        deadline = time.monotonic() + self.timeout
        while not self.socket.exists():
            if self._proc.poll() is not None:
                raise OfflineExportFailed(self._log_tail(), image=str(self.image))
            if time.monotonic() > deadline:
                raise OfflineExportFailed(
                    f"no socket after {self.timeout:g}s: {self._log_tail()}", image=str(self.image)
                )
            time.sleep(0.01)
        # qemu-nbd listens before it opens the image: only a negotiated connection proves
        # that the export works (a locked image makes it exit right after binding)
        try:
            self._source = self._connect()
        except NbdReadFailed as exc:
            detail = self._log_tail() if self._proc.poll() is not None else exc.detail
            raise OfflineExportFailed(detail, image=str(self.image)) from None

    def _check_bitmap(self) -> None:
        from vmvault.hypervisor.libvirt.checkpoints import image_bitmap_info

        assert self.bitmap is not None
        try:
            found = {str(b.get("name")): b for b in image_bitmap_info(self.image)}
        except InvalidInput as exc:
            raise OfflineExportFailed(exc.detail, image=str(self.image)) from None
        b = found.get(self.bitmap)
        vm = self.image.name
        if b is None:
            raise CheckpointMissing(
                f"bitmap {self.bitmap} is not in {self.image}", checkpoint=self.bitmap, vm=vm
            )
        if "in-use" in (b.get("flags") or []):
            raise CheckpointMissing(
                f"bitmap {self.bitmap} in {self.image} is inconsistent (the VM was not shut "
                "down cleanly, or the image is open elsewhere)",
                checkpoint=self.bitmap,
                vm=vm,
            )

    def _connect(self) -> NbdSource:
        context = f"{DIRTY_BITMAP_PREFIX}{self.bitmap}" if self.bitmap else None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return NbdSource(
                    self.socket,
                    "",
                    disk=str(self.image),
                    dirty_context=context,
                    connections=self.connections,
                )
            except NbdReadFailed:
                if (self._proc is not None and self._proc.poll() is not None) or (
                    time.monotonic() > deadline
                ):
                    raise
                time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            text = (self.dir / "qemu-nbd.log").read_text(errors="replace").strip()
        except OSError:
            return "qemu-nbd failed"
        return " / ".join(text.splitlines()[-3:]) or "qemu-nbd exited"

    def close(self) -> None:
        """Disconnect, stop qemu-nbd, remove the directory.  Never raises."""
        if self._source is not None:
            self._source.close()
            self._source = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def cleanup_stale_exports(work_dir: Path) -> list[str]:
    """Stop the qemu-nbd of every ``offline-*`` directory under ``work_dir`` whose owner
    process is gone, and remove the directory.  Returns what was done."""
    done: list[str] = []
    for d in sorted(Path(work_dir).glob("offline-*")):
        try:
            owner = json.loads((d / OWNER_NAME).read_text())
            owner_pid = int(owner.get("pid", 0))
        except (OSError, ValueError, TypeError):
            owner_pid = 0
        if owner_pid and pid_alive(owner_pid):
            continue
        try:
            pid = int((d / "qemu-nbd.pid").read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid and pid_alive(pid) and any("qemu-nbd" in a for a in _cmdline(pid)[:1]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not pid_alive(pid):
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            done.append(f"stopped stale qemu-nbd {pid} ({d.name})")
        shutil.rmtree(d, ignore_errors=True)
        done.append(f"removed {d}")
    return done
