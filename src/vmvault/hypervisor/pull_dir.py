"""The client PKI directory of a pulled host, as this node sees it (domain/pull.py).

:func:`pull_dir_problems_here` reads what :func:`~vmvault.domain.pull.pull_dir_problems`
judges — the directory's and each file's ``os.stat`` (never the files' contents: no key is
read) and whether this process can read them — for both places that check it: ``host add
--pull-tls`` / ``host update --pull-tls`` (``INVALID_INPUT``, through the ``Hypervisor`` port:
services/host_pull.py) and a pull's backup job before the guest is touched (:func:`~vmvault.hypervisor.nbd.check_client_files`,
``PULL_TLS_FAILED``).
"""

from __future__ import annotations

import os
from pathlib import Path

from vmvault.domain.pull import PULL_FILES, pull_dir_problems


def pull_dir_problems_here(directory: str) -> list[str]:
    """What makes ``directory`` unusable as this node's NBD client PKI directory (empty:
    usable)."""
    try:
        dir_mode: int | None = os.stat(directory).st_mode
    except OSError:
        dir_mode = None
    found: dict[str, tuple[int, bool] | None] = {}
    for name in PULL_FILES:
        path = Path(directory) / name
        try:
            found[name] = (os.stat(path).st_mode, os.access(path, os.R_OK))
        except OSError:
            found[name] = None
    return pull_dir_problems(directory, found, dir_mode)


__all__ = ["pull_dir_problems_here"]
