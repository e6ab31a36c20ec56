"""A real PostgreSQL catalog for the lab and the tests: Debian's server, run without systemd.

:class:`PostgresCluster` brings up, reports and tears down one cluster that lives entirely
under one directory ``root`` (``$VMVAULT_LAB_DIR/postgres`` for ``vmvault lab catalog``):

======================  ===================================================================
``root/MARKER``         written first: ``down`` removes only a directory that holds it
``root/data/``          the cluster (``initdb``), owned by the ``postgres`` user
``root/run/``           its unix socket ``.s.PGSQL.5432`` — the only way in: it does not
                        listen on TCP at all (``listen_addresses = ''``)
``root/postgres.log``   the server's log (``pg_ctl -l``)
======================  ===================================================================

``up`` runs, as the ``postgres`` user (``runuser``; ``initdb`` refuses root): ``initdb`` with
superuser ``vmvault`` and ``trust`` authentication on the socket (the socket directory is
the boundary: a lab, not a production set-up), ``pg_ctl start -w``, then ``createdb vmvault``.
The URL it reports is ``postgresql+psycopg://vmvault@/vmvault?host=ROOT/run``. The lab trades
durability for speed (``fsync = off``: a crash of the *machine* may lose the catalog; a
crash or restart of the server loses nothing committed). ``up`` is idempotent (a stopped
cluster is started again with its data); concurrent calls are serialised by a lock file
beside ``root``. ``down`` stops the server (``pg_ctl stop -m fast``) and removes ``root``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

from vmvault.domain.errors.lab import CatalogLabDirForeign, CatalogLabFailed
from vmvault.hypervisor.host import locked

MARKER = ".vmvault-lab-postgres"
USER = "vmvault"
DATABASE = "vmvault"
#: Unix sockets have a 107-byte path limit: ``run/.s.PGSQL.5432`` must fit under it.
MAX_ROOT_CHARS = 80
CONF = """
# vmvault lab (docs/deployment.md): the unix socket only, durability traded for speed
listen_addresses = ''
unix_socket_directories = '{run}'
port = 5432
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
"""


def bin_dir() -> Path:
    """The newest installed server's ``bin`` (``/usr/lib/postgresql/15/bin`` on Debian 12)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
    )
    if not found:
        raise CatalogLabFailed(what="PostgreSQL is not installed (make system installs it)")
    return found[-1].parent


class PostgresCluster:
    """One lab cluster under ``root``; see the module docstring for what each step does."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.data = self.root / "data"
        self.run_dir = self.root / "run"
        self.log = self.root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{USER}@/{DATABASE}?host={self.run_dir}"

    # --- the three verbs ---------------------------------------------------------------------

    def up(self) -> dict[str, Any]:
        """Create the cluster when missing, start it when stopped; its document (``url``)."""
        self._check_root()
        self.root.parent.mkdir(parents=True, exist_ok=True)  # a lab directory not made yet
        with locked(self.root.parent / f".{self.root.name}.lock"):
            if not (self.data / "PG_VERSION").exists():
                if self.root.exists():  # an up that did not finish: start afresh
                    self._remove()
                self._create()
            if not self.running():
                self.start()
            return self.status()

    def status(self) -> dict[str, Any]:
        """``state`` is up (the server runs) or down; ``url`` is where it answers."""
        pid = self.pid() if self.running() else None
        return {
            "state": "up" if pid else "down",
            "dir": str(self.root),
            "exists": self.root.exists(),
            "url": self.url,
            "pid": pid,
        }

    def down(self) -> bool:
        """Stop the server and remove ``root``; False when there was nothing."""
        self._check_root()
        if not self.root.parent.is_dir():
            return False
        with locked(self.root.parent / f".{self.root.name}.lock"):
            if not self.root.exists():
                return False
            if self.running():
                self.stop()
            self._remove()
            return True

    # --- start / stop (tests restart the server under a running job) ---------------------------

    def start(self) -> None:
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log))

    def stop(self) -> None:
        self._pg_ctl("stop", "-w", "-m", "fast")

    def restart(self) -> None:
        """Stop (fast: open connections are cut) and start again, the data kept."""
        self._pg_ctl("restart", "-w", "-m", "fast", "-l", str(self.log))

    def running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        res = self._as_postgres(bin_dir() / "pg_ctl", "status", "-D", str(self.data), check=False)
        return res.returncode == 0

    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        return None

    # --- helpers -----------------------------------------------------------------------------

    def _check_root(self) -> None:
        if len(str(self.root)) > MAX_ROOT_CHARS:
            raise CatalogLabFailed(
                what=f"{self.root} is longer than {MAX_ROOT_CHARS} characters (its unix socket "
                "would not fit)"
            )
        if self.root.exists() and any(self.root.iterdir()) and not (self.root / MARKER).exists():
            raise CatalogLabDirForeign(root=str(self.root), marker=MARKER)

    def _create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / MARKER).write_text("a vmvault lab PostgreSQL cluster\n")
        shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o755)
        self.run_dir.mkdir(exist_ok=True)
        shutil.chown(self.run_dir, "postgres", "postgres")
        self._as_postgres(
            bin_dir() / "initdb",
            "-D",
            str(self.data),
            "-U",
            USER,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write(CONF.format(run=self.run_dir))
        self.start()
        self._as_postgres(bin_dir() / "createdb", "-h", str(self.run_dir), "-U", USER, DATABASE)

    def _remove(self) -> None:
        shutil.rmtree(self.root)

    def _pg_ctl(self, *args: str) -> None:
        self._as_postgres(bin_dir() / "pg_ctl", "-D", str(self.data), *args)

    def _as_postgres(self, *argv: Any, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["runuser", "-u", "postgres", "--", *map(str, argv)]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd="/", check=False)
        if check and res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
            log = (
                self.log.read_text(errors="replace").splitlines()[-5:] if self.log.exists() else []
            )
            detail = "; ".join(tail + log)
            raise CatalogLabFailed(what=f"{Path(str(argv[0])).name} {argv[1]}: {detail}")
        return res
