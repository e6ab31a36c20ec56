"""Shared fixtures: a private VMVAULT_HOME per test and a CLI runner that spawns the real
``vmvault`` command (a separate process, as a user or script would)."""

from __future__ import annotations

import compileall
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import vmvault

#: The session fixtures ``rgw`` (a real Ceph RADOS Gateway for every S3 test) and ``postgres``
#: (a real PostgreSQL: ``catalog_url`` runs a catalog test on SQLite and on PostgreSQL).
pytest_plugins = ["tests.s3lab", "tests.pglab"]


def pytest_configure(config: pytest.Config) -> None:
    """Compile vmvault's modules to ``__pycache__`` once, before any test spawns ``vmvault``.

    The suite starts the real command (``python -m vmvault``, ``vmvault serve``) some
    hundreds of times; with PYTHONDONTWRITEBYTECODE set (as on these machines) no process
    ever writes the bytecode of the editable source, so each one compiled all of it again at
    start. Reading existing bytecode is still allowed, and a file edited later is compiled
    in memory as usual (the cache is checked against the source's mtime and size)."""
    compileall.compile_dir(Path(vmvault.__file__).parent, quiet=2)


# --- running in parallel: `pytest -n 2` (make test) ---------------------------------------------
# The tests that need the libvirt lab run in one xdist worker, in collection order, exactly as
# in a serial run (one session lab of guests, the lab's own labs, tgtd, /var/lib/vmvault): all
# of tests/integration. The other worker runs the rest meanwhile (e2e and unit tests make their
# own homes, ports and processes); the first takes a share of what is left when it is done.
# The S3 tests may run in either: each worker starts its own Ceph cluster (``rgw``, a session
# fixture) on first use, in a directory of its own on free ports (clusters coexist: docs/lab.md).
# The controller knows only test ids (in_lab_group); pytest_collection_modifyitems checks in
# each worker, from the fixtures, that every test that uses the lab is in the group.


def in_lab_group(nodeid: str) -> bool:
    return nodeid.startswith("tests/integration/")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's load scheduling, but the lab group goes, whole and first, to the first worker.

    By index, not by test id: schemathesis gives every operation of tests/e2e/test_api_fuzz.py
    the same id, which scheduling by id (loadscope, loadgroup) would run only once."""
    from xdist.scheduler import LoadScheduling

    class LabFirstScheduling(LoadScheduling):  # type: ignore[misc]
        def schedule(self) -> None:
            if self.collection is not None or not self._check_nodes_have_same_collection():
                super().schedule()
                return
            self.collection = next(iter(self.node2collection.values()))
            lab = [i for i, nodeid in enumerate(self.collection) if in_lab_group(nodeid)]
            self.pending[:] = sorted(set(range(len(self.collection))) - set(lab))
            if self.maxschedchunk is None:  # small batches: the slow e2e tests come first, and
                self.maxschedchunk = 4  # a worker given a big batch of them runs it alone
            first = self.nodes[0]
            if lab:
                self.node2pending[first].extend(lab)
                first.send_runtest_some(lab)
            for node in self.nodes:
                self.check_schedule(node)  # a share of the rest; once none is left: shutdown

    return LabFirstScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test outside the lab group must not use the lab: refuse the run (in any mode)."""
    for item in items:
        if "lab" in getattr(item, "fixturenames", ()) and not in_lab_group(item.nodeid):
            raise pytest.UsageError(
                f"{item.nodeid} uses the lab: move it to tests/integration, whose tests run in "
                "one xdist worker (tests/conftest.py, in_lab_group)"
            )


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def imported(self) -> set[str]:
        """The modules the process imported, from its ``-X importtime`` log on stderr (run it
        with ``env={"PYTHONPROFILEIMPORTTIME": "1"}``)."""
        lines = [x for x in self.stderr.splitlines() if x.startswith("import time:")]
        return {x.rsplit("|", 1)[1].strip() for x in lines[1:]}  # [0]: the column titles

    def without_imports(self) -> str:
        """stderr without the ``-X importtime`` log."""
        return "".join(
            x for x in self.stderr.splitlines(keepends=True) if not x.startswith("import time:")
        )


#: What the CLI imports only to open the catalog or an adapter: a command that needs neither
#: (``--help``, ``errors``, any remote command) imports none of them (docs/deployment.md,
#: "Fleet scale").
CATALOG_IMPORTS = (
    "sqlalchemy",
    "libvirt",
    "vmvault.bootstrap",
    "vmvault.services",
    "vmvault.persistence",
    "vmvault.hypervisor",
    "vmvault.dataplane",
    "vmvault.storage",
)


def catalog_imports(modules: set[str]) -> set[str]:
    """Those of ``modules`` that are (in) :data:`CATALOG_IMPORTS`."""
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in CATALOG_IMPORTS)}


CliRunner = Callable[..., Result]


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


#: ``@pytest.mark.parametrize("cli", ENGINES, indirect=True)``: a test of the real command
#: run on both catalog engines (tests/pglab.py; docs/deployment.md says which tests do).
ENGINES = ["sqlite", "postgresql"]


@pytest.fixture()
def cli(home: Path, request: pytest.FixtureRequest) -> Iterator[CliRunner]:
    """The real ``vmvault`` in ``home``; its catalog is SQLite in ``home``, or — with the
    indirect parameter ``postgresql`` — a database of its own on the session's PostgreSQL."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield make_cli(home)
        return
    from tests.pglab import database

    with database(request.getfixturevalue("postgres")) as url:
        yield make_cli(home, {"VMVAULT_CATALOG_URL": url})


def make_cli(home: Path, base: dict[str, str] | None = None) -> CliRunner:
    """A runner of the real ``vmvault`` in ``home`` (the lab's variables passed on), with
    ``base`` and then each call's ``env`` added to its environment."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Result:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
        full_env["VMVAULT_HOME"] = str(home)
        for key in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE", "VMVAULT_LAB_PREFIX"):
            if key in os.environ:
                full_env[key] = os.environ[key]
        full_env.update(base or {})
        full_env.update(env or {})
        p = subprocess.run(
            [sys.executable, "-m", "vmvault", *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
        )
        return Result(p.returncode, p.stdout, p.stderr)

    return run


def save_vm(
    services: Any, name: str, state: Any, policy: str | None = None, host: str = "host"
) -> Any:
    """Write a VM into the catalog as discovery (and registration) would, without libvirt:
    for tests of catalog-level logic (queue, scheduler, API)."""
    from vmvault.domain.vm import PowerState, VmItem, VmState

    now = services.clock()
    vm = VmItem(
        uuid=f"00000000-0000-0000-0000-{name:0>12}",
        name=name, host_uri="qemu:///system", hostname=host, group=host,
        power_state=PowerState.RUNNING, disks=[], nics=[], agent_channel=True, fingerprint="",
        first_seen=now, last_seen=now, state=state,
        vault=None if state is VmState.DISCOVERED else "main", policy=policy,
    )  # fmt: skip
    with services._uow() as uow:
        uow.vms.save(vm)
        uow.commit()
    return vm
