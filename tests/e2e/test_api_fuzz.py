"""Schemathesis against the API's own OpenAPI document, in process (ASGI).

Every operation gets generated requests, with an admin's token — valid ones and, in negative
mode, ones that break the schema — over a catalog with a vault, a protected, a registered and
a discovered VM, a policy and a recovery point (so lists and the dashboard have rows to
check), over the in-memory hypervisor and restore driver (tests/e2e/api_world.py: the
mutating routes never reach a real libvirt host, and paths the fuzzer names on the server are
moved under a temporary directory, :func:`confine`), and every
response must be: no 5xx, a status the route declares, a body of the declared schema
and content type, and a 4xx for input the schema forbids.  Then the stateful run chains
calls along the OpenAPI links (a queued job's id into show and cancel).

Bounded: a fixed number of examples per operation, derandomized (the same cases every run)
and without Hypothesis' example database, so a run takes the same time and never flakes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from tests.api_tokens import authenticate, bearer
from tests.e2e import api_world
from tests.e2e.api_world import World, make_world
from vmvault.api.app import create_app
from vmvault.domain.job import JobState
from vmvault.domain.retention import Retention

MAX_EXAMPLES = int(os.environ.get("VMVAULT_FUZZ_EXAMPLES", "50"))

CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.negative_data_rejection,
]

#: Request fields that name a path on the server: the fuzzer's values are moved under
#: :data:`SANDBOX` (as the root this test may run as, "/etc/x" would be created otherwise).
SERVER_PATHS = {"path", "key_file", "credentials_file", "directory"}


def make_world_for_fuzz() -> World:
    """Vault ``main`` (the default: a vault created by a case changes no other case's
    answer); VMs ``web`` (protected by ``gold``, with a real point), ``app`` (registered)
    and ``db`` (discovered) — all in the in-memory hypervisor, so discovery, registration
    and restores' checks never reach a real libvirt host."""
    home = Path(tempfile.mkdtemp(prefix="vmvault-fuzz-")) / "home"
    w = make_world(home, {"VMVAULT_VAULT": "main"})
    svc = w.services
    svc.vaults.create("main", "local", None)
    for n, name in enumerate(("web", "app", "db")):
        w.add_vm(name, f"00000000-0000-0000-0000-{n:012d}")
    svc.inventory.discover(None)
    svc.inventory.register(None, ["web", "app"])
    svc.policies.create(None, "gold", "daily@03:00", "UTC", Retention(daily=7))
    [configured] = svc.protection.protect(None, ["web"], "gold").configured
    assert configured.job.state is JobState.COMPLETED
    [backup] = svc.backups.backup(None, ["web"])
    assert backup.job.state is JobState.COMPLETED, backup.job.message
    return w


class Swappable:
    """The app under test, replaced by :func:`reset` (an ASGI app that calls the current one)."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def reset(w: World) -> None:
    """Cancel every job still queued, so that each case starts with no active job on a VM:
    the same request gets the same status every time, which Hypothesis needs to replay and
    shrink a failure."""
    for state in (JobState.QUEUED, JobState.IN_PROGRESS):
        for job in w.services.jobs.list_jobs(state=state):
            w.services.jobs.cancel(job.id)


def restart(w: World) -> None:
    """Start from the state :func:`make_world_for_fuzz` left: the home copied back (catalog
    and vault: the points, policies and VMs earlier cases deleted or changed), an empty
    sandbox, new services and app.  Each stateful run does (it chooses its next step by the
    answers so far, so they must not depend on earlier runs); it takes about a second, too
    long for every single case."""
    w.services.close()
    shutil.rmtree(HOME)
    shutil.copytree(PRISTINE, HOME, symlinks=True)
    shutil.rmtree(SANDBOX)
    SANDBOX.mkdir()
    api_world.BUCKETS.clear()
    w.services = w.fresh_services()
    APP.app = create_app(w.services, authenticate=authenticate)


def confine(body: Any) -> Any:
    """``body`` with every string value of a :data:`SERVER_PATHS` field moved under
    :data:`SANDBOX` (other values, e.g. a wrong type, stay as the fuzzer made them)."""
    if isinstance(body, list):
        return [confine(v) for v in body]
    if not isinstance(body, dict):
        return body
    return {
        k: str(SANDBOX / f"p{zlib.crc32(v.encode('utf-8', 'replace'))}")
        if k in SERVER_PATHS and isinstance(v, str)
        else confine(v)
        for k, v in body.items()
    }


WORLD = make_world_for_fuzz()
HOME = WORLD.settings.home
PRISTINE = Path(tempfile.mkdtemp(prefix="vmvault-fuzz-pristine-")) / "home"
shutil.copytree(HOME, PRISTINE, symlinks=True)
SANDBOX = Path(tempfile.mkdtemp(prefix="vmvault-fuzz-paths-"))
APP = Swappable()
restart(WORLD)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
if True:
    schema.config.update(headers=bearer())
    schema.config.generation.update(
        modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
        database="none",
    )


def prepared(case: schemathesis.Case) -> schemathesis.Case:
    if isinstance(case.body, dict | list):
        case.body = confine(case.body)
    return case


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation(case: schemathesis.Case) -> None:
    reset(WORLD)
    prepared(case).call_and_validate(checks=CHECKS)


class Workflow(schema.as_state_machine()):  # type: ignore[misc]
    """Chains of calls along the OpenAPI links: queue a job, show it, cancel it (twice)."""

    def setup(self) -> None:
        restart(WORLD)

    def before_call(self, case: schemathesis.Case) -> None:
        prepared(case)

    def validate_response(  # type: ignore[override]
        self, response: schemathesis.Response, case: schemathesis.Case, **kwargs: object
    ) -> None:
        # positive_data_acceptance is left out: the schema cannot say that a keep_until must
        # lie ahead or that point and vm exclude each other, which the API rightly refuses
        case.validate_response(response, checks=CHECKS)


def test_stateful_workflows() -> None:
    Workflow.run(
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
