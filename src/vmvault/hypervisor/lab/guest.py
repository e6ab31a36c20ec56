"""The lab's guest image: a Debian cloud kernel and a busybox + qemu-ga initramfs.

Every lab VM boots the same two files by direct kernel boot (no bootloader, no root disk):

* ``vmlinuz`` from Debian's ``linux-image-*-cloud-amd64`` (fetched, never installed);
* ``initrd.img``, a gzip'd newc cpio holding busybox (``busybox-static``) as init and shell,
  the host's ``/usr/sbin/qemu-ga`` with the shared libraries ``ldd`` lists, the few kernel
  modules the cloud kernel does not build in (virtio, and SCSI for the pass-through variant),
  and the scripts in ``hypervisor/lab/guest/`` (see :data:`GUEST_FILES`).

The image is cached under ``CACHE/images/<key>/`` where the key hashes every input: the
kernel package version, the busybox, qemu-ga and library binaries, our guest files, the
module lists and :data:`BUILDER_VERSION`. A change to any of them makes a new key and so a
rebuild; otherwise :func:`build_guest` returns in well under a second. A build is made in a
``.tmp-*`` directory and renamed into place, and builds are serialized by a lock file.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from vmvault.domain.errors import LabFailed
from vmvault.hypervisor.lab import debs
from vmvault.hypervisor.lab.fsutil import locked, make_dirs, publish_dir

#: Bump when the image layout below changes in a way the hashed inputs do not show.
BUILDER_VERSION = "3"

GUEST_FILES_DIR = Path(__file__).with_name("guest")

#: Our guest files: file in ``GUEST_FILES_DIR`` -> (path inside the initramfs, mode).
GUEST_FILES: dict[str, tuple[str, int]] = {
    "inittab": ("etc/inittab", 0o644),
    "rc.sh": ("etc/init.d/rcS", 0o755),
    "rcK": ("etc/init.d/rcK", 0o755),
    "shutdown": ("sbin/shutdown", 0o755),
    "lab-qga": ("sbin/lab-qga", 0o755),
    "writer": ("usr/lib/lab/writer", 0o755),
    "app": ("usr/lib/lab/app", 0o755),
    "fsfreeze-hook": ("etc/qemu/fsfreeze-hook", 0o755),
    "app-hook": ("usr/lib/lab/app-hook", 0o755),
    "test-hook": ("usr/lib/lab/test-hook", 0o755),
}

#: Modules insmod'ed at every boot (their dependencies first); ext4, crc32c and devtmpfs are
#: built into the cloud kernel.
BOOT_MODULES = ("virtio_pci", "virtio_blk", "virtio_console", "virtio_rng")
#: Modules loaded only by the pass-through variant (a virtio-scsi controller with a LUN).
SCSI_MODULES = ("virtio_scsi", "sd_mod")

BUSYBOX = Path("/bin/busybox")
QEMU_GA = Path("/usr/sbin/qemu-ga")


@dataclass(frozen=True)
class GuestImage:
    """A built guest: the kernel and initramfs to boot, and the key of their inputs."""

    kernel: Path
    initrd: Path
    key: str


def shared_libs(binary: Path) -> list[Path]:
    """The shared libraries (and the ELF interpreter) ``ldd`` lists for ``binary``."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    if not libs:
        raise LabFailed(f"ldd found no libraries for {binary}: {out.strip()}")
    return libs


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def image_key(kernel: str, binaries: Iterable[Path], guest_dir: Path = GUEST_FILES_DIR) -> str:
    """Hash of everything a guest image is made from (see the module docstring)."""
    h = hashlib.sha256()
    h.update(f"builder={BUILDER_VERSION}\nkernel={kernel}\n".encode())
    h.update(f"modules={','.join(BOOT_MODULES)};{','.join(SCSI_MODULES)}\n".encode())
    for b in binaries:
        h.update(f"bin {b} {_sha256(b)}\n".encode())
    for name in sorted(GUEST_FILES):
        dest, mode = GUEST_FILES[name]
        h.update(f"file {name} {dest} {mode:o} {_sha256(guest_dir / name)}\n".encode())
    return h.hexdigest()[:16]


