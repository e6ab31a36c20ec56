"""One settings object, read from the environment once (by the composition root).

| variable                    | default                                  |
|-----------------------------|------------------------------------------|
| ``VMVAULT_HOME``            | ``$XDG_DATA_HOME/vmvault`` (platformdirs) |
| ``VMVAULT_CATALOG_URL``     | ``sqlite:///$VMVAULT_HOME/catalog.db``   |
| ``VMVAULT_VAULT``           | the only vault, when there is one        |
| ``VMVAULT_LAB_DIR``         | ``/var/lib/vmvault/lab``                 |
| ``VMVAULT_LAB_CACHE``       | ``/var/cache/vmvault/lab``               |
| ``VMVAULT_MAX_DISKS``       | ``8`` disks per VM that registration accepts |
| ``VMVAULT_MIN_AGENT``       | ``5.0.0`` minimum qemu-guest-agent version |
| ``VMVAULT_AGENT_TIMEOUT``   | ``5`` seconds for a guest-agent answer    |
| ``VMVAULT_FREEZE_TIMEOUT``  | ``10`` seconds a freeze (and the guest's fsfreeze hooks) may take before the backup thaws and takes a saved-state point |
| ``VMVAULT_PASSPHRASE``      | passphrase of encrypted vaults (or ``VMVAULT_PASSPHRASE_FILE``; else asked on a terminal) |
| ``VMVAULT_NEW_PASSPHRASE``  | the new passphrase of ``vault key change-passphrase`` / ``import`` (or ``…_FILE``; else asked twice on a terminal) |
| ``VMVAULT_NODE_HOST``       | ``qemu:///system``: the libvirt URI of the host this process runs on; jobs that touch a VM's disks run only for VMs of that host (docs/deployment.md, "Remote libvirt hosts") |
| ``VMVAULT_WORK_DIR``        | ``/var/lib/vmvault/run``: NBD sockets and scratch files of running backups |
| ``VMVAULT_WORKERS``         | ``2`` threads hashing/compressing (one per core) |
| ``VMVAULT_JOB_WORKERS``     | ``2`` jobs ``vmvault serve`` runs at once |
| ``VMVAULT_LISTEN``          | ``127.0.0.1:8470``: where ``vmvault serve``'s API listens (beyond loopback: TLS) |
| ``VMVAULT_LOCAL_SOCKET``    | ``1``: ``vmvault serve`` also answers the reads of this host's CLI on ``$VMVAULT_HOME/api.sock`` (mode 0600), and the CLI's listings and dashboard ask it there; ``0``: neither (docs/server.md, "The local socket") |
| ``VMVAULT_TLS_CERT``        | the PEM certificate ``vmvault serve`` presents (with ``VMVAULT_TLS_KEY``) |
| ``VMVAULT_TLS_KEY``         | its PEM private key (neither given beyond loopback: a self-signed pair in ``$VMVAULT_HOME/tls``) |
| ``VMVAULT_GC_SCHEDULE``     | ``daily@03:00`` (a policy schedule, or ``off``): when the server runs GC |
| ``VMVAULT_TIMEZONE``        | ``UTC``: the zone of ``VMVAULT_GC_SCHEDULE`` |
| ``VMVAULT_SMTP_HOST``       | unset: the SMTP server notification e-mails go through (docs/notifications.md) |
| ``VMVAULT_SMTP_PORT``       | ``25`` |
| ``VMVAULT_SMTP_FROM``       | ``vmvault@localhost``: the e-mails' sender address |
| ``VMVAULT_SMTP_STARTTLS``   | ``0``; ``1``: STARTTLS before anything else, the certificate verified |
| ``VMVAULT_SMTP_USER``       | unset; with ``VMVAULT_SMTP_PASSWORD``: SMTP AUTH (never logged) |
| ``VMVAULT_NODE_HOST``       | ``qemu:///system``: the libvirt URI of the host this process runs on (its node's host: docs/deployment.md) |
| ``VMVAULT_TEST_CLOCK_FILE`` | unset: **tests only** — a file holding seconds added to the clock every service reads (vmvault/clock.py), re-read when it changes, so that a lab test moves its running servers' clock to a scheduler slot instead of waiting for the wall clock; refused beyond loopback, with TLS, or when the file is not inside `VMVAULT_LAB_DIR` (a second, deliberate opt-in) |

Every value is checked once, by :meth:`Settings.validate` (whole numbers within
:data:`INT_RANGES`, a libvirt URI, a known zone, a GC schedule that parses, a listen address, a TLS certificate given with its key): a bad
one is ``INVALID_SETTING`` naming its variable (exit 2), before any command does anything.

The lab lives outside ``VMVAULT_HOME`` on purpose: its domains are global to the host's
libvirtd, and QEMU (user ``libvirt-qemu``) must be able to reach its files, which it cannot
under ``/root``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from vmvault import __version__
from vmvault.domain.errors import InvalidInput, InvalidSetting
from vmvault.domain.host_uri import DEFAULT_HOST_URI, host_key, validate_uri

if TYPE_CHECKING:  # the schedule parser is imported where a GC schedule is parsed
    from vmvault.domain.schedule import Schedule

#: The default GC schedule and its zone (VMVAULT_GC_SCHEDULE, VMVAULT_TIMEZONE): they parse
#: (tests/unit/test_settings.py), so :meth:`Settings.validate` does not parse them again.
DEFAULT_GC = ("daily@03:00", "UTC")


def catalog_identity(url: str) -> str:
    """The catalog ``url`` names, as two processes compare it: its scheme, user, host, database
    and parameters, without its password (in the authority, or a ``password`` parameter: never
    sent, even hashed); a SQLite file by its absolute path (a relative one is the working
    directory's, as SQLAlchemy opens it)."""
    parts = urlsplit(url)
    user, at, where = parts.netloc.rpartition("@")
    query = sorted(
        p for p in parts.query.split("&") if p and p.partition("=")[0].lower() != "password"
    )
    path = parts.path
    if parts.scheme.startswith("sqlite") and path not in ("", "/", "/:memory:"):
        path = os.path.abspath(path[1:])  # sqlite:///rel.db: rel.db; sqlite:////abs.db: /abs.db
    return "|".join((parts.scheme, user.partition(":")[0] + at + where, path, "&".join(query)))


#: The header in which a request on ``vmvault serve``'s local socket sends the client's
#: :attr:`Settings.local_identity` (api/local_socket.py).
LOCAL_IDENTITY_HEADER = "X-Vmvault-Local"


@dataclass(frozen=True)
class Settings:
    home: Path
    catalog_url: str = field(repr=False)  # may hold a password: never in a repr or log
    default_vault: str | None
    lab_dir: Path
    lab_cache: Path
    max_disks: int
    min_agent_version: str
    agent_timeout: int
    passphrase: str | None = None
    new_passphrase: str | None = None
    work_dir: Path = Path("/var/lib/vmvault/run")
    #: The libvirt URI of the host this process runs on: its node's host (domain/placement.py,
    #: docs/deployment.md).
    node_host: str = DEFAULT_HOST_URI
    workers: int = 2
    #: ``vmvault serve``: jobs run at once, where the REST API listens, when GC runs.
    job_workers: int = 2
    listen: str = "127.0.0.1:8470"
    #: ``vmvault serve`` answers this host's CLI's reads on :attr:`api_socket`, and the CLI
    #: asks it there (docs/server.md, "The local socket").
    local_socket: bool = True
    gc_schedule: str = DEFAULT_GC[0]
    timezone: str = DEFAULT_GC[1]
    #: A backup set: how long (s) its first held VM waits for the last (docs/sets.md: at
    #: most 60 s — a guest frozen longer stalls its applications).
    set_hold_timeout: int = 30
    freeze_timeout: int = 10
    #: ``vmvault serve``'s TLS certificate and key (PEM files), both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Notification e-mail (docs/notifications.md); no host: e-mail targets cannot be sent.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "vmvault@localhost"
    smtp_starttls: bool = False
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    #: Tests only: the file of the seconds added to the services' clock (vmvault/clock.py).
    test_clock_file: Path | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read the settings and :meth:`validate` them: a bad one is refused before anything."""
        env = dict(os.environ if env is None else env)
        home = Path(env.get("VMVAULT_HOME") or _default_home()).absolute()
        return cls(
            home=home,
            catalog_url=env.get("VMVAULT_CATALOG_URL") or f"sqlite:///{home / 'catalog.db'}",
            default_vault=env.get("VMVAULT_VAULT") or None,
            lab_dir=Path(env.get("VMVAULT_LAB_DIR") or "/var/lib/vmvault/lab"),
            lab_cache=Path(env.get("VMVAULT_LAB_CACHE") or "/var/cache/vmvault/lab"),
            max_disks=_int(env, "VMVAULT_MAX_DISKS", 8),
            min_agent_version=env.get("VMVAULT_MIN_AGENT") or "5.0.0",
            agent_timeout=_int(env, "VMVAULT_AGENT_TIMEOUT", 5),
            passphrase=_passphrase(env, "VMVAULT_PASSPHRASE"),
            new_passphrase=_passphrase(env, "VMVAULT_NEW_PASSPHRASE"),
            work_dir=Path(env.get("VMVAULT_WORK_DIR") or "/var/lib/vmvault/run"),
            # stored in nodes.host and compared in SQL with the VMs' hosts (claim_next)
            node_host=host_key(env.get("VMVAULT_NODE_HOST") or DEFAULT_HOST_URI),
            workers=_int(env, "VMVAULT_WORKERS", min(os.cpu_count() or 2, 8)),
            job_workers=_int(env, "VMVAULT_JOB_WORKERS", 2),
            listen=env.get("VMVAULT_LISTEN") or "127.0.0.1:8470",
            local_socket=_flag(env, "VMVAULT_LOCAL_SOCKET", default=True),
            gc_schedule=env.get("VMVAULT_GC_SCHEDULE") or DEFAULT_GC[0],
            timezone=env.get("VMVAULT_TIMEZONE") or DEFAULT_GC[1],
            set_hold_timeout=_int(env, "VMVAULT_SET_HOLD_TIMEOUT", 30),
            freeze_timeout=_int(env, "VMVAULT_FREEZE_TIMEOUT", 10),
            tls_cert=_path(env, "VMVAULT_TLS_CERT"),
            tls_key=_path(env, "VMVAULT_TLS_KEY"),
            smtp_host=env.get("VMVAULT_SMTP_HOST") or None,
            smtp_port=_int(env, "VMVAULT_SMTP_PORT", 25),
            smtp_from=env.get("VMVAULT_SMTP_FROM") or "vmvault@localhost",
            smtp_starttls=_flag(env, "VMVAULT_SMTP_STARTTLS"),
            smtp_user=env.get("VMVAULT_SMTP_USER") or None,
            smtp_password=env.get("VMVAULT_SMTP_PASSWORD") or None,
            test_clock_file=_real_path(env, "VMVAULT_TEST_CLOCK_FILE"),
        ).validate()

    def validate(self) -> Settings:
        """Check every setting's meaning and range; returns ``self``, or raises the first bad
        one as :class:`InvalidSetting` (exit 2) naming its variable.

        The one place settings are checked: :meth:`from_env` calls it, so every command refuses
        a bad setting before it does anything, and ``vmvault serve`` calls it again on the
        settings its options changed, before it binds its port or starts anything.
        """
        for name, value in (
            ("VMVAULT_MAX_DISKS", self.max_disks),
            ("VMVAULT_AGENT_TIMEOUT", self.agent_timeout),
            ("VMVAULT_WORKERS", self.workers),
            ("VMVAULT_JOB_WORKERS", self.job_workers),
            ("VMVAULT_SET_HOLD_TIMEOUT", self.set_hold_timeout),
            ("VMVAULT_FREEZE_TIMEOUT", self.freeze_timeout),
            ("VMVAULT_SMTP_PORT", self.smtp_port),
        ):
            _in_range(name, str(value), value)
        with _setting("VMVAULT_NODE_HOST", self.node_host, "Write a libvirt URI."):
            validate_uri(self.node_host, allow_command=True)
        if (self.gc_schedule, self.timezone) != DEFAULT_GC:  # the defaults parse: not again
            # (the schedule's parser and zoneinfo are ~10 ms of every command's start)
            from vmvault.domain.schedule import parse_timezone

            with _setting("VMVAULT_TIMEZONE", self.timezone):
                parse_timezone(self.timezone)
            with _setting("VMVAULT_GC_SCHEDULE", self.gc_schedule, "Or write 'off' to run no GC."):
                self.parsed_gc_schedule()
        with _setting("VMVAULT_LISTEN", self.listen, "Write HOST:PORT, e.g. 127.0.0.1:8470."):
            parse_listen(self.listen)
        if (self.tls_cert is None) != (self.tls_key is None):
            given, missing = (
                ("VMVAULT_TLS_CERT", "VMVAULT_TLS_KEY")
                if self.tls_cert
                else ("VMVAULT_TLS_KEY", "VMVAULT_TLS_CERT")
            )
            raise InvalidSetting(
                f"{given} is set but {missing} is not",
                name=missing,
                value="''",
                hint="Give the certificate and its key together (--tls-cert/--tls-key).",
            )
        if self.test_clock_file and (self.tls_cert or not parse_listen(self.listen).loopback):
            raise InvalidSetting(
                "a shifted clock is for tests only: refused with TLS or beyond loopback",
                name="VMVAULT_TEST_CLOCK_FILE",
                value=repr(str(self.test_clock_file)),
                hint="Unset it: a served catalog keeps the wall clock's time.",
            )
        if self.test_clock_file:  # a second, deliberate opt-in: the file is in the lab's dir
            lab = _resolved(self.lab_dir, "VMVAULT_LAB_DIR")
            if lab == Path(lab.anchor) or not self.test_clock_file.is_relative_to(lab):
                raise InvalidSetting(
                    "a shifted clock is for lab tests only: its file must be in the lab's "
                    "directory",
                    name="VMVAULT_TEST_CLOCK_FILE",
                    value=repr(str(self.test_clock_file)),
                    hint=f"Unset it, or keep the file in VMVAULT_LAB_DIR ({self.lab_dir}).",
                )
        return self

    @property
    def api_socket(self) -> Path:
        """The unix socket on which ``vmvault serve`` answers this host's CLI's reads."""
        return self.home / "api.sock"

    @property
    def local_identity(self) -> str:
        """What a CLI and the server behind :attr:`api_socket` must share for the server to
        answer for the CLI (docs/server.md, "The local socket"): vmvault's version (the
        documents' shape), the catalog (:func:`catalog_identity`) and the default vault (what a
        command that names none lists), hashed."""
        meant = f"{catalog_identity(self.catalog_url)}\n{self.default_vault or ''}"
        return f"{__version__} {hashlib.sha256(meant.encode()).hexdigest()[:24]}"

    def parsed_gc_schedule(self) -> Schedule | None:
        """The GC schedule (``None``: ``off``), in ``timezone``."""
        from vmvault.domain.schedule import parse_schedule

        if self.gc_schedule.strip().lower() == "off":
            return None
        return parse_schedule(self.gc_schedule, self.timezone)


def _default_home() -> str:
    """``$XDG_DATA_HOME/vmvault`` (platformdirs: imported only when VMVAULT_HOME is unset)."""
    import platformdirs

    return platformdirs.user_data_dir("vmvault")


#: The range of each whole-number setting (a value outside is ``INVALID_SETTING``).
INT_RANGES = {
    "VMVAULT_MAX_DISKS": (1, 256),
    "VMVAULT_AGENT_TIMEOUT": (1, 3600),  # seconds
    "VMVAULT_WORKERS": (1, 64),
    "VMVAULT_JOB_WORKERS": (1, 32),
    "VMVAULT_SET_HOLD_TIMEOUT": (1, 60),  # seconds a guest may stay frozen: docs/sets.md
    "VMVAULT_FREEZE_TIMEOUT": (1, 600),  # seconds
    "VMVAULT_SMTP_PORT": (1, 65535),
}


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    text = raw.strip()
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None
    return _in_range(name, raw, value)


def _in_range(name: str, raw: str, value: int | None) -> int:
    low, high = INT_RANGES[name]
    if value is None or not low <= value <= high:
        raise InvalidSetting(
            f"must be a whole number from {low} to {high}",
            name=name,
            value=repr(raw),
            hint=f"Give a whole number from {low} to {high}.",
        )
    return value


@contextmanager
def _setting(name: str, value: str, extra: str = "") -> Iterator[None]:
    """Re-raise a value's :class:`InvalidInput` as :class:`InvalidSetting` naming ``name``."""
    try:
        yield
    except InvalidSetting:
        raise
    except InvalidInput as exc:
        generic = type(exc) is InvalidInput  # its remedy says nothing about this value
        hint = extra if generic else f"{exc.remedy_text} {extra}".strip()
        detail = exc.detail or exc.text  # the value is in the message already
        raise InvalidSetting(detail, name=name, value=repr(value), hint=hint) from None


