"""The ``FileSystems`` port with user-space tools: ``nbdfuse`` and e2fsprogs' ``debugfs``.

These machines have no ``nbd`` kernel module (docs/export.md), so an export is seen as a
file through FUSE: ``nbdfuse -r DIR URI`` serves ``DIR/nbd`` until it is unmounted.
``debugfs`` (read-only, the default) opens that file — at a partition's byte offset with
its ``FILE?offset=N`` syntax — and answers ``ls -p`` (``/inode/mode/uid/gid/name/size/``
per entry), ``stats -h`` ("Last mounted on") and ``rdump`` (a file or a tree, with owners,
modes, times and symlinks; FIFOs and sockets it skips are made here with ``mknod``, in an
extracted tree too; char/block devices are never made, setuid/setgid bits are cleared).  Several commands go in one run with ``-f`` (one process per directory level
of a walk, not per directory).  ext2/3/4 only: anything else is "no file system" here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from vmvault.domain.errors import FileReadFailed, InvalidInput
from vmvault.domain.files import FileEntry, Volume, normal

#: How long nbdfuse may take to serve its file.
ATTACH_TIMEOUT = 15.0
_LS = re.compile(r"/(\d+)/([0-7]+)/(\d+)/(\d+)/(.*)/(\d*)/")
_SPECIAL = ("char", "block", "fifo", "socket")
_DEVICES = ("char", "block")
SETID = stat.S_ISUID | stat.S_ISGID
log = logging.getLogger(__name__)


class DebugfsFileSystems:
    """``FileSystems`` (see the port) over nbdfuse and debugfs."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self._inodes: dict[str, int] = {}  # path -> inode of the last entries listed

    @contextlib.contextmanager
    def attach(self, socket: Path, export: str) -> Iterator[Path]:
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            mnt = Path(tempfile.mkdtemp(prefix="fuse-", dir=self.work_dir))
        except OSError as exc:
            raise FileReadFailed(path=export, point="(export)", why=str(exc)) from None
        pidfile = mnt.with_name(mnt.name + ".pid")
        uri = f"nbd+unix:///{export}?socket={socket}"
        # stderr to a file: a pipe nobody drains could fill and hang nbdfuse
        errors = tempfile.TemporaryFile(dir=self.work_dir)  # noqa: SIM115 (closed in finally)
        try:
            proc = subprocess.Popen(
                ["nbdfuse", "-r", "-P", str(pidfile), str(mnt), uri],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        except OSError as exc:
            errors.close()
            mnt.rmdir()
            raise FileReadFailed(path=export, point="(export)", why=f"nbdfuse: {exc}") from None
        try:
            deadline = time.monotonic() + ATTACH_TIMEOUT
            while not pidfile.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    _unmount(mnt, proc)  # ended before its stderr is read
                    errors.seek(0)
                    err = errors.read().decode(errors="replace").strip()
                    raise FileReadFailed(
                        path=export, point="(export)", why=f"nbdfuse: {err or 'timeout'}"
                    )
                time.sleep(0.01)
            yield mnt / "nbd"
        finally:
            _unmount(mnt, proc)
            errors.close()
            pidfile.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                mnt.rmdir()

    def volumes(self, image: Path, place: Volume) -> list[Volume]:
        out, _ = _debugfs(image, place, ["stats -h"], check=False)
        fields = dict(re.findall(r"^([A-Za-z ]+):[ \t]*(.*)$", out, re.M))
        if "Last mounted on" not in fields:
            return []
        where = fields["Last mounted on"].strip()
        features = fields.get("Filesystem features", "")
        kind = "ext4" if "extent" in features else "ext3" if "has_journal" in features else "ext2"
        name = fields.get("Filesystem volume name", "").strip()
        return [replace(place, mounted_on=None if where in ("", "<not available>") else where,
                        fs=kind, uuid=fields.get("Filesystem UUID", "").strip(),
                        fs_label="" if name == "<none>" else name)]  # fmt: skip

    def read(self, image: Path, volume: Volume, path: str, limit: int) -> bytes | None:
        entry = self.lookup(image, volume, path)
        if entry is None or entry.kind != "file":
            return None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.work_dir) as tmp:
            return self.extract(image, volume, entry, Path(tmp)).read_bytes()[:limit]

    def lookup(self, image: Path, volume: Volume, path: str) -> FileEntry | None:
        path = normal(path)
        if path == "/":
            found = [e for e in self._ls(image, volume, ["/"])["/"] if e.name == "."]
            return FileEntry("/", found[0].mode, found[0].uid, found[0].gid, 0) if found else None
        parent, name = path.rsplit("/", 1)
        for e in self._ls(image, volume, [parent or "/"])[parent or "/"]:
            if e.name == name:
                return e
        return None

    def listdir(self, image: Path, volume: Volume, path: str) -> list[FileEntry]:
        entries = self._ls(image, volume, [normal(path)])[normal(path)]
        return sorted((e for e in entries if e.name not in (".", "..")), key=lambda e: e.name)

    def walk(self, image: Path, volume: Volume, top: str) -> Iterator[FileEntry]:
        level = [normal(top)]
        seen: set[int] = set()  # directory inodes: a crafted cycle (a linked directory) ends
        while level:
            listed = self._ls(image, volume, level, seen)
            level = []
            for d in listed:
                for e in sorted(listed[d], key=lambda e: e.name):
                    if e.name in (".", ".."):
                        continue
                    yield e
                    if e.kind == "dir" and self._inodes.get(e.path) not in seen:
                        seen.add(self._inodes[e.path])
                        level.append(e.path)

    def extract(self, image: Path, volume: Volume, entry: FileEntry, to: Path) -> Path:
        target = to / entry.name
        if entry.kind in _DEVICES:  # a guest's node of the host's /dev/sda is not made
            raise InvalidInput(
                f"it is a {entry.kind} device: device nodes are not recreated",
                what=f"path {entry.path}",
            )
        if entry.kind in _SPECIAL:
            return self._mknod(image, volume, entry, target)
        _, err = _debugfs(image, volume, [f"rdump {_q(entry.path)} {_q(str(to))}"])
        failed = [line for line in err.splitlines() if line.startswith("rdump:")]
        if failed or not os.path.lexists(target):
            # rdump exits 0 with a short file on a read error: delete what it wrote
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target, ignore_errors=True)
            elif os.path.lexists(target):
                os.unlink(target)
            why = "; ".join(failed) or err.strip() or "rdump"
            raise FileReadFailed(path=entry.path, point="(export)", why=why)
        if entry.kind == "dir":  # what rdump skipped inside the tree
            top = normal(entry.path).rstrip("/")
            devices = []
            for e in self.walk(image, volume, entry.path):
                if e.kind in _DEVICES:
                    devices.append(e.path)
                elif e.kind in _SPECIAL:
                    self._mknod(image, volume, e, target / e.path[len(top) + 1 :])
            if devices:
                log.warning("device nodes not recreated: %s", ", ".join(devices))
        drop_setid(target)
        return target

    def _mknod(self, image: Path, volume: Volume, entry: FileEntry, target: Path) -> Path:
        return make_node(entry, target)

    def _ls(
        self, image: Path, volume: Volume, dirs: list[str], seen: set[int] | None = None
    ) -> dict[str, list[FileEntry]]:
        """``ls -p`` of each directory of ``dirs``, in one debugfs run (the inode of each
        entry in ``self._inodes``; a listed directory's own inode added to ``seen``)."""
        out, _ = _debugfs(image, volume, [f"ls -p {_q(d)}" for d in dirs])
        found: dict[str, list[FileEntry]] = {d: [] for d in dirs}
        current: str | None = dirs[0] if len(dirs) == 1 else None
        pending = iter(dirs)
        for line in out.splitlines():
            if line.startswith("debugfs: "):
                current = next(pending, None)
                continue
            m = _LS.fullmatch(line)
            if m is None or current is None:
                continue
            ino, mode, uid, gid, name, size = m.groups()
            if ino == "0":
                continue
            if name == "." and seen is not None:
                seen.add(int(ino))
            path = current.rstrip("/") + "/" + name if name not in (".", "..") else current
            entry = FileEntry(path, int(mode, 8), int(uid), int(gid), int(size or 0))
            if name in (".", ".."):
                found[current].append(_named(entry, name))
            else:
                found[current].append(entry)
                self._inodes[entry.path] = int(ino)
        return found


