"""Exports: a point's disks served over NBD straight from the vault (docs/export.md).

:meth:`ExportService.serving` is the mechanism: the point's reading store (healing, from a
copy when its own vault has it damaged) under the vault's shared lock (so no GC sweep runs
while it serves), one :class:`~vmvault.dataplane.export.ExportedDisk` per disk (chunks
verified as read, cached, read ahead), an :class:`~vmvault.dataplane.export.Overlay` each
when writable, and the :class:`~vmvault.dataplane.nbd_server.NbdServer` on a unix socket.
Leaving the context closes the server, removes the socket and deletes the overlays.

:meth:`ExportService.export` runs it as a job (type ``export``) until the job is cancelled
(``jobs cancel``, ``vmvault export``'s Ctrl-C, the REST stop): phase ``serving`` journals
the socket and the overlay files, so start-up recovery of a killed process removes them
(:func:`clean_up`).  An export takes no conflict key: backups of the VM go on meanwhile.
File-level restore (services/files.py) uses ``serving`` directly, read-only, for one call.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vmvault.dataplane.export import ExportedDisk, Overlay
from vmvault.dataplane.nbd_server import NbdServer
from vmvault.domain.errors import (
    Cancelled,
    DiskNotInPoint,
    ExportFailed,
    InvalidInput,
    JobNotFound,
    VmvaultError,
)
from vmvault.domain.job import Job, JobType, JournalStep
from vmvault.domain.recovery_point import RecoveryPoint
from vmvault.services import holdings
from vmvault.services.context import Service, ServiceContext
from vmvault.services.healing import Healing
from vmvault.services.jobs import JobContext, JobOutcome, JobQueries
from vmvault.services.paths import user_path

SERVING = "serving"  # journal: {socket, overlays: [paths]}
#: The longest unix socket path (sun_path holds 108 bytes with its NUL).
MAX_SOCKET = 107


@dataclass
class Export:
    """A running export: where it listens and what it serves."""

    point: RecoveryPoint
    socket: Path
    disks: dict[str, int]  # target → size in bytes
    writable: bool
    vault: str = ""
    job_id: int | None = None
    served: dict[str, ExportedDisk] = field(default_factory=dict)

    def uri(self, disk: str) -> str:
        return f"nbd+unix:///{disk}?socket={self.socket}"

    def to_json(self) -> dict[str, object]:
        return {
            "point": self.point.id,
            "job": self.job_id,
            "socket": str(self.socket),
            "writable": self.writable,
            "vault": self.vault,
            "disks": [{"target": t, "size": s, "uri": self.uri(t)} for t, s in self.disks.items()],
        }


class ExportService(Service):
    def __init__(self, ctx: ServiceContext, work_dir: Path) -> None:
        super().__init__(ctx)
        #: default sockets and overlays go in ``work_dir/exports``
        self.dir = work_dir / "exports"

    def check(
        self, point_id: str, disk: str | None = None, socket: str | None = None
    ) -> tuple[RecoveryPoint, list[str], Path | None]:
        """The point, the disks to serve and the socket asked for, or the error refusing
        the request (nothing started)."""
        with self.uow() as uow:
            point = holdings.known(uow, point_id)
        targets = [d.target for d in point.disks if not d.excluded]
        if disk is not None and disk not in targets:
            raise DiskNotInPoint(point=point.id, disk=disk, disks=", ".join(targets) or "none")
        path = None
        if socket is not None:
            path = user_path(socket, "--socket").path
            if len(str(path).encode()) > MAX_SOCKET:
                raise InvalidInput(
                    f"a unix socket path has at most {MAX_SOCKET} bytes", what=socket
                )
            if path.exists() and not path.is_socket():
                raise InvalidInput("it exists and is not a socket", what=f"--socket {socket}")
            if not path.parent.is_dir():
                raise InvalidInput("its directory does not exist", what=f"--socket {socket}")
        return point, [disk] if disk else targets, path

    @contextlib.contextmanager
    def serving(
        self,
        point_id: str,
        disk: str | None = None,
        *,
        writable: bool = False,
        socket: str | None = None,
        name: str | None = None,
        on_error: Callable[[str], None] = lambda _: None,
    ) -> Iterator[Export]:
        """Serve the point's disks (or ``disk``) until the context ends (module docstring).
        ``name``: the default socket's and overlays' name (``job-<id>``; else random)."""
        point, targets, path = self.check(point_id, disk, socket)
        reading = Healing(self.ctx).reading_store(point)
        store = reading.store
        name = name or f"tmp-{secrets.token_hex(4)}"
        path = path or self.dir / f"{name}.sock"
        manifest = store.read_manifest(point.id)
        export = Export(point, path, {}, writable, reading.vault)
        overlays: list[Overlay] = []
        with contextlib.ExitStack() as stack:
            stack.enter_context(store.reader())
            devices: dict[str, ExportedDisk | Overlay] = {}
            for target in targets:
                index = store.read_point_index(manifest, target)
                base = ExportedDisk(store, index, workers=max(2, self.workers))
                stack.callback(base.close)
                export.served[target] = base
                export.disks[target] = index.disk_size
                devices[target] = base
                if writable:
                    self.dir.mkdir(parents=True, exist_ok=True)
                    overlay = Overlay(base, self.dir / f"{name}-{target}.overlay")
                    stack.callback(overlay.close)
                    overlays.append(overlay)
                    devices[target] = overlay
            server = NbdServer(path, devices, on_error)
            try:
                server.start()
            except OSError as exc:
                raise ExportFailed(point=point.id, why=f"{path}: {exc.strerror}") from None
            stack.callback(server.close)
            yield export

    def export(
        self,
        point_id: str,
        disk: str | None = None,
        *,
        writable: bool = False,
        socket: str | None = None,
        ready: Callable[[Export], None] = lambda _: None,
        stop: threading.Event | None = None,
    ) -> JobOutcome[Export]:
        """Serve as a job until it is cancelled (or ``stop`` is set); ``ready`` is called
        once the socket listens.  Bad input is refused before the job starts."""
        point, _, _ = self.check(point_id, disk, socket)
        stop = stop or threading.Event()

        def work(ctx: JobContext) -> Export:
            warned: set[str] = set()

            def on_error(message: str) -> None:
                if message not in warned and len(warned) < 20:
                    warned.add(message)
                    ctx.warn(f"a read of the export failed: {message}")

            name = f"job-{ctx.job.id}"
            with self.serving(
                point.id, disk, writable=writable, socket=socket, name=name, on_error=on_error
            ) as export:
                export.job_id = ctx.job.id
                overlays = [str(self.dir / f"{name}-{t}.overlay") for t in export.disks]
                ctx.phase(SERVING, socket=str(export.socket), overlays=overlays if writable else [])
                for t in export.disks:
                    ctx.log(f"serving {t} at {export.uri(t)}" + (" (writable)" if writable else ""))
                ready(export)
                try:
                    while not stop.wait(0.25):
                        if ctx.cancelled():
                            raise Cancelled(operation=f"export of point {point.id}")
                finally:
                    for t, d in export.served.items():
                        ctx.log(f"{t}: {d.fetched} chunks read from the vault, {d.hits} cache hits")
            return export

        return self.runner.run(JobType.EXPORT, point.vault, point.vm_uuid, point.vm_name, work)

    def start(
        self,
        point_id: str,
        disk: str | None = None,
        *,
        writable: bool = False,
        socket: str | None = None,
        timeout: float = 60.0,
    ) -> Export:
        """:meth:`export` in a thread of this process (the REST server): returns once it
        serves; it runs until its job is cancelled or this process ends.  Not serving
        within ``timeout`` it is stopped (EXPORT_FAILED here)."""
        self.check(point_id, disk, socket)
        started: list[Export] = []
        failed: list[VmvaultError | None] = []
        done = threading.Event()
        stop = threading.Event()

        def ready(export: Export) -> None:
            started.append(export)
            done.set()

        def run() -> None:
            outcome = self.export(
                point_id, disk, writable=writable, socket=socket, ready=ready, stop=stop
            )
            failed.append(outcome.error)
            done.set()

        threading.Thread(target=run, name=f"export-{point_id}", daemon=True).start()
        done.wait(timeout)
        if started:
            return started[0]
        stop.set()  # too late: the export stops as soon as it serves, nobody was told of it
        error = failed[0] if failed else None
        raise error or ExportFailed(point=point_id, why="it did not start in time")

    def stop(self, job_id: int, timeout: float = 30.0) -> Job:
        """Cancel export job ``job_id`` and wait until it has stopped serving."""
        with self.uow() as uow:
            job = uow.jobs.get(job_id)
        if job is None or job.type is not JobType.EXPORT:
            raise JobNotFound(job=job_id)
        queries = JobQueries(self.uow, self.clock)
        queries.cancel(job_id)
        return queries.wait(job_id, poll=0.2, timeout=timeout)


def clean_up(job: Job, steps: Iterable[JournalStep]) -> list[str]:
    """After export job ``job`` died with its process (the server went with it): remove its
    socket and overlay files, from its ``serving`` journal step."""
    done: list[str] = []
    for step in steps:
        if step.step != SERVING:
            continue
        for key in [step.data.get("socket"), *step.data.get("overlays", [])]:
            if key and Path(key).exists():
                Path(key).unlink()
                done.append(f"removed {key}: export job {job.id} had left it")
    return done