#: The largest test clock offset (s): a day either way.
MAX_CLOCK_OFFSET = 86_400.0


def parse_clock_offset(text: str, name: str) -> float:
    """Seconds, possibly negative or fractional, within :data:`MAX_CLOCK_OFFSET` (empty: 0)."""
    raw = text.strip()
    if not raw:
        return 0.0
    try:
        value = float(raw) if raw.isascii() and len(raw) <= 32 else None
    except ValueError:
        value = None
    if value is None or not -MAX_CLOCK_OFFSET <= value <= MAX_CLOCK_OFFSET:  # also nan
        raise InvalidSetting(
            f"must be seconds from {-MAX_CLOCK_OFFSET:.0f} to {MAX_CLOCK_OFFSET:.0f}",
            name=name,
            value=repr(raw),
            hint="Give seconds, e.g. 45 or -2.5 (tests only).",
        )
    return value


def _path(env: dict[str, str], name: str) -> Path | None:
    raw = env.get(name)
    return Path(raw).absolute() if raw else None


def _real_path(env: dict[str, str], name: str) -> Path | None:
    """:func:`_path` with every symbolic link resolved (the path checked is the path read)."""
    path = _path(env, name)
    return _resolved(path, name) if path is not None else None


def _resolved(path: Path, name: str) -> Path:
    """``path`` with every symbolic link resolved; a loop of links is the setting's error."""
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:  # a loop of links
        raise InvalidSetting(
            f"the path cannot be resolved ({exc})",
            name=name,
            value=repr(str(path)),
            hint="Give a path without a loop of symbolic links.",
        ) from None


