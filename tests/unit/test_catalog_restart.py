"""PostgreSQL restarted under a running node (issue 15, "Faults"): the job in flight ends
cleanly (completed, or failed with its end written), the queue and the heartbeat work again,
and nothing needs the node to restart — at the catalog and queue level, on the session's real
PostgreSQL (tests/pglab.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from tests.pglab import Postgres
from vmvault.domain.job import JobState, JobType
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import open_catalog
from vmvault.services.jobs import JobContext, JobQueries, JobRunner
from vmvault.services.nodes import NodeIdentity, NodeService
from vmvault.services.queue import queue_job


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture()
def engine(postgres: Postgres) -> Iterator[Engine]:
    name = postgres.create()
    eng = open_catalog(postgres.url(name))
    yield eng
    eng.dispose()
    if not postgres.cluster.running():
        postgres.cluster.start()
    postgres.drop(name)


def _node(engine: Engine) -> tuple[JobRunner, NodeService]:
    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine)

    node = NodeService(uow, now, NodeIdentity("n1", "qemu:///system", "m1", 1, now()))
    return JobRunner(uow, now, 1, lambda _p: True, node), node


def test_a_job_running_across_a_restart_ends_cleanly_and_the_node_goes_on(
    engine: Engine, postgres: Postgres
) -> None:
    runner, node = _node(engine)

    def work(ctx: JobContext) -> str:
        ctx.log("before the restart")
        postgres.cluster.restart()  # every open connection is cut
        ctx.log("after the restart")  # a new connection: the pool tests the old one first
        ctx.progress(10, 10)
        return "done"

    out = runner.run(JobType.VERIFY, "main", None, None, work)
    assert out.job.state is JobState.COMPLETED and out.result == "done"
    job, log = JobQueries(lambda: SqlUnitOfWork(engine), now).show(out.job.id)
    assert job.state is JobState.COMPLETED
    assert any("after the restart" in line for line in log)
    # the node carries on: its heartbeat, the queue
    node.beat()
    with SqlUnitOfWork(engine) as uow:
        queue_job(uow, "gc", "main", None, {}, "test", now())
        uow.commit()
    with SqlUnitOfWork(engine) as uow:
        claimed = uow.jobs.claim_next(1, now(), "n1", now())
        uow.commit()
    assert claimed is not None and claimed.node == "n1"


def test_a_transaction_cut_by_a_restart_fails_and_the_next_one_works(
    engine: Engine, postgres: Postgres
) -> None:
    runner, node = _node(engine)

    def work(ctx: JobContext) -> None:
        with SqlUnitOfWork(engine) as uow:  # a transaction open while the server restarts
            uow.jobs.append_log(ctx.job.id, "inside", now())
            postgres.cluster.restart()
            uow.jobs.append_log(ctx.job.id, "lost", now())  # the connection is gone: raises
            uow.commit()

    out = runner.run(JobType.VERIFY, "main", None, None, work)
    # the job failed as an internal error, its end written on a fresh connection
    assert out.job.state is JobState.FAILED and out.job.error_code == "INTERNAL_ERROR"
    job, log = JobQueries(lambda: SqlUnitOfWork(engine), now).show(out.job.id)
    assert job.state is JobState.FAILED and "internal error" in "\n".join(log)
    # the cut transaction was rolled back whole: neither of its lines is in the log
    assert not any(line.endswith((" inside", " lost")) for line in log)
    assert node.beat() == 0  # the heartbeat works; the ended job is no longer renewed


def test_progress_and_cancel_polls_outlast_the_server_being_down(
    engine: Engine, postgres: Postgres
) -> None:
    """Progress is no state that matters after a crash: a report the catalog cannot take is
    skipped (the next one writes it), a cancel poll keeps its last answer; the job goes on."""
    runner, _ = _node(engine)

    def work(ctx: JobContext) -> str:
        postgres.cluster.stop()
        try:
            ctx.progress(1, 10)  # not written, not raised
            assert not ctx.cancelled()
        finally:
            postgres.cluster.start()
        ctx.progress(10, 10)
        return "done"

    out = runner.run(JobType.VERIFY, "main", None, None, work)
    assert out.job.state is JobState.COMPLETED and out.result == "done"
    job, _ = JobQueries(lambda: SqlUnitOfWork(engine), now).show(out.job.id)
    assert job.state is JobState.COMPLETED and job.bytes_done == 10


def test_a_job_failing_while_the_server_is_down_has_its_end_written_once_it_is_back(
    engine: Engine, postgres: Postgres
) -> None:
    """The journal write cut by the restart fails the job; its end — the traceback's log line,
    then the final state — is tried again until the server answers (``END_RETRY``), not left
    to the lease's recovery 30 to 60 s later."""
    runner, node = _node(engine)
    back = threading.Timer(2.0, postgres.cluster.start)

    def work(ctx: JobContext) -> None:
        postgres.cluster.stop()
        back.start()
        ctx.record("planned", point="p")  # the server is down: raises

    try:
        out = runner.run(JobType.VERIFY, "main", None, None, work)
    finally:
        back.join()
    assert out.job.state is JobState.FAILED and out.job.error_code == "INTERNAL_ERROR"
    job, log = JobQueries(lambda: SqlUnitOfWork(engine), now).show(out.job.id)
    assert job.state is JobState.FAILED and job.ended_at is not None
    assert any("internal error" in line for line in log), log
    assert node.beat() == 0  # ended: no longer renewed


def test_the_heartbeat_survives_the_server_being_down(engine: Engine, postgres: Postgres) -> None:
    _, node = _node(engine)
    node.beat()
    postgres.cluster.stop()
    try:
        with pytest.raises(Exception):  # noqa: B017 - the driver's error, whatever it is
            node.beat()
    finally:
        postgres.cluster.start()
    node.beat()  # no restart of the node: the pool replaced its dead connections
    with SqlUnitOfWork(engine) as uow:
        assert uow.nodes.get("n1") is not None


def test_an_answer_of_the_catalog_is_not_asked_again() -> None:
    """``written`` waits out a catalog that is away, not an answer: a job the catalog says
    is gone raises at once (one call), where a lost connection is tried again."""
    from vmvault.domain.errors import JobNotFound
    from vmvault.services.jobs import written

    calls = []

    def gone() -> None:
        calls.append(1)
        raise JobNotFound(job=7)

    with pytest.raises(JobNotFound):
        written(gone, "job 7's end")
    assert calls == [1]
