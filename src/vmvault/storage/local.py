"""The local-directory backend.

Every file is written ``tmp + fsync + rename`` followed by an fsync of the directory, so a
reader (or a crash) sees either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: Written at the root of every vault directory; the data-path format builds on it.
VAULT_MARKER = "vmvault-vault.json"
VAULT_FORMAT = 1


class VaultDirectoryInUse(Exception):
    """The directory exists and holds something."""


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def is_unusable(path: Path) -> bool:
    """True when ``path`` exists and is not an empty directory."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def initialise(path: Path, meta: dict[str, Any]) -> None:
    """Create the vault directory with its marker file (format version + identity)."""
    if is_unusable(path):
        raise VaultDirectoryInUse(str(path))
    path.mkdir(parents=True, exist_ok=True)
    doc = {"format": VAULT_FORMAT, **meta}
    write_atomic(path / VAULT_MARKER, (json.dumps(doc, indent=2) + "\n").encode())
