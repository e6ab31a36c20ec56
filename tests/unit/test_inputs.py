"""Input refused before it acts (domain/inputs.py, services/paths.py, docs/input.md): the
parsers, the rules, and the services that apply them for the CLI and the API alike."""

from __future__ import annotations

import ast
import math
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain.errors import (
    HostUriRunsCommand,
    InvalidInput,
    InvalidSchedule,
    PathNotAllowed,
    VaultCreateFailed,
    VmvaultError,
)
from vmvault.domain.host_uri import validate_uri
from vmvault.domain.inputs import (
    MAX_INT64,
    check_id,
    check_seconds,
    check_until,
    forbidden_area,
    parse_duration,
    parse_instant,
    parse_size,
    shown,
)
from vmvault.domain.job import parse_since
from vmvault.domain.restore import check_vm_name
from vmvault.domain.retention import Retention
from vmvault.domain.vault import validate_location, validate_name

SRC = Path(__file__).parents[2] / "src" / "vmvault"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


# --- names: matched whole ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["x\n", "x\r\n", "main\n", "a\x00", "a\x1b[31m", "é", "a b"])
def test_names_are_matched_whole(bad: str) -> None:
    with pytest.raises(InvalidInput):
        validate_name(bad, "vault name")
    with pytest.raises(InvalidInput):
        check_vm_name(bad)


def test_no_regex_validates_with_anchors_instead_of_fullmatch() -> None:
    """The class of the trailing-newline bug: ``re.match(r"^...$")`` accepts ``"x\\n"``.
    Every pattern in src/ is used with ``fullmatch`` (or searched in MULTILINE text)."""
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in ("compile", "match", "search", "fullmatch") or not node.args:
                continue
            first = node.args[0]
            text = first.value if isinstance(first, ast.Constant) else None
            if isinstance(first, ast.JoinedStr):
                parts = [v.value for v in first.values if isinstance(v, ast.Constant)]
                text = "".join(str(p) for p in parts)
            multiline = "MULTILINE" in ast.unparse(node) or "re.M" in ast.unparse(node)
            if isinstance(text, str | bytes) and not multiline:
                t = text.decode() if isinstance(text, bytes) else text
                if t.endswith("$") and not t.endswith("\\$"):
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
            target = node.func.value
            if node.func.attr == "match" and isinstance(target, ast.Name) and target.id.isupper():
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} (.match)")  # a pattern
    assert offenders == [], "use re.fullmatch: " + ", ".join(offenders)


def test_control_characters_are_shown_escaped() -> None:
    assert shown("a\x1b[31mb") == "a\\x1b[31mb"
    assert shown("two\nlines") == "two\\nlines"
    assert shown("two\nlines", newlines=True) == "two\nlines"
    assert shown("rtl\u202eevil") == "rtl\\u202eevil"
    assert shown("plain Zürich") == "plain Zürich"
    assert "\x1b" not in InvalidInput("x", what=f"name {shown(chr(27))}").text
    assert shown("a\u00a0b\u2028c\td") == "a\u00a0b\u2028c\td"  # not printable, not escaped


@settings(max_examples=300)
@given(st.text(st.characters(max_codepoint=0x2FFF)), st.booleans())
def test_shown_escapes_exactly_the_control_and_format_characters(text: str, newlines: bool) -> None:
    """Its fast path (``str.isprintable``) changes nothing: the character by character rule."""
    kept = {"\t", "\n"} if newlines else {"\t"}
    escaped = [
        ch not in kept and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Cn") for ch in text
    ]
    assert shown(text, newlines=newlines) == "".join(
        _escape(ch) if esc else ch for ch, esc in zip(text, escaped, strict=True)
    )


def _escape(ch: str) -> str:
    n = ord(ch)
    if ch == "\n":
        return "\\n"
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def test_locations_refuse_control_characters() -> None:
    for bad in ("eu\x1b", "eu\u202e", "\x00", ""):
        with pytest.raises(InvalidInput):
            validate_location(bad)


