"""Every setting is checked in one place (``Settings.validate``, which ``from_env`` and the
server call) before anything starts: a bad one is ``INVALID_SETTING`` naming its variable."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vmvault import __version__
from vmvault.clock import clock_of, utcnow
from vmvault.config import DEFAULT_GC, INT_RANGES, Settings, parse_clock_offset
from vmvault.domain.errors import InvalidSetting
from vmvault.domain.schedule import parse_schedule, parse_timezone

BAD = [
    ("VMVAULT_GC_SCHEDULE", "bogus", "expected daily@HH:MM, weekly:DAYS@HH:MM or every:Nh"),
    ("VMVAULT_GC_SCHEDULE", "daily@25:00", ""),
    ("VMVAULT_GC_SCHEDULE", "every:5h", ""),
    ("VMVAULT_TIMEZONE", "Mars/Olympus_Mons", "'Mars/Olympus_Mons' is not an IANA time zone"),
    ("VMVAULT_TIMEZONE", "localtime", "is not an IANA time zone"),
    ("VMVAULT_LISTEN", "127.0.0.1", "give HOST:PORT, e.g. 127.0.0.1:8470"),
    ("VMVAULT_LISTEN", "127.0.0.1:0", "the port must be a number from 1 to 65535"),
    ("VMVAULT_LISTEN", "127.0.0.1:65536", "the port must be a number from 1 to 65535"),
    ("VMVAULT_LISTEN", "::1:x", ""),
    ("VMVAULT_JOB_WORKERS", "0", "must be a whole number from 1 to 32"),
    ("VMVAULT_JOB_WORKERS", "33", "must be a whole number from 1 to 32"),
    ("VMVAULT_WORKERS", "-1", "must be a whole number from 1 to 64"),
    ("VMVAULT_WORKERS", "2.5", ""),
    ("VMVAULT_AGENT_TIMEOUT", "nan", "must be a whole number from 1 to 3600"),
    ("VMVAULT_AGENT_TIMEOUT", "1e9", ""),
    ("VMVAULT_AGENT_TIMEOUT", "99999999999999999999", ""),
    ("VMVAULT_MAX_DISKS", "zero", "must be a whole number from 1 to 256"),
    ("VMVAULT_MAX_DISKS", "\u0663", ""),  # an Arabic-Indic three: int() would take it
]


@pytest.mark.parametrize(("name", "value", "detail"), BAD)
def test_a_bad_setting_is_refused_naming_its_variable(
    tmp_path: Path, name: str, value: str, detail: str
) -> None:
    with pytest.raises(InvalidSetting) as caught:
        Settings.from_env({"VMVAULT_HOME": str(tmp_path), name: value})
    err = caught.value
    assert err.code == "INVALID_SETTING" and err.kind == "usage"  # exit 2
    assert err.text.startswith(f"setting {name}={value!r} is not valid: "), err.text
    assert detail in err.text
    assert f"Fix {name} in vmvault's environment" in err.remedy_text
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_a_non_loopback_listen_address_is_a_setting_and_tls_files_come_in_pairs(
    tmp_path: Path,
) -> None:
    s = Settings.from_env({"VMVAULT_HOME": str(tmp_path), "VMVAULT_LISTEN": "0.0.0.0:8470"})
    assert s.listen == "0.0.0.0:8470" and s.tls_cert is None and s.tls_key is None
    both = {"VMVAULT_TLS_CERT": "c.pem", "VMVAULT_TLS_KEY": "k.pem"}
    s = Settings.from_env({"VMVAULT_HOME": str(tmp_path), **both})
    assert (s.tls_cert, s.tls_key) == (Path("c.pem").absolute(), Path("k.pem").absolute())
    for given, missing in (
        ("VMVAULT_TLS_CERT", "VMVAULT_TLS_KEY"),
        ("VMVAULT_TLS_KEY", "VMVAULT_TLS_CERT"),
    ):
        with pytest.raises(InvalidSetting) as caught:
            Settings.from_env({"VMVAULT_HOME": str(tmp_path), given: "x.pem"})
        assert caught.value.text.startswith(f"setting {missing}='' is not valid: {given} is set")
    assert list(tmp_path.iterdir()) == []


def test_the_remedy_of_a_value_error_is_kept(tmp_path: Path) -> None:
    with pytest.raises(InvalidSetting) as caught:
        Settings.from_env({"VMVAULT_HOME": str(tmp_path), "VMVAULT_GC_SCHEDULE": "weekly"})
    assert caught.value.remedy_text.startswith("Write daily@HH:MM, weekly:DAYS@HH:MM")
    assert "Or write 'off' to run no GC." in caught.value.remedy_text


def test_good_settings_and_the_defaults_pass(tmp_path: Path) -> None:
    s = Settings.from_env({"VMVAULT_HOME": str(tmp_path)})
    assert (s.job_workers, s.listen, s.gc_schedule, s.timezone) == (
        2, "127.0.0.1:8470", "daily@03:00", "UTC"
    )  # fmt: skip
    assert s.parsed_gc_schedule() == parse_schedule("daily@03:00", "UTC")
    # validate() leaves the defaults unparsed (config.DEFAULT_GC): they must parse
    assert (s.gc_schedule, s.timezone) == DEFAULT_GC
    assert parse_schedule(*DEFAULT_GC) is not None and parse_timezone(DEFAULT_GC[1])
    env = {
        "VMVAULT_HOME": str(tmp_path),
        "VMVAULT_GC_SCHEDULE": " OFF ",
        "VMVAULT_TIMEZONE": "Europe/Berlin",
        "VMVAULT_LISTEN": "[::1]:9000",
        "VMVAULT_JOB_WORKERS": " 32 ",
        "VMVAULT_MAX_DISKS": "256",
    }
    s = Settings.from_env(env)
    assert s.parsed_gc_schedule() is None and s.job_workers == 32 and s.max_disks == 256


def test_validate_checks_settings_made_in_code_too(tmp_path: Path) -> None:
    """The server calls validate() itself: Settings built by hand or changed by an option."""
    s = Settings.from_env({"VMVAULT_HOME": str(tmp_path)})
    assert s.validate() is s
    for change, name in (
        ({"job_workers": 0}, "VMVAULT_JOB_WORKERS"),
        ({"agent_timeout": 10**6}, "VMVAULT_AGENT_TIMEOUT"),
        ({"timezone": "Nowhere/City"}, "VMVAULT_TIMEZONE"),
        ({"gc_schedule": "daily@3"}, "VMVAULT_GC_SCHEDULE"),
    ):
        with pytest.raises(InvalidSetting, match=f"setting {name}="):
            replace(s, **change).validate()  # type: ignore[arg-type]


def test_every_whole_number_setting_has_a_range() -> None:
    assert set(INT_RANGES) == {
        "VMVAULT_MAX_DISKS", "VMVAULT_AGENT_TIMEOUT", "VMVAULT_WORKERS", "VMVAULT_JOB_WORKERS",
        "VMVAULT_SET_HOLD_TIMEOUT",
        "VMVAULT_FREEZE_TIMEOUT",
        "VMVAULT_SMTP_PORT",
    }  # fmt: skip
    assert all(1 <= low < high for low, high in INT_RANGES.values())


def test_smtp_settings(tmp_path: Path) -> None:
    """The notification e-mail's server: the port's range, STARTTLS as 0/1, and a password
    that no repr shows."""
    home = {"VMVAULT_HOME": str(tmp_path)}
    s = Settings.from_env(home)
    assert (s.smtp_host, s.smtp_port, s.smtp_starttls) == (None, 25, False)
    env = home | {
        "VMVAULT_SMTP_HOST": "mail.example.com", "VMVAULT_SMTP_PORT": "587",
        "VMVAULT_SMTP_STARTTLS": "1", "VMVAULT_SMTP_USER": "vmvault",
        "VMVAULT_SMTP_PASSWORD": "hunter2-secret",
    }  # fmt: skip
    s = Settings.from_env(env)
    assert (s.smtp_port, s.smtp_starttls, s.smtp_password) == (587, True, "hunter2-secret")
    assert "hunter2-secret" not in repr(s)
    for name, bad in (("VMVAULT_SMTP_PORT", "70000"), ("VMVAULT_SMTP_STARTTLS", "maybe")):
        with pytest.raises(InvalidSetting, match=name):
            Settings.from_env(home | {name: bad})


def test_the_set_hold_timeout_stops_at_a_minute(tmp_path: Path) -> None:
    """A guest held longer than that stalls its applications (docs/sets.md): refused."""
    home = {"VMVAULT_HOME": str(tmp_path)}
    assert Settings.from_env(home).set_hold_timeout == 30
    assert Settings.from_env(home | {"VMVAULT_SET_HOLD_TIMEOUT": "60"}).set_hold_timeout == 60
    for bad in ("61", "600", "0"):
        with pytest.raises(InvalidSetting, match="from 1 to 60"):
            Settings.from_env(home | {"VMVAULT_SET_HOLD_TIMEOUT": bad})


def test_a_shifted_clock_is_for_tests_only(tmp_path: Path) -> None:
    """VMVAULT_TEST_CLOCK_FILE moves every service's clock by the seconds it holds, re-read when
    it changes (a lab test moves its running servers to a scheduler slot); refused where a
    served catalog could be real."""
    home = {"VMVAULT_HOME": str(tmp_path / "home"), "VMVAULT_LAB_DIR": str(tmp_path / "lab")}
    assert clock_of(Settings.from_env(home).test_clock_file) is utcnow  # unset: the wall clock
    path = tmp_path / "lab" / "clock"  # in the lab's directory: the second opt-in
    path.parent.mkdir()
    s = Settings.from_env(home | {"VMVAULT_TEST_CLOCK_FILE": str(path)})
    clock = clock_of(s.test_clock_file)

    def shifted_by(seconds: float) -> bool:
        before = datetime.now(UTC)
        now = clock()
        after = datetime.now(UTC)
        shift = timedelta(seconds=seconds)
        return before + shift <= now <= after + shift and now.tzinfo is UTC

    assert shifted_by(0)  # no file yet
    for text, seconds in ((" 90.5\n", 90.5), ("-3", -3), ("", 0)):
        tmp = tmp_path / "clock.tmp"
        tmp.write_text(text)
        tmp.rename(path)  # as a test writes it
        assert shifted_by(seconds), text
    path.write_text("soon")
    with pytest.raises(InvalidSetting, match="VMVAULT_TEST_CLOCK_FILE='soon'"):
        clock()
    for extra in (
        {"VMVAULT_LISTEN": "0.0.0.0:8470"},
        {"VMVAULT_TLS_CERT": "c.pem", "VMVAULT_TLS_KEY": "k.pem"},
    ):
        with pytest.raises(InvalidSetting) as caught:
            Settings.from_env(home | {"VMVAULT_TEST_CLOCK_FILE": str(path)} | extra)
        assert caught.value.text.startswith("setting VMVAULT_TEST_CLOCK_FILE=")
        assert "for tests only" in caught.value.text
    with pytest.raises(InvalidSetting, match="VMVAULT_TEST_CLOCK_FILE"):  # serve --listen
        replace(s, listen="[::]:8470").validate()
    (tmp_path / "lab" / "link").symlink_to(tmp_path / "clock")  # in the lab, read outside
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(InvalidSetting, match="cannot be resolved"):
        Settings.from_env(home | {"VMVAULT_TEST_CLOCK_FILE": str(tmp_path / "loop")})
    with pytest.raises(InvalidSetting, match=r"VMVAULT_LAB_DIR.*cannot be resolved"):
        Settings.from_env(
            home | {"VMVAULT_TEST_CLOCK_FILE": str(path), "VMVAULT_LAB_DIR": str(tmp_path / "loop")}
        )
    with pytest.raises(InvalidSetting, match="for lab tests only"):  # the lab is not '/'
        Settings.from_env(home | {"VMVAULT_TEST_CLOCK_FILE": str(path), "VMVAULT_LAB_DIR": "/"})
    for outside in (
        tmp_path / "clock",
        tmp_path / "lab" / ".." / "clock",
        tmp_path / "lab" / "link",
    ):  # not in the lab
        with pytest.raises(InvalidSetting) as caught:
            Settings.from_env(home | {"VMVAULT_TEST_CLOCK_FILE": str(outside)})
        assert "for lab tests only" in caught.value.text
        assert "VMVAULT_LAB_DIR" in caught.value.remedy_text
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize(
    ("text", "detail"),
    [("soon", "must be seconds from -86400 to 86400"), ("86401", ""), ("nan", ""), ("-inf", "")],
)
def test_a_bad_clock_offset_is_refused(text: str, detail: str) -> None:
    with pytest.raises(InvalidSetting) as caught:
        parse_clock_offset(text, "VMVAULT_TEST_CLOCK_FILE")
    assert caught.value.text.startswith(f"setting VMVAULT_TEST_CLOCK_FILE={text!r} is not valid")
    assert detail in caught.value.text


def test_the_local_socket_and_the_identity_a_client_must_share_with_it(tmp_path: Path) -> None:
    def settings(**env: str) -> Settings:
        return Settings.from_env({"VMVAULT_HOME": str(tmp_path), **env})

    assert settings().api_socket == tmp_path / "api.sock" and settings().local_socket
    assert not settings(VMVAULT_LOCAL_SOCKET="0").local_socket
    with pytest.raises(InvalidSetting, match="VMVAULT_LOCAL_SOCKET"):
        settings(VMVAULT_LOCAL_SOCKET="maybe")
    pg = "postgresql+psycopg://vmvault:{}@db.example:5432/catalog"
    first, second = (
        settings(VMVAULT_CATALOG_URL=pg.format("s3cret")),
        settings(VMVAULT_CATALOG_URL=pg.format("other")),
    )
    # the password is no part of it (never sent, even hashed); everything else is
    assert first.local_identity == second.local_identity
    assert "s3cret" not in first.local_identity and "db.example" not in first.local_identity
    version, digest = first.local_identity.split()
    assert version == __version__ and len(digest) == 24
    for other in (
        pg.format("s3cret").replace("catalog", "catalog2"),
        pg.format("s3cret").replace("5432", "5433"),
        pg.format("s3cret").replace("vmvault:", "admin:"),
    ):
        assert settings(VMVAULT_CATALOG_URL=other).local_identity != first.local_identity, other
    assert settings().local_identity != first.local_identity  # the home's SQLite catalog
    # a password given as a parameter is no part of it either; a default vault is
    assert settings(VMVAULT_CATALOG_URL=pg.format("s3cret") + "?password=x").local_identity == (
        settings(VMVAULT_CATALOG_URL=pg.format("s3cret") + "?password=y").local_identity
    )
    assert settings(VMVAULT_VAULT="main").local_identity != settings().local_identity
    assert (
        settings().local_identity
        != Settings.from_env({"VMVAULT_HOME": str(tmp_path / "elsewhere")}).local_identity
    )
