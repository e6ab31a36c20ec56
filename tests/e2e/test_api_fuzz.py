"""Schemathesis against the API's own OpenAPI document, in process (ASGI).

Every operation gets generated requests — valid ones and, in negative mode, ones that break
the schema — over a catalog with a vault, a protected, a registered and a discovered VM, a
policy and a recovery point (so lists and the dashboard have rows to check), and every
response must be: no 5xx, a status the route declares, a body of the declared schema
and content type, and a 4xx for input the schema forbids.  Then the stateful run chains
calls along the OpenAPI links (a queued job's id into show and cancel).

Bounded: a fixed number of examples per operation, derandomized (the same cases every run)
and without Hypothesis' example database, so a run takes the same time and never flakes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from tests.conftest import save_vm
from vmvault.api.app import create_app
from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain.errors import NotifyDeliveryFailed
from vmvault.domain.job import JobState
from vmvault.domain.notification import Message, Target
from vmvault.domain.recovery_point import Consistency, Method, PointDisk, RecoveryPoint
from vmvault.domain.retention import Retention
from vmvault.domain.vm import VmState

MAX_EXAMPLES = int(os.environ.get("VMVAULT_FUZZ_EXAMPLES", "50"))

CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.negative_data_rejection,
]


class Undelivered:
    """The fuzzer's notification sender: it adds webhooks at URLs it makes up, so nothing
    leaves this host (delivery has its own tests: tests/e2e/test_notifications.py)."""

    def send(self, target: Target, message: Message) -> None:
        raise NotifyDeliveryFailed("not sent by the fuzz test", channel="any", address="-")


def make_services() -> Services:
    home = Path(tempfile.mkdtemp(prefix="vmvault-fuzz-")) / "home"
    svc = bootstrap(Settings.from_env({"VMVAULT_HOME": str(home)}), notifier=Undelivered())
    svc.vaults.create("main", "local", None)
    web = save_vm(svc, "web", VmState.REGISTERED, host="h1")
    save_vm(svc, "db", VmState.DISCOVERED, host="h1")
    save_vm(svc, "app", VmState.REGISTERED, host="h2")
    svc.policies.create(None, "daily", "daily@03:00", "UTC", Retention(daily=7))
    [configured] = svc.protection.protect(None, ["web"], "daily").configured
    assert configured.job.state is JobState.COMPLETED
    point = RecoveryPoint(
        id="20261201T030000Z-web", vault="main", vm_uuid=web.uuid, vm_name=web.name,
        created_at=svc.clock(), consistency=Consistency.CRASH, method=Method.OFFLINE,
        frozen_ms=0, checkpoint=None, disks=[PointDisk("vda", 1 << 30)],
    )  # fmt: skip
    with svc._uow() as uow:
        uow.points.add(point)
        uow.commit()
    return svc


def reset(svc: Services) -> None:
    """Cancel every job still queued, so that each case starts from the same state (a VM
    without an active job): the same request gets the same status every time, which
    Hypothesis needs to replay and shrink a failure."""
    for state in (JobState.QUEUED, JobState.IN_PROGRESS):
        for job in svc.jobs.list_jobs(state=state):
            svc.jobs.cancel(job.id)


SERVICES = make_services()
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(SERVICES))
if True:
    schema.config.generation.update(
        modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
        database="none",
    )


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation(case: schemathesis.Case) -> None:
    reset(SERVICES)
    case.call_and_validate(checks=CHECKS)


class Workflow(schema.as_state_machine()):  # type: ignore[misc]
    """Chains of calls along the OpenAPI links: queue a job, show it, cancel it (twice)."""

    def setup(self) -> None:
        reset(SERVICES)

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
