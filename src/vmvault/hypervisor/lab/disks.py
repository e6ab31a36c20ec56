"""Data-disk templates for lab VMs, built once into the cache and copied per VM.

Each lab VM gets its own copy of:

* ``data.qcow2`` (vda, 1 GiB, mounted at /data) seeded with :data:`SEED_RANDOM_MIB` MiB of
  random data and :data:`SEED_TEXT_MIB` MiB of repetitive text, so backups move real,
  partly compressible content and identical chunks dedupe across VMs;
* ``data2.qcow2`` or, for the raw-disk variant, ``data2.raw`` (vdb, 256 MiB, /data2) with a
  1 MiB random file.

The ``files`` variant's vdc is ``files-a.raw`` (later swapped for ``files-b.raw``, the same
disk after a change): a GPT disk made with libguestfs, built once under
``CACHE/templates-files/<key>/`` (:mod:`vmvault.hypervisor.lab.files_disk`).

The file systems are made with ``-E lazy_itable_init=0,lazy_journal_init=0`` so the guest
kernel has no lazy initialisation to do after mount (that writing would show up as noise in
the dirty bitmaps of incremental backups). Making them costs ~1 s; copying a template with
``cp --sparse=always`` costs a few milliseconds, which keeps ``lab up`` fast.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vmvault.domain.errors import LabFailed
from vmvault.hypervisor.lab import files_disk
from vmvault.hypervisor.lab.fsutil import locked, make_dirs, publish_dir

TEMPLATE_VERSION = "1"
DATA_SIZE = 1 << 30
DATA2_SIZE = 256 << 20
SEED_RANDOM_MIB = 24
SEED_TEXT_MIB = 8
MKFS_OPTS = ["-F", "-q", "-t", "ext4", "-E", "lazy_itable_init=0,lazy_journal_init=0"]


@dataclass(frozen=True)
class Templates:
    """The cached disk templates (never attached to a VM themselves)."""

    data_qcow2: Path
    data2_qcow2: Path
    data2_raw: Path


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise LabFailed(f"{' '.join(argv)} failed ({proc.returncode}): {err}")


def _template_key() -> str:
    mkfs = subprocess.run(["mkfs.ext4", "-V"], capture_output=True, text=True, check=False)
    text = (
        f"{TEMPLATE_VERSION} {DATA_SIZE} {DATA2_SIZE} {SEED_RANDOM_MIB} {SEED_TEXT_MIB} "
        f"{MKFS_OPTS} {mkfs.stderr.splitlines()[:1]}"
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _make_fs(image: Path, size: int, label: str, seed: Path) -> None:
    with open(image, "wb") as fh:
        fh.truncate(size)
    _run(["mkfs.ext4", *MKFS_OPTS, "-L", label, "-d", str(seed), str(image)])


def _seed_data(seed: Path) -> None:
    (seed / "seed").mkdir(parents=True)
    with open(seed / "seed" / "random.bin", "wb") as fh:
        for _ in range(SEED_RANDOM_MIB):
            fh.write(os.urandom(1 << 20))
    line = b"vmvault lab seed text: the quick brown fox jumps over the lazy dog 0123456789\n"
    with open(seed / "seed" / "text.txt", "wb") as fh:
        block = line * ((1 << 20) // len(line) + 1)
        for _ in range(SEED_TEXT_MIB):
            fh.write(block[: 1 << 20])


def build_templates(cache_dir: Path, log: Callable[[str], None] = lambda s: None) -> Templates:
    """The disk templates under ``CACHE/templates/<key>/``, made first if missing."""
    root = Path(cache_dir) / "templates"
    make_dirs(root)
    key = _template_key()
    final = root / key
    tpl = Templates(final / "data.qcow2", final / "data2.qcow2", final / "data2.raw")
    if all(p.is_file() for p in (tpl.data_qcow2, tpl.data2_qcow2, tpl.data2_raw)):
        return tpl
    with locked(Path(cache_dir) / ".templates.lock"):
        if all(p.is_file() for p in (tpl.data_qcow2, tpl.data2_qcow2, tpl.data2_raw)):
            return tpl
        log(f"building disk templates {key}")
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{key}-"))
        try:
            (tmp / "seed-data").mkdir()
            _seed_data(tmp / "seed-data")
            (tmp / "seed-data2" / "seed").mkdir(parents=True)
            (tmp / "seed-data2" / "seed" / "random.bin").write_bytes(os.urandom(1 << 20))
            _make_fs(tmp / "data.raw", DATA_SIZE, "data", tmp / "seed-data")
            _make_fs(tmp / "data2.raw", DATA2_SIZE, "data2", tmp / "seed-data2")
            for name in ("data", "data2"):
                _run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2",
                      str(tmp / f"{name}.raw"), str(tmp / f"{name}.qcow2")])  # fmt: skip
            (tmp / "data.raw").unlink()
            shutil.rmtree(tmp / "seed-data")
            shutil.rmtree(tmp / "seed-data2")
            _publish(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return tpl


def _publish(tmp: Path, final: Path) -> None:
    """``tmp``'s files made world-readable and published as ``final``; the other builds
    beside it (older keys, killed builds' leftovers) removed."""
    for p in tmp.iterdir():
        p.chmod(0o644)
    publish_dir(tmp, final)
    for p in final.parent.iterdir():
        if p.name != final.name:
            shutil.rmtree(p, ignore_errors=True)


def files_templates(
    cache_dir: Path, log: Callable[[str], None] = lambda s: None
) -> tuple[Path, Path]:
    """The ``files`` variant's two vdc templates (before, after), made first if missing (a
    libguestfs appliance under TCG: a minute or two, once)."""
    root = Path(cache_dir) / "templates-files"
    make_dirs(root)
    final = root / files_disk.VERSION
    a, b = final / "files-a.raw", final / "files-b.raw"
    if a.is_file() and b.is_file():
        return a, b
    with locked(Path(cache_dir) / ".templates-files.lock"):
        if a.is_file() and b.is_file():
            return a, b
        log(f"building the files disk templates {files_disk.VERSION}")
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{files_disk.VERSION}-"))
        try:
            files_disk.build(tmp / a.name, tmp / b.name, Path(cache_dir))
            _publish(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return a, b


def copy_disk(template: Path, dest: Path) -> None:
    """A sparse private copy of ``template`` at ``dest`` (mode 0644)."""
    _run(["cp", "--sparse=always", "--reflink=auto", str(template), str(dest)])
    dest.chmod(0o644)