# --- numbers, durations, instants ----------------------------------------------------------------


def test_ids_fit_sqlite() -> None:
    assert check_id(MAX_INT64, "job id") == MAX_INT64
    for bad in (0, -1, MAX_INT64 + 1, 10**30):
        with pytest.raises(InvalidInput):
            check_id(bad, "job id")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1.0, 1e20])
def test_seconds_are_finite_and_bounded(bad: float) -> None:
    with pytest.raises(InvalidInput):
        check_seconds(bad, "--timeout", 3600)


def test_sizes() -> None:
    assert parse_size("4M") == 4 << 20 and parse_size("64KiB") == 64 << 10
    assert parse_size("1 G") == 1 << 30 and parse_size("4096") == 4096
    for bad in ("", "1e5", "-4M", "4X", "٤M", "²", "4M\n4", "9" * 30 + "T"):
        with pytest.raises(InvalidInput):
            parse_size(bad)


def test_durations() -> None:
    assert parse_since("24h") == timedelta(hours=24)
    assert parse_duration("36600d") == timedelta(days=36600)
    for bad in ("²h", "٣d", "36601d", "99999999999999d", "1h\nx", "24 h x", "-1h"):
        with pytest.raises(InvalidInput):
            parse_duration(bad)


@pytest.mark.parametrize(
    "text",
    [
        "2030-01-01T00:00+05:00:30",  # seconds in the offset
        "2030-01-01T00:00+14:30",  # beyond +14:00
        "2030-01-01T00:00-12:01",
        "tomorrow",
        "2030-02-30",
    ],
)
def test_instants_with_odd_offsets_or_no_date_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_instant(text, "--keep-until")


@pytest.mark.parametrize(
    "value",
    [
        datetime(9999, 12, 31, 23, 59, tzinfo=UTC),  # far
        datetime(9999, 12, 31, 23, 59, tzinfo=UTC).replace(tzinfo=None),
        datetime(2026, 1, 1, tzinfo=UTC),  # past
        datetime(1, 1, 1, 0, 30, tzinfo=UTC),
    ],
)
def test_keep_until_in_range(value: datetime) -> None:
    with pytest.raises(InvalidInput):
        check_until(value, NOW)


def test_keep_until_that_overflows_utc_is_invalid_input() -> None:
    value = parse_instant("9999-12-31T23:59-01:00", "--keep-until")
    with pytest.raises(InvalidInput):
        check_until(value, NOW)
    assert check_until(datetime(2027, 1, 1, 1, tzinfo=UTC), NOW).tzinfo is UTC


# --- paths and URIs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/", "/proc", "/proc/1/fd", "/sys/x", "/dev/shm/v", "/run/v", "/etc", "/usr/local/v",
     "/boot/v", "/lib64/v", "/var", "/var/lib", "/var/lib/libvirt", "/home"],
)  # fmt: skip
def test_forbidden_areas(path: str) -> None:
    assert forbidden_area(PurePosixPath(path)) is not None


@pytest.mark.parametrize(
    "path", ["/srv/vmvault", "/var/lib/libvirt/images", "/tmp/x", "/home/me/vaults", "/data"]
)
def test_allowed_areas(path: str) -> None:
    assert forbidden_area(PurePosixPath(path)) is None


@pytest.mark.parametrize(
    "uri",
    [
        "qemu+ext:///system?command=/bin/sh",
        "qemu+ssh://h/system?command=/tmp/evil",
        "qemu+ssh://h/system?netcat=/tmp/evil",
        "qemu+ssh://h/system?keyfile=k&COMMAND=x",
        "qemu+ssh://h/system?c%6Fmmand=/tmp/x",  # libvirt percent-decodes names
        "qemu+ssh://h/system?netc%61t=/tmp/x",
        "qemu+ssh://h/system?keyfile=k;command=x",  # and splits on ';' too
    ],
)
def test_uris_that_run_commands_need_allow_command(uri: str) -> None:
    with pytest.raises(HostUriRunsCommand):
        validate_uri(uri)
    assert validate_uri(uri, allow_command=True) == uri


