"""Paths a user gives (``vault create --path`` and ``--key-file``, ``restore --dir``): made
absolute, checked against the rule of :func:`vmvault.domain.inputs.forbidden_area` (with
symlinks resolved) and for writability, before anything is written (docs/input.md).

A relative path is taken relative to the working directory of the process that received it;
every message about it says so (``--dir 'imgs' (relative to /root: /root/imgs)``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vmvault.domain.errors import InvalidInput, PathNotAllowed
from vmvault.domain.inputs import MAX_PATH, check_printable, forbidden_area, quoted


@dataclass(frozen=True)
class UserPath:
    path: Path  # absolute and normalised: what vmvault uses and stores
    said: str  # the option, what was given and how it was resolved: for messages

    def __str__(self) -> str:
        return self.said


def user_path(given: str, what: str) -> UserPath:
    """Resolve ``given`` (the value of option ``what``) or refuse it with nothing changed."""
    check_printable(given, what, max_length=MAX_PATH)
    said = f"{what} {quoted(given)}"
    if os.path.isabs(given):
        path = Path(os.path.normpath(given))
    else:
        try:
            cwd = Path.cwd()
        except OSError as exc:
            raise InvalidInput(f"it is relative and the working directory is gone ({exc})",
                               what=said) from None  # fmt: skip
        path = Path(os.path.normpath(cwd / given))
        said += f" (relative to {quoted(cwd)}: {quoted(path)})"
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise InvalidInput(f"it cannot be resolved ({exc})", what=said) from None
    if real != path:
        said += f" (a link to {quoted(real)})"
    why = forbidden_area(PurePosixPath(real)) or forbidden_area(PurePosixPath(path))
    if why:
        raise PathNotAllowed(what=said, why=why)
    return UserPath(path, said)


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def first_missing(path: Path) -> Path | None:
    """The outermost ancestor of ``path`` (or ``path`` itself) that does not exist yet: what
    creating ``path`` with its parents would make, and undoing it would remove."""
    missing = None
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


def check_writable(path: Path, said: str) -> None:
    """Refuse ``path`` (a directory to create or fill) when its nearest existing ancestor is
    not a directory this process may write into."""
    probe = nearest_existing(path)
    if not probe.is_dir():
        raise InvalidInput(f"{quoted(probe)} is not a directory", what=said)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InvalidInput(f"{quoted(probe)} is not writable", what=said)
