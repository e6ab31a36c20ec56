"""The CLI's conventions on commands that need no guest: exit codes, error lines, --json,
bad input refused without changing anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import CliRunner, catalog_imports


def test_vault_create_list_show(cli: CliRunner, tmp_path: Path) -> None:
    r = cli("vault", "create", "main", "--location", "local", "--json")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["name"] == "main" and doc["location"] == "local"
    assert (Path(doc["path"]) / "vmvault-vault.json").is_file()
    listed = cli("vault", "list", "--json").json()
    assert [v["name"] for v in listed] == ["main"]
    shown = cli("vault", "show", "main", "--json").json()
    assert [h["uri"] for h in shown["hosts"]] == ["qemu:///system"]  # the default host
    assert cli("host", "list", "--json").json()[0]["location"] == "local"


def test_errors_are_one_line_with_code_and_remedy(cli: CliRunner) -> None:
    cli("vault", "create", "main", "--location", "local")
    r = cli("vault", "create", "main", "--location", "local")
    assert r.code == 2
    assert r.stderr.startswith("error VAULT_EXISTS: ")
    assert "remedy: " in r.stderr and "Traceback" not in r.stderr
    r = cli("vault", "create", "bad name", "--location", "local")
    assert r.code == 2 and "error INVALID_INPUT" in r.stderr
    r = cli("vault", "show", "nope")
    assert r.code == 2 and "error VAULT_NOT_FOUND" in r.stderr


def test_bad_input_changes_nothing(cli: CliRunner, home: Path) -> None:
    cli("vault", "create", "main", "--location", "local")
    before = cli("host", "list", "--json").json()
    for args, code in (
        (("host", "add", "not a uri"), "INVALID_INPUT"),
        (("host", "add", "qemu:///"), "INVALID_INPUT"),
        (("host", "add", "qemu:///system"), "HOST_EXISTS"),
        (("host", "add", "qemu+tcp://127.0.0.1:1/system", "--location", "x"), "HOST_UNREACHABLE"),
    ):
        r = cli(*args)
        assert r.code != 0 and f"error {code}:" in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert cli("host", "list", "--json").json() == before
    r = cli("register", "no-such-vm")
    assert r.code == 2 and "error VM_NOT_FOUND" in r.stderr
    assert cli("jobs", "list", "--json").json() == []
    r = cli("jobs", "show", "42")
    assert r.code == 2 and "error JOB_NOT_FOUND" in r.stderr
    r = cli("jobs", "list", "--since", "yesterday")
    assert r.code == 2 and "error INVALID_INPUT" in r.stderr
    r = cli("vault", "create", "second", "--location", "x", "--path", str(home / "catalog.db"))
    assert r.code == 2 and "VAULT_PATH_IN_USE" in r.stderr


def test_commands_without_a_vault(cli: CliRunner) -> None:
    r = cli("discover")
    assert r.code == 2 and "error NO_VAULT" in r.stderr
    cli("vault", "create", "a", "--location", "local")
    cli("vault", "create", "b", "--location", "local")
    r = cli("vm", "list")
    assert r.code == 2 and "error VAULT_NOT_CHOSEN" in r.stderr
    assert cli("vm", "list", "--vault", "a", "--json").json() == []


def test_bad_usage_exits_2(cli: CliRunner) -> None:
    assert cli("vm", "list", "--state", "sleeping").code == 2
    assert cli("frobnicate").code == 2


def test_errors_catalog(cli: CliRunner) -> None:
    rows = cli("errors", "--json").json()
    codes = {r["code"] for r in rows}
    assert {"DISCOVERY_IN_PROGRESS", "OPERATION_IN_PROGRESS", "AGENT_TOO_OLD"} <= codes
    assert all(r["remedy"] for r in rows)


def test_invalid_setting_is_a_usage_error(cli: CliRunner) -> None:
    r = cli("vault", "list", env={"VMVAULT_MAX_DISKS": "zero"})
    assert r.code == 2 and "VMVAULT_MAX_DISKS" in r.stderr


def test_verify_refuses_a_point_and_a_vm_as_the_api_does(cli: CliRunner) -> None:
    assert cli("vault", "create", "main", "--location", "local").code == 0
    r = cli("verify", "web", "--point", "p1")  # the service's check, shared with the API
    assert r.code == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("error INVALID_INPUT: a verify of both a point and a VM"), r.stderr
    assert cli("verify").code == 2  # neither a scope nor --all
    assert cli("verify", "web", "--all").code == 2
    assert cli("jobs", "list", "--json").json() == []


def test_an_argument_that_is_not_utf8_is_bad_input_not_a_failure(
    cli: CliRunner, home: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
    env["VMVAULT_HOME"] = str(home)
    p = subprocess.run(
        [sys.executable, "-m", "vmvault", "vault", "create", b"v\xff\xfe", "--location", "l"],
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert b"error INVALID_INPUT" in p.stderr and b"Traceback" not in p.stderr
    listed = cli("vault", "list", "--json")
    assert listed.code == 0 and listed.json() == []  # nothing was created


def test_lab_up_with_a_count_out_of_range_starts_nothing(cli: CliRunner, tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    env = {"VMVAULT_LAB_DIR": str(lab_dir), "VMVAULT_LAB_PREFIX": "zz"}
    for count in ("0", "17", "-1"):
        r = cli("lab", "up", "--count", count, env=env)
        assert r.code == 2 and "error INVALID_INPUT" in r.stderr, (count, r.stderr)
    # refused before the daemons' state directory or the lab directory was made
    assert not lab_dir.exists() and not (tmp_path / "daemons").exists()


def test_help_and_errors_open_no_catalog_and_import_none_of_its_code(cli: CliRunner) -> None:
    """``--help`` and ``errors`` import neither SQLAlchemy nor the composition root (the CLI
    imports them when a command first calls the services); a command that opens the catalog
    does, so the check sees them."""
    trace = {"PYTHONPROFILEIMPORTTIME": "1"}
    for args in (("--help",), ("vm", "list", "--help"), ("errors",)):
        r = cli(*args, env=trace)
        assert r.code == 0 and r.stdout and r.without_imports() == "", (args, r.stderr[-2000:])
        modules = r.imported()
        assert "vmvault.cli.main" in modules and catalog_imports(modules) == set(), args
    opened = cli("vault", "list", env=trace)
    assert opened.code == 0, opened.without_imports()
    assert {"sqlalchemy", "vmvault.bootstrap"} <= catalog_imports(opened.imported())