@pytest.mark.parametrize(
    "uri",
    ["qemu+ssh://h/system?command%00x=/tmp/evil", "qemu+tls://h/system?no_verify%00=1",
     "qemu+ssh://h/system?keyfile=/k%0A"],
)  # fmt: skip
def test_a_parameter_with_a_control_character_is_refused(uri: str) -> None:
    """libvirt reads ``command%00x`` as ``command`` (a C string cut at the NUL)."""
    with pytest.raises(InvalidInput, match="control character"):
        validate_uri(uri, allow_command=True)


@pytest.mark.parametrize(
    "uri",
    ["xen:///system", "qemu+pigeon://h/system", "qemu:///sys\ntem", "qemu:///sys\x1btem",
     "qemu+ssh://h/" + "x" * 1100, "lxc:///"],
)  # fmt: skip
def test_uris_other_drivers_transports_or_too_long(uri: str) -> None:
    with pytest.raises(InvalidInput):
        validate_uri(uri)


@pytest.mark.parametrize(
    "uri",
    ["qemu+tls://h/system?no_verify=1", "qemu+ssh://root@h/system?NO_VERIFY=yes",
     "qemu+libssh2://h/system?known_hosts=/k&no_verify=1", "qemu+tls://h/system?no%5Fverify=1",
     "qemu+tls://h/system?pkipath=/x;no_verify=1", "qemu+tls://h/system?no_verify=%31",
     "qemu+libssh2://h/system?known_hosts_verify=ignore", "qemu+libssh://h/system?known_hosts_verify=auto"],
)  # fmt: skip
def test_a_host_whose_identity_is_not_checked_is_refused(uri: str) -> None:
    with pytest.raises(InvalidInput, match=r"no_verify|known_hosts_verify"):
        validate_uri(uri, allow_command=True)
    assert validate_uri("qemu+libssh2://h/system?known_hosts_verify=normal")
    assert validate_uri("qemu+tls://h/system?no_verify=0") == "qemu+tls://h/system?no_verify=0"


# --- services: the same rules for the CLI and the API --------------------------------------------


@pytest.fixture()
def services(tmp_path: Path) -> Services:
    return bootstrap(Settings.from_env({"VMVAULT_HOME": str(tmp_path / "home")}), lambda: NOW)


def test_services_refuse_huge_ids_and_odd_timeouts(services: Services) -> None:
    services.vaults.create("main", "local", None)
    for call in (
        lambda: services.jobs.show(MAX_INT64 + 1),
        lambda: services.jobs.cancel(2**64),
        lambda: services.jobs.wait(1, timeout=math.nan),
        lambda: services.jobs.list_jobs(since=timedelta(days=10**6)),
        lambda: services.queue.submit_backup(None, ["vm"], datetime(9999, 12, 31, 23, 59)),
        lambda: services.backups.backup(None, ["vm"], keep_until=datetime(2000, 1, 1)),
    ):
        with pytest.raises(InvalidInput):
            call()