def build_guest(
    cache_dir: Path, *, force: bool = False, log: Callable[[str], None] = lambda s: None
) -> GuestImage:
    """Return the cached guest image, building it first if its inputs changed (or ``force``)."""
    cache_dir = Path(cache_dir)
    images = cache_dir / "images"
    make_dirs(images)
    kernel_pkg = debs.resolve_kernel(memo=cache_dir / "kernel-package.json")
    binaries = [BUSYBOX, QEMU_GA, *shared_libs(QEMU_GA)]
    for b in binaries:
        if not b.is_file():
            raise LabFailed(f"{b} is missing (packages busybox-static and qemu-guest-agent)")
    key = image_key(f"{kernel_pkg.name} {kernel_pkg.version}", binaries)
    final = images / key
    image = GuestImage(final / "vmlinuz", final / "initrd.img", key)
    if not force and image.kernel.is_file() and image.initrd.is_file():
        return image
    with locked(cache_dir / ".build.lock"):
        if not force and image.kernel.is_file() and image.initrd.is_file():
            return image  # another process built it while we waited
        started = time.monotonic()
        log(f"building guest image {key} ({kernel_pkg.name} {kernel_pkg.version})")
        tmp = Path(tempfile.mkdtemp(dir=images, prefix=f".tmp-{key}-"))
        try:
            deb = debs.download(kernel_pkg, cache_dir / "debs")
            debs.extract(deb, tmp / "pkg")
            vmlinuz = sorted((tmp / "pkg" / "boot").glob("vmlinuz-*"))
            if len(vmlinuz) != 1:
                raise LabFailed(f"{deb.name} holds {len(vmlinuz)} vmlinuz files, expected 1")
            shutil.copyfile(vmlinuz[0], tmp / "vmlinuz")
            root = tmp / "root"
            _populate(root, tmp / "pkg", binaries)
            _write_initramfs(root, tmp / "initrd.img")
            shutil.rmtree(tmp / "pkg")
            shutil.rmtree(root)
            for f in ("vmlinuz", "initrd.img"):
                (tmp / f).chmod(0o644)
            (tmp / "key").write_text(f"{key}\n{kernel_pkg.name} {kernel_pkg.version}\n")
            publish_dir(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _prune(cache_dir, keep_image=key, keep_deb=kernel_pkg.deb_name)
        log(f"built guest image {key} in {time.monotonic() - started:.1f}s")
    return image


def _prune(cache_dir: Path, keep_image: str, keep_deb: str) -> None:
    """Remove older images, killed builds' leftovers and older kernel .debs (under the lock).

    Lab VMs hard-link the kernel and initrd into their own directories, so removing an old
    image never breaks a VM that still boots it.
    """
    for p in (cache_dir / "images").iterdir():
        if p.name != keep_image:
            shutil.rmtree(p, ignore_errors=True)
    for p in (cache_dir / "debs").glob("linux-image-*.deb"):
        if p.name != keep_deb:
            p.unlink(missing_ok=True)


def _populate(root: Path, kernel_tree: Path, binaries: list[Path]) -> None:
    """Lay out the initramfs tree under ``root``."""
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "var").mkdir()
    (root / "var" / "run").symlink_to("../run")
    (root / "var" / "log").mkdir()
    # busybox and its applets; /init is busybox too, so the kernel starts busybox init.
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = root / applet
        if not link.exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
    (root / "init").symlink_to("/bin/busybox")
    # qemu-ga and its libraries at their host paths (the ELF interpreter path is absolute).
    for b in binaries[1:]:
        dest = root / str(b).lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(b.resolve(), dest)
        dest.chmod(0o755)
    console = root / "dev" / "console"
    with contextlib.suppress(OSError):  # the kernel's built-in initramfs has one anyway
        os.mknod(console, 0o600 | stat.S_IFCHR, os.makedev(5, 1))
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "root").mkdir(mode=0o700)
    for name, (inside, mode) in GUEST_FILES.items():
        target = root / inside
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(GUEST_FILES_DIR / name, target)
        target.chmod(mode)
    _install_modules(root / "lib" / "modules", kernel_tree)


def _modinfo(ko: bytes) -> list[str]:
    m = re.search(rb"\x00depends=([^\x00]*)\x00", ko)
    return [d for d in m.group(1).decode().split(",") if d] if m else []


def _install_modules(dest: Path, kernel_tree: Path) -> None:
    """Copy the wanted modules and their dependencies; write the insmod order files."""
    index = {
        p.name.removesuffix(".ko").replace("-", "_"): p
        for p in kernel_tree.glob("lib/modules/*/kernel/**/*.ko")
    }
    dest.mkdir(parents=True, exist_ok=True)
    loaded: list[str] = []

    def order(names: Iterable[str]) -> list[str]:
        out: list[str] = []

        def visit(name: str) -> None:
            if name in loaded or name in out:
                return
            if name not in index:
                raise LabFailed(f"kernel module {name} not found in the kernel package")
            data = index[name].read_bytes()
            for dep in _modinfo(data):
                visit(dep)
            (dest / f"{name}.ko").write_bytes(data)
            out.append(name)

        for n in names:
            visit(n)
        loaded.extend(out)
        return out

    (dest / "boot.order").write_text("".join(f"{n}\n" for n in order(BOOT_MODULES)))
    (dest / "scsi.order").write_text("".join(f"{n}\n" for n in order(SCSI_MODULES)))


def _write_initramfs(root: Path, out: Path) -> None:
    """``busybox cpio -o -H newc`` of ``root`` (parents before children), gzip'd."""
    names = ["."]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for n in sorted(dirnames) + sorted(filenames):
            names.append(n if rel == "." else f"{rel}/{n}")
    proc = subprocess.run(
        [str(BUSYBOX), "cpio", "-o", "-H", "newc"],
        cwd=root,
        input="\n".join(names).encode() + b"\n",
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise LabFailed(f"busybox cpio failed: {proc.stderr.decode(errors='replace')}")
    with (
        open(out, "wb") as fh,
        gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=6, mtime=0) as gz,
    ):
        gz.write(proc.stdout)
