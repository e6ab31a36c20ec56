"""Which CLI commands the audit log records, and what of their command line
(cli/audit_trail.py), on the real command tree."""

from __future__ import annotations

import pytest
import typer.main

from vmvault.cli import audit_trail
from vmvault.cli.main import app

TREE = typer.main.get_command(app)


def _commands(command: object, words: list[str]) -> list[str]:
    subs = getattr(command, "commands", None)
    if subs is None:
        return [" ".join(words)]
    return [c for name, sub in subs.items() for c in _commands(sub, [*words, name])]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["token", "create", "ci", "--role", "admin"], ("token create", ["ci"])),
        (["token", "create", "--role=admin", "ci"], ("token create", ["ci"])),
        (["backup", "web", "db", "--no-wait", "--keep-until", "2030-01-01"], ("backup", ["web", "db"])),
        (["vault", "create", "v", "--key-file", "/secret/key", "--encrypt"], ("vault create", ["v"])),
        (["host", "add", "qemu+ssh://h/system", "--location", "dc1"], ("host add", ["qemu+ssh://h/system"])),
        (["token", "create", "--help"], None),
        (["nope"], None),
        ([], None),
    ],
)  # fmt: skip
def test_describe_keeps_the_words_and_arguments_never_option_values(
    args: list[str], expected: tuple[str, list[str]] | None
) -> None:
    assert audit_trail.describe(TREE, args) == expected


def test_reading_commands_are_not_recorded_and_every_other_is() -> None:
    commands = _commands(TREE, [])
    reads = sorted(c for c in commands if not audit_trail.changes(c))
    assert reads == sorted(
        [c for c in commands if c.split(" ")[-1] in {"list", "show", "status", "wait"}]
        + ["dashboard", "errors", "serve"]
    )
    for c in ("token create", "token revoke", "backup", "restore", "points delete", "gc"):
        assert c in commands and audit_trail.changes(c)