def _named(entry: FileEntry, name: str) -> FileEntry:
    """``.`` and ``..`` keep their names (``lookup("/")`` reads the root's mode from ``.``)."""
    return FileEntry(entry.path.rstrip("/") + "/" + name, entry.mode, entry.uid, entry.gid, 0)


def _debugfs(
    image: Path, volume: Volume, commands: list[str], *, check: bool = True
) -> tuple[str, str]:
    """Run ``commands`` in one read-only debugfs on ``volume`` of ``image``."""
    device = f"{image}?offset={volume.offset}" if volume.offset else str(image)
    with tempfile.NamedTemporaryFile("w", suffix=".cmd") as f:
        f.write("\n".join(commands) + "\n")
        f.flush()
        args = ["debugfs", "-f", f.name, device] if len(commands) > 1 else None
        args = args or ["debugfs", "-R", commands[0], device]
        try:
            res = subprocess.run(args, capture_output=True, text=True, errors="surrogateescape")
        except OSError as exc:
            raise FileReadFailed(path=volume.label, point="(export)", why=str(exc)) from None
    if check and ("Bad magic number" in res.stderr or "while trying to open" in res.stderr):
        raise FileReadFailed(path=volume.label, point="(export)", why=res.stderr.strip())
    return res.stdout, res.stderr


def drop_setid(top: Path) -> None:
    """Clear setuid/setgid bits of ``top`` and everything under it (symlinks untouched)."""
    found = [top]
    if top.is_dir() and not top.is_symlink():
        found += [Path(d) / n for d, dirs, files in os.walk(top) for n in dirs + files]
    for p in found:
        st = p.lstat()
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & SETID:
            os.chmod(p, stat.S_IMODE(st.st_mode) & ~SETID)


def _q(path: str) -> str:
    """``path`` as one debugfs (libss) argument: ``""`` is a literal quote, a backslash is
    literal; a line break is refused (the command file is one command a line, and a line
    starting with ``!`` would run a shell)."""
    if "\n" in path or "\r" in path:
        raise FileReadFailed(path=repr(path), point="(export)", why="a line break in the name")
    return '"' + path.replace('"', '""') + '"'


def _unmount(mnt: Path, proc: subprocess.Popen[bytes]) -> None:
    tool = ["fusermount3", "-u"] if shutil.which("fusermount3") else ["umount"]
    subprocess.run([*tool, str(mnt)], capture_output=True)
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_node(entry: FileEntry, target: Path) -> Path:
    """A FIFO or a socket ``entry`` made at ``target`` (device nodes are never made)."""
    try:
        os.mknod(target, entry.mode)
        os.chown(target, entry.uid, entry.gid, follow_symlinks=False)
        os.chmod(target, stat.S_IMODE(entry.mode) & ~SETID)
    except OSError as exc:
        raise FileReadFailed(path=entry.path, point="(export)", why=str(exc)) from None
    return target
