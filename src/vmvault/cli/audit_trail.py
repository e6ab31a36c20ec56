"""Which ``vmvault`` commands go into the audit log, and what of them (domain/audit.py).

:func:`record` is called once, by :func:`vmvault.cli.main.main`, after every command with
its exit code. It records a command when

* it is not one that only reads (:data:`READS`: ``list``, ``show``, ``status``, ``wait``,
  ``dashboard``, ``errors``; and ``serve``, whose changes are its API requests and jobs), and
* it opened the catalog: a command refused before that (bad option, bad setting) changed
  nothing and leaves no catalog behind either.

The entry's action is ``vmvault`` and the command's words (``vmvault token create``), its
target the command's arguments (``ci-backups``); option values are never recorded, since that
is where a secret would be (there is none today: passphrases and keys come from the
environment or a file). Its status is the exit code, its remote ``cli``, its actor
``local:<unix user>``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

#: Leaf command names and whole commands that only read.
READ_LEAVES = frozenset({"list", "show", "status", "wait"})
READS = frozenset({"dashboard", "errors", "serve"})


def describe(root: Any, args: Sequence[str]) -> tuple[str, list[str]] | None:
    """The command's words and its arguments (option values left out), from the click
    command tree ``root``; None when ``args`` name no command or ask for help."""
    if "--help" in args:
        return None
    command, words, rest = root, [], list(args)
    while hasattr(command, "commands"):
        names = [a for a in rest if not a.startswith("-")]
        if not names or names[0] not in command.commands:
            return None
        rest = rest[rest.index(names[0]) + 1 :]
        words.append(names[0])
        command = command.commands[names[0]]
    takes_value = {
        opt: not (p.is_flag or getattr(p, "count", False))
        for p in command.params
        if p.param_type_name == "option"
        for opt in (*p.opts, *p.secondary_opts)
    }
    arguments: list[str] = []
    skip = False
    for arg in rest:
        if skip:
            skip = False
        elif arg == "--":
            continue
        elif arg.startswith("-") and len(arg) > 1:
            skip = "=" not in arg and takes_value.get(arg, False)
        else:
            arguments.append(arg)
    return " ".join(words), arguments


def changes(command: str) -> bool:
    """Whether ``command`` (its words) may change something (:data:`READS`)."""
    return command not in READS and command.split(" ")[-1] not in READ_LEAVES


def record(tree: Callable[[], Any], args: Sequence[str], code: int | str | None) -> None:
    """Write the audit entry of the command line ``args`` that ended with ``code``, when it
    is one that is recorded (the module doc); ``tree`` gives the click command tree."""
    from vmvault.cli.context import services

    if not services.cache_info().currsize or "_engine" not in services().__dict__:
        return  # the catalog was never opened: nothing was changed
    from vmvault.cli import render
    from vmvault.domain.audit import CLI_REMOTE, local_actor
    from vmvault.local_user import unix_user

    described = describe(tree(), args)
    if described is None or not changes(described[0]):
        return
    command, arguments = described
    status = code if isinstance(code, int) else (0 if code is None else 1)
    try:
        services().audit.record(
            local_actor(unix_user()),
            None,
            f"vmvault {command}",
            " ".join(arguments) or None,
            status,
            CLI_REMOTE,
        )
    except Exception as exc:
        render.err.print(f"warning: audit entry not written: {exc}", markup=False)
