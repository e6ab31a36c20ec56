"""The CLI's str/int/bool parameters are converted without pydantic (vmvault.cli.coercion):
the same values as typer's own conversion, typer's own errors for what is not plain, and
pydantic never imported by a command that has only such parameters."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from enum import Enum
from typing import Annotated

import typer
from typer.testing import CliRunner

from vmvault.cli import coercion

coercion.install()


class Color(Enum):
    red = "red"
    blue = "blue"


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def run(
        names: Annotated[list[str], typer.Argument()],
        count: Annotated[int, typer.Option()] = 1,
        maybe: Annotated[int | None, typer.Option()] = None,
        label: Annotated[str | None, typer.Option()] = None,
        tags: Annotated[list[str] | None, typer.Option("--tag")] = None,
        flag: Annotated[bool, typer.Option("--flag")] = False,
        color: Annotated[Color, typer.Option()] = Color.red,
        ranged: Annotated[int, typer.Option(min=1, max=5)] = 3,
    ) -> None:
        print(repr((names, count, maybe, label, tags, flag, color, ranged)))

    @app.command()
    def other() -> None:  # two commands: "run" is a subcommand
        pass

    return app


def test_plain_values_are_converted_as_typer_would() -> None:
    result = CliRunner().invoke(
        _app(),
        [
            *["run", "a", "b", "--count", "-12", "--maybe", "7", "--label", "x y"],
            *["--tag", "t1", "--tag", "t2", "--flag", "--color", "blue", "--ranged", "5"],
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == repr(
        (["a", "b"], -12, 7, "x y", ["t1", "t2"], True, Color.blue, 5)
    )


def test_defaults_pass_through() -> None:
    result = CliRunner().invoke(_app(), ["run", "a"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == repr((["a"], 1, None, None, None, False, Color.red, 3))


def test_what_is_not_plain_gets_typers_own_error() -> None:
    bad_int = CliRunner().invoke(_app(), ["run", "a", "--count", "1.5"])
    assert bad_int.exit_code == 2
    assert "valid integer" in bad_int.output
    out_of_range = CliRunner().invoke(_app(), ["run", "a", "--ranged", "9"])
    assert out_of_range.exit_code == 2
    bad_choice = CliRunner().invoke(_app(), ["run", "a", "--color", "green"])
    assert bad_choice.exit_code == 2


def test_a_plain_command_does_not_import_pydantic() -> None:
    code = textwrap.dedent(
        """
        import sys
        from typing import Annotated
        import typer
        from typer.testing import CliRunner
        from vmvault.cli import coercion
        coercion.install()
        app = typer.Typer()
        @app.command()
        def run(vm: str, vault: Annotated[str | None, typer.Option()] = None,
                n: int = 2, json_: Annotated[bool, typer.Option("--json")] = False) -> None:
            print(vm, vault, n, json_)
        result = CliRunner().invoke(app, ["web1", "--vault", "s3", "--n", "3", "--json"])
        print(result.output.strip(), "pydantic" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "web1 s3 3 True False"


def test_install_is_idempotent() -> None:
    from typer import _coercion

    first = _coercion.build_runtime_param
    coercion.install()
    assert _coercion.build_runtime_param is first


def test_an_enum_option_not_given_does_not_import_pydantic() -> None:
    """Typer's own adapter (an enum's choice) is built for the first value that reaches it: an
    option left out is None and never does; given, it converts as typer does."""
    code = textwrap.dedent(
        """
        import sys
        from enum import Enum
        from typing import Annotated
        import typer
        from typer.testing import CliRunner
        from vmvault.cli import coercion
        coercion.install()
        class State(Enum):
            on = "on"
            off = "off"
        app = typer.Typer()
        @app.command()
        def run(vm: str, state: Annotated[State | None, typer.Option()] = None) -> None:
            print(vm, state)
        result = CliRunner().invoke(app, ["web1"])
        print(result.output.strip(), "pydantic" in sys.modules)
        result = CliRunner().invoke(app, ["web1", "--state", "off"])
        print(result.output.strip(), "pydantic" in sys.modules)
        result = CliRunner().invoke(app, ["web1", "--state", "dim"])
        print(result.exit_code)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split("\n")[:3] == ["web1 None False", "web1 State.off True", "2"]