def _flag(env: dict[str, str], name: str, default: bool = False) -> bool:
    raw = (env.get(name) or ("1" if default else "0")).strip().lower()
    if raw not in ("0", "1", "yes", "no", "true", "false"):
        raise InvalidSetting(
            "must be 0 or 1", name=name, value=repr(env.get(name)), hint="Write 0 or 1."
        )
    return raw in ("1", "yes", "true")


def _passphrase(env: dict[str, str], name: str) -> str | None:
    """A passphrase from ``name`` or the file named by ``name``_FILE (its last newline off)."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().rstrip("\n")
        except OSError as exc:
            raise InvalidInput(str(exc), what=f"{name}_FILE={path}") from None
    return None


@dataclass(frozen=True)
class ListenAddress:
    host: str  # as the server binds it: an IP address or a host name
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        """Whether only this host can connect: 127.0.0.0/8, ``::1`` or ``localhost``.

        Anything else needs TLS (docs/server.md, "TLS"): another address, the unspecified
        ``0.0.0.0`` and ``::``, an IPv4-mapped ``::ffff:127.0.0.1`` (an IPv6 socket, not the
        loopback interface), and every other host name (what it resolves to may change)."""
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_listen(value: str) -> ListenAddress:
    """Where ``vmvault serve``'s REST API listens: ``HOST:PORT``, ``[IPV6]:PORT`` or ``:PORT``
    (127.0.0.1). HOST is an IP address or a host name; one that is not loopback
    (:attr:`ListenAddress.loopback`) makes the server use TLS."""
    text = value.strip()
    if text.startswith("["):  # [::1]:8470
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise InvalidInput("write an IPv6 address as [ADDRESS]:PORT", what=f"listen {value!r}")
        _ipv6(host, value)
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise InvalidInput("give HOST:PORT, e.g. 127.0.0.1:8470", what=f"listen {value!r}")
        if ":" in host:  # ::1:8470, as before brackets were required
            _ipv6(host, value)
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise InvalidInput("the port must be a number from 1 to 65535", what=f"listen {value!r}")
    host = host or "127.0.0.1"
    if ":" not in host and not _HOST.fullmatch(host):
        raise InvalidInput("HOST is an IP address or a host name", what=f"listen {value!r}")
    return ListenAddress(host, int(port))


_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", re.ASCII)


def _ipv6(host: str, value: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise InvalidInput(
            "write an IPv6 address as [ADDRESS]:PORT", what=f"listen {value!r}"
        ) from None