def test_vault_create_refuses_system_paths_before_writing(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in ("/proc/vault", "/etc/vmvault", "/"):
        with pytest.raises(PathNotAllowed):
            services.vaults.create("v", "local", path)
    link = tmp_path / "link"
    link.symlink_to("/etc")
    with pytest.raises(PathNotAllowed, match="a link to '/etc/v'"):
        services.vaults.create("v", "local", str(link / "v"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PathNotAllowed, match="relative to"):
        services.vaults.create("v", "local", "../" * 20 + "usr/v")
    with pytest.raises(InvalidInput, match="goes with --encrypt"):
        services.vaults.create("v", "local", None, key_file=str(tmp_path / "k"))
    assert services.vaults.list_vaults() == []
    assert not (tmp_path / "home" / "vaults").exists()


def test_vault_create_that_fails_leaves_nothing_and_the_retry_succeeds(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Today's bug: a key file that cannot be written left the vault directory behind, and
    the retry was refused with VAULT_PATH_IN_USE."""
    import vmvault.dataplane.vault as dataplane_vault

    services.passphrase_prompt = lambda: "secret"
    target, keys = tmp_path / "vaults" / "enc", tmp_path / "keys" / "deep" / "enc.key"

    def unwritable(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(keys))

    real = dataplane_vault.write_key_file
    monkeypatch.setattr(dataplane_vault, "write_key_file", unwritable)
    with pytest.raises(VaultCreateFailed):
        services.vaults.create("enc", "local", str(target), encrypt=True, key_file=str(keys))
    assert not target.exists() and not (tmp_path / "vaults").exists()
    assert not (tmp_path / "keys").exists()
    assert services.vaults.list_vaults() == [] and services.vaults.list_hosts() == []
    monkeypatch.setattr(dataplane_vault, "write_key_file", real)
    vault = services.vaults.create("enc", "local", str(target), encrypt=True, key_file=str(keys))
    assert vault.encrypted and keys.is_file() and (target / "config").is_file()


def test_vault_create_into_an_empty_directory_that_fails_empties_it_again(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vmvault.dataplane.vault as dataplane_vault

    target = tmp_path / "empty"
    target.mkdir()

    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dataplane_vault.VaultStore, "create", full)
    with pytest.raises(VmvaultError):
        services.vaults.create("v", "local", str(target))
    assert target.is_dir() and list(target.iterdir()) == []
    monkeypatch.undo()
    assert services.vaults.create("v", "local", str(target)).path == str(target)


def test_policy_update_without_values_is_refused_and_same_values_write_nothing(
    tmp_path: Path,
) -> None:
    clock = {"now": NOW}
    svc = bootstrap(
        Settings.from_env({"VMVAULT_HOME": str(tmp_path / "home")}), lambda: clock["now"]
    )
    svc.vaults.create("main", "local", None)
    svc.policies.create(None, "gold", "daily@02:30", "Europe/Berlin", Retention(daily=7))
    created = svc.policies.get("gold").record.updated_at
    clock["now"] = NOW + timedelta(hours=5)
    with pytest.raises(InvalidInput, match="give at least one"):
        svc.policies.update("gold")
    with pytest.raises(InvalidInput, match="give at least one"):
        svc.policies.update("gold", counts={"daily": None})
    same = svc.policies.update(
        "gold", schedule="daily@02:30", timezone="Europe/Berlin", counts={"daily": 7}
    )
    assert not same.changed
    assert svc.policies.get("gold").record.updated_at == created  # the scheduler's anchor
    with pytest.raises(InvalidSchedule):
        svc.policies.update("gold", schedule="")
    with pytest.raises(InvalidInput):
        svc.policies.update("gold", timezone="")
    assert svc.policies.get("gold").record.updated_at == created
    changed = svc.policies.update("gold", counts={"daily": 8})
    assert changed.changed and changed.record.updated_at == clock["now"]


def test_restore_checks_name_timeout_and_dir_before_looking_anything_up(
    services: Services,
) -> None:
    from vmvault.domain.restore import RestoreMode

    for kwargs in (
        {"name": "new\n"},
        {"name": "ok", "directory": "/sys/kernel"},
        {"name": "ok", "shutdown_timeout": math.inf},
    ):
        with pytest.raises(InvalidInput):  # not VM_NOT_FOUND: checked first
            services.restores.restore("no-such-vm", "p", RestoreMode.AS_NEW, **kwargs)  # type: ignore[arg-type]


def test_error_text_keeps_no_raw_control_characters() -> None:
    for bad in ("x\x1b[2J", "x\n", "x\u202e"):
        with pytest.raises(InvalidInput) as info:
            validate_name(bad)
        assert not re.search(r"[\x00-\x1f\x7f\u202e]", info.value.text)
