"""``/points/{id}/files…`` (file-level restore: browse, find, download) and exports
(``POST /points/{id}/export``, ``POST /exports/{job}/stop``): docs/files.md, docs/export.md.

Listing and finding are ``reader`` (names, owners and sizes, like the rest of a point's
metadata); a download and an export hand out the data itself: ``operator``, as a restore."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from vmvault import documents
from vmvault.api.errors import responses
from vmvault.api.models import ExportDoc, FileEntryDoc, JobDoc, VolumeDoc
from vmvault.api.requests import ExportRequest
from vmvault.api.routes.common import OPERATOR, PREFIX, READER, JobId, server_path
from vmvault.bootstrap import Services


def routes(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["files"])

    @router.get(
        "/points/{point_id}/filesystems",
        response_model=list[VolumeDoc],
        responses=responses(404),
        dependencies=READER,
    )
    def filesystems(point_id: str) -> list[dict[str, Any]]:
        """The point's file systems and where the guest mounted them (``files ls POINT``)."""
        return [v.to_json() for v in services.files.volumes(point_id)]

    @router.get(
        "/points/{point_id}/files",
        response_model=list[FileEntryDoc],
        responses=responses(404),
        dependencies=READER,
    )
    def files(point_id: str, path: str = "/", disk: str | None = None) -> list[dict[str, Any]]:
        """A directory of the point (``files ls POINT PATH [--disk D]``)."""
        return [e.to_json() for e in services.files.ls(point_id, path, disk)]

    @router.get(
        "/points/{point_id}/files/find",
        response_model=list[FileEntryDoc],
        responses=responses(404),
        dependencies=READER,
    )
    def find(point_id: str, pattern: str, disk: str | None = None) -> list[dict[str, Any]]:
        """The point's files whose name (a ``/`` in ``pattern``: path) matches."""
        return [e.to_json() for e in services.files.find(point_id, pattern, disk)]

    @router.get(
        "/points/{point_id}/files/content",
        response_class=FileResponse,
        responses={200: {"content": {"application/octet-stream": {}}}, **responses(404)},
        dependencies=OPERATOR,
    )
    def content(point_id: str, path: str, disk: str | None = None) -> FileResponse:
        """Download one regular file of the point (its bytes; its mode and times in the
        headers are the download's, not the guest's: ``files get`` keeps those)."""
        return _download(
            lambda scratch: services.files.extract_file(point_id, path, scratch, disk),
            "application/octet-stream",
        )

    @router.get(
        "/points/{point_id}/files/archive",
        response_class=FileResponse,
        responses={200: {"content": {"application/x-tar": {}}}, **responses(404)},
        dependencies=OPERATOR,
    )
    def archive(
        point_id: str, path: Annotated[list[str], Query()], disk: str | None = None
    ) -> FileResponse:
        """Download files and whole trees of the point as one tar (``?path=A&path=B``): what
        ``files get`` writes — owners (numeric), modes, times, symlinks, FIFOs; no device
        node, no setuid bit — each path at the archive's top under its own name."""

        def tar(scratch: Path) -> Path:
            out = scratch / "files"
            out.mkdir()
            written = services.files.get(point_id, path, str(out), disk)
            name = written[0].name if len(written) == 1 else f"{point_id}-files"
            made = scratch / f"{name}.tar"
            with tarfile.open(made, "w") as t:
                for p in written:
                    t.add(p, arcname=p.name, filter=_numeric)
            return made

        return _download(tar, "application/x-tar")

    @router.post(
        "/points/{point_id}/export",
        status_code=201,
        response_model=ExportDoc,
        responses=responses(404, 409),
        dependencies=OPERATOR,
    )
    def export(point_id: str, req: ExportRequest) -> dict[str, Any]:
        """Serve the point's disks over NBD on a unix socket of the server (an ``export``
        job, running until stopped: ``POST /exports/{job}/stop`` or the job's cancel)."""
        socket = server_path(req.socket, "socket")
        started = services.exports.start(point_id, req.disk, writable=req.writable, socket=socket)
        return started.to_json()

    @router.post(
        "/exports/{job_id}/stop",
        response_model=JobDoc,
        responses=responses(404, 409),
        dependencies=OPERATOR,
    )
    def stop(job_id: JobId) -> dict[str, Any]:
        """Stop an export: its job cancelled, the socket removed; the ended job."""
        return documents.job_doc(services.exports.stop(job_id))

    return router


def _download(make: Callable[[Path], Path], media_type: str) -> FileResponse:
    """Send the file ``make`` writes into a scratch directory, removed once it is sent (or
    at once when ``make`` fails)."""
    scratch = tempfile.mkdtemp(prefix="vmvault-download-")
    try:
        written = make(Path(scratch))
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return FileResponse(
        written,
        filename=written.name,
        media_type=media_type,
        background=BackgroundTask(shutil.rmtree, scratch, ignore_errors=True),
    )


def _numeric(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """The guest's uid and gid only: names looked up on the server would be the server's."""
    info.uname = info.gname = ""
    return info
