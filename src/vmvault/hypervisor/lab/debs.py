"""Fetching Debian packages for the lab without installing them.

The lab takes two things from Debian's archive that the host must not have installed: the
cloud kernel the guests boot, and ``tgt`` (a user-space iSCSI target) for the pass-through
variant. Both are fetched with ``apt-get download`` into the lab cache and unpacked with
``dpkg -x``, so the host's ``/boot``, its services and its package state stay untouched.

A fresh machine's package lists may be empty; then ``apt-get update`` is run once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vmvault.domain.errors import LabFailed

_APT_ENV = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}


@dataclass(frozen=True)
class Package:
    """A concrete Debian package version, e.g. ``linux-image-6.1.0-56-cloud-amd64 6.1.192-2``."""

    name: str
    version: str

    @property
    def deb_name(self) -> str:
        # apt-get download names files NAME_VERSION_ARCH.deb with ':' escaped as %3a.
        return f"{self.name}_{self.version.replace(':', '%3a')}_amd64.deb"


def _run(argv: list[str], *, cwd: Path | None = None, timeout: float = 300) -> str:
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=_APT_ENV,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabFailed(f"could not run {' '.join(argv)}: {exc}") from None
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise LabFailed(f"{' '.join(argv)} failed ({proc.returncode}): {err[-2000:]}")
    return proc.stdout.decode(errors="replace")


def _candidate(name: str) -> str | None:
    out = _run(["apt-cache", "policy", name])
    m = re.search(r"^\s*Candidate:\s*(\S+)", out, re.MULTILINE)
    if not m or m.group(1) == "(none)":
        return None
    return m.group(1)


_updated = False


def _candidate_or_update(name: str) -> str:
    """The candidate version of ``name``; runs ``apt-get update`` once if apt knows nothing."""
    global _updated
    version = _candidate(name)
    if version is None and not _updated:
        _run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"], timeout=600)
        _updated = True
        version = _candidate(name)
    if version is None:
        raise LabFailed(f"apt has no package {name} (even after apt-get update)")
    return version


def resolve(name: str) -> Package:
    """The candidate version of package ``name``."""
    return Package(name, _candidate_or_update(name))


def _lists_state() -> str:
    """A fingerprint of apt's package lists and preferences (changes when apt-get update does)."""
    h = hashlib.sha256()
    for d in (Path("/var/lib/apt/lists"), Path("/etc/apt/preferences.d"), Path("/etc/apt")):
        with contextlib.suppress(OSError):
            for p in sorted(d.iterdir()):
                st = p.stat()
                h.update(f"{p} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def resolve_kernel(
    metapackage: str = "linux-image-cloud-amd64", memo: Path | None = None
) -> Package:
    """The real kernel package (name and version) that ``metapackage``'s candidate depends on.

    apt-cache takes about 0.6 s a call here (the host keeps no pkgcache.bin), so the answer is
    remembered in ``memo`` for as long as apt's lists do not change.
    """
    state = _lists_state()
    if memo is not None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            saved = json.loads(memo.read_text())
            if saved["meta"] == metapackage and saved["lists"] == state:
                return Package(saved["name"], saved["version"])
    _candidate_or_update(metapackage)
    out = _run(["apt-cache", "show", "--no-all-versions", metapackage])
    m = re.search(r"^Depends:.*?(linux-image-[^\s,]+) \(= ([^)\s]+)\)", out, re.MULTILINE)
    if not m:
        raise LabFailed(f"cannot tell which kernel {metapackage} depends on:\n{out.strip()}")
    pkg = Package(m.group(1), m.group(2))
    if memo is not None:
        tmp = memo.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "meta": metapackage,
                    "lists": _lists_state(),
                    "name": pkg.name,
                    "version": pkg.version,
                }
            )
        )
        tmp.rename(memo)
    return pkg


def download(pkg: Package, debs_dir: Path) -> Path:
    """The .deb of ``pkg`` in ``debs_dir``: taken from apt's archive cache or downloaded."""
    debs_dir.mkdir(parents=True, exist_ok=True)
    target = debs_dir / pkg.deb_name
    if target.is_file():
        return target
    cached = Path("/var/cache/apt/archives") / pkg.deb_name
    if cached.is_file():
        shutil.copyfile(cached, target)
        return target
    with tempfile.TemporaryDirectory(dir=debs_dir, prefix=".dl-") as tmp:
        _run(["apt-get", "download", f"{pkg.name}={pkg.version}"], cwd=Path(tmp), timeout=600)
        got = list(Path(tmp).glob("*.deb"))
        if len(got) != 1:
            raise LabFailed(f"apt-get download {pkg.name} produced {len(got)} files")
        got[0].rename(target)
    return target


def extract(deb: Path, dest: Path) -> None:
    """Unpack ``deb``'s files (not its scripts) under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(dest)])
