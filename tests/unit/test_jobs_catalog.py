"""The job runner over a real catalog (SQLite and PostgreSQL): conflicts, orphans, final
states."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from vmvault.domain.errors import (
    DiscoveryInProgress,
    JobInterrupted,
    JobNotActive,
    OperationInProgress,
    TooManyDisks,
)
from vmvault.domain.job import Job, JobState, JobType
from vmvault.persistence.catalog import SqlUnitOfWork
from vmvault.persistence.engine import HEAD, alembic_config, current_revision, open_catalog
from vmvault.persistence.tables import metadata
from vmvault.services.jobs import JobContext, JobQueries, JobRunner, close_job, record_change


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture()
def engine(catalog_url: str):  # type: ignore[no-untyped-def]
    eng = open_catalog(catalog_url)
    yield eng
    eng.dispose()


def runner(engine, pid: int = 100, alive: bool = True) -> JobRunner:  # type: ignore[no-untyped-def]
    return JobRunner(lambda: SqlUnitOfWork(engine), now, pid, lambda _pid: alive)


def test_schema_matches_the_migrations(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_reopening_an_up_to_date_catalog_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    open_catalog(url).dispose()
    engine = open_catalog(url)
    assert current_revision(engine) == HEAD
    engine.dispose()


def test_head_constant_matches_the_migration_scripts() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_current_head() == HEAD


def test_completed_with_warnings_and_log(engine) -> None:  # type: ignore[no-untyped-def]
    def work(ctx: JobContext) -> int:
        ctx.log("step one")
        ctx.warn("careful")
        ctx.progress(5, 10)
        return 42

    out = runner(engine).run(JobType.REGISTER, "v", "uuid-1", "h/vm", work)
    assert out.result == 42 and out.error is None
    job, log = JobQueries(lambda: SqlUnitOfWork(engine), now).show(out.job.id)
    assert job.state is JobState.COMPLETED_WITH_WARNINGS
    assert job.warnings == ["careful"] and job.bytes_done == 5 and job.percent == 50.0
    assert any("step one" in line for line in log) and any("WARNING careful" in x for x in log)
    assert job.ended_at is not None and job.started_at is not None


def test_expected_failure_is_recorded_with_code_and_remedy(engine) -> None:  # type: ignore[no-untyped-def]
    def work(ctx: JobContext) -> None:
        raise TooManyDisks(vm="x", count=9, limit=8)

    out = runner(engine).run(JobType.REGISTER, "v", "u", "x", work)
    assert out.job.state is JobState.FAILED and out.job.error_code == "TOO_MANY_DISKS"
    assert "limit is 8" in (out.job.message or "") and out.job.remedy


def test_bug_becomes_internal_error_with_traceback_in_log(engine) -> None:  # type: ignore[no-untyped-def]
    def work(ctx: JobContext) -> None:
        raise ZeroDivisionError("boom")

    out = runner(engine).run(JobType.DISCOVERY, "v", None, None, work)
    assert out.job.error_code == "INTERNAL_ERROR" and "boom" in (out.job.message or "")
    _, log = JobQueries(lambda: SqlUnitOfWork(engine), now).show(out.job.id)
    assert any("Traceback" in line for line in log)


def test_second_job_on_a_vm_is_refused_then_allowed_after(engine) -> None:  # type: ignore[no-untyped-def]
    r = runner(engine)
    first = r.start(JobType.REGISTER, "v", "uuid-1", "h/vm")
    with pytest.raises(OperationInProgress) as exc:
        r.start(JobType.BACKUP, "v", "uuid-1", "h/vm")
    assert exc.value.code == "OPERATION_IN_PROGRESS"
    assert "another operation is in progress on this item" in exc.value.text
    assert f"job {first.id}" in exc.value.text
    r.start(JobType.REGISTER, "v", "uuid-2", "h/other")  # another VM is fine
    r.finish(first, None)
    r.start(JobType.BACKUP, "v", "uuid-1", "h/vm")


def test_one_discovery_per_vault(engine) -> None:  # type: ignore[no-untyped-def]
    r = runner(engine)
    r.start(JobType.DISCOVERY, "v1", None, None)
    with pytest.raises(DiscoveryInProgress):
        r.start(JobType.DISCOVERY, "v1", None, None)
    r.start(JobType.DISCOVERY, "v2", None, None)


def test_concurrent_claims_only_one_wins(engine) -> None:  # type: ignore[no-untyped-def]
    r = runner(engine)
    barrier = threading.Barrier(8)
    wins: list[int] = []
    refusals: list[str] = []

    def claim() -> None:
        barrier.wait()
        try:
            wins.append(r.start(JobType.REGISTER, "v", "same-vm", "vm").id)
        except OperationInProgress as exc:
            refusals.append(exc.code)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(refusals) == 7


def test_orphan_of_a_dead_process_is_closed_as_failed(engine) -> None:  # type: ignore[no-untyped-def]
    dead = runner(engine, pid=999_999).start(JobType.REGISTER, "v", "u", "vm")
    fresh = runner(engine, pid=5, alive=False).start(JobType.REGISTER, "v", "u", "vm")
    job, _ = JobQueries(lambda: SqlUnitOfWork(engine), now).show(dead.id)
    assert job.state is JobState.FAILED and job.error_code == "JOB_INTERRUPTED"
    assert fresh.state is JobState.IN_PROGRESS


def test_list_filters(engine) -> None:  # type: ignore[no-untyped-def]
    r = runner(engine)
    r.run(JobType.DISCOVERY, "v", None, None, lambda ctx: None)
    r.run(JobType.REGISTER, "v", "u", "vm", lambda ctx: ctx.warn("w"))
    q = JobQueries(lambda: SqlUnitOfWork(engine), now)
    assert [j.type for j in q.list_jobs(job_type=JobType.REGISTER)] == [JobType.REGISTER]
    assert len(q.list_jobs(state=JobState.COMPLETED)) == 1
    assert len(q.list_jobs(vm_uuid="u")) == 1
    from datetime import timedelta

    assert len(q.list_jobs(since=timedelta(hours=1))) == 2


def test_an_update_never_undoes_a_cancel_from_another_process(engine) -> None:  # type: ignore[no-untyped-def]
    r = runner(engine)
    job = r.start(JobType.BACKUP, "main", "vm-1", "vm-1")
    JobQueries(r.uow, now).cancel(job.id)  # another process asks to cancel
    job.bytes_done = 10  # this process still holds the in-progress copy and saves progress
    with r.uow() as uow:
        uow.jobs.update(job)
        uow.commit()
    with r.uow() as uow:
        saved = uow.jobs.get(job.id)
    assert saved is not None and saved.state is JobState.CANCELLING and saved.bytes_done == 10


def test_a_stale_active_copy_never_makes_an_ended_job_active_again(engine) -> None:  # type: ignore[no-untyped-def]
    r = runner(engine)
    job = r.start(JobType.BACKUP, "main", "vm-1", "vm-1")
    with r.uow() as uow:
        stale = uow.jobs.get(job.id)
    r.finish(job, None)  # the job's process ends it
    assert stale is not None
    for state in (JobState.IN_PROGRESS, JobState.CANCELLING):
        stale.state = state
        with r.uow() as uow:
            assert uow.jobs.update(stale) is False
            assert uow.jobs.update(stale, expect=JobState.IN_PROGRESS) is False
            uow.commit()
    with r.uow() as uow:
        saved = uow.jobs.get(job.id)
        assert uow.jobs.active() == []
    assert saved is not None and saved.state is JobState.COMPLETED and saved.ended_at is not None


def test_a_jobs_end_is_written_once_and_its_hooks_run_once(engine) -> None:  # type: ignore[no-untyped-def]
    """Recovery closed a job as interrupted (its lease had run out) while its process still
    ran: the process sees it as a cancel, and its own end is a log line, not a second end."""
    r = runner(engine)
    ended: list[tuple[int, JobState]] = []
    r.on_end.append(lambda _uow, job: ended.append((job.id, job.state)))
    job = r.start(JobType.BACKUP, "main", "vm-1", "vm-1")
    ctx = JobContext(r, job)
    assert not ctx.cancelled()
    with r.uow() as uow:  # recovery's close, from its own copy of the job
        theirs = uow.jobs.get(job.id)
        assert theirs is not None
        assert close_job(uow, theirs, JobState.FAILED, JobInterrupted(pid=1), now(), r.on_end)
        uow.commit()
    ctx._cancel_at = 0.0
    assert ctx.cancelled()  # the process stops its work
    r.finish(job, None)  # and its end changes nothing
    with r.uow() as uow:
        saved = uow.jobs.get(job.id)
        log = uow.jobs.log(job.id)
    assert saved is not None and saved.state is JobState.FAILED
    assert saved.error_code == "JOB_INTERRUPTED" and job.state is JobState.FAILED
    assert ended == [(job.id, JobState.FAILED)]
    assert log[-1].endswith("not ended completed: the job had already ended failed"), log
    # a job created ended (the scheduler's skipped backup, a recorded change) still ends once
    with r.uow() as uow:
        made = record_change(uow, JobType.REGISTER, "main", ("vm-2", "vm-2"), ["x"], now())
        uow.commit()
    with r.uow() as uow:
        again = uow.jobs.get(made.id)
    assert again is not None and again.state is JobState.COMPLETED and again.ended_at is not None


def test_a_hook_whose_statement_fails_leaves_the_jobs_end_written(engine) -> None:  # type: ignore[no-untyped-def]
    """An end hook (the outbox's) that fails in the catalog is a line of the job's log; on
    PostgreSQL its failed statement left the transaction unusable, so the job's end and that
    line failed with it, until each hook ran in a savepoint."""
    r = runner(engine)
    ended: list[int] = []

    def failing(uow: SqlUnitOfWork, job: Job) -> None:
        uow.conn.execute(text("SELECT * FROM no_such_table"))

    r.on_end.extend([failing, lambda _uow, job: ended.append(job.id)])
    job = r.start(JobType.BACKUP, "main", "vm-1", "vm-1")
    r.finish(job, None)
    with r.uow() as uow:
        saved = uow.jobs.get(job.id)
        log = uow.jobs.log(job.id)
    assert saved is not None and saved.state is JobState.COMPLETED
    assert ended == [job.id]  # the next hook ran
    assert any("after the end: " in line and "no_such_table" in line for line in log), log


@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_a_cancel_racing_the_jobs_end_never_reopens_it(engine) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL reads committed rows: the cancel reads ``in-progress``, the job's own process
    ends it before the cancel writes (as a set job cancels a child that is failing: the CI
    failure of test_backup_sets' rollback test).  A blind write turned the failed job into
    ``cancelling`` forever, and the next recovery took it for a job of a dead process.
    (SQLite's writers are serialized by BEGIN IMMEDIATE: the interleaving cannot happen.)"""
    r = runner(engine)
    job = r.start(JobType.BACKUP, "main", "vm-1", "vm-1")

    class EndsBetweenReadAndWrite(SqlUnitOfWork):
        ended = False

        def __enter__(self) -> SqlUnitOfWork:
            uow = super().__enter__()
            read = uow.jobs.get

            def get(job_id: int) -> Job | None:
                found = read(job_id)
                if not EndsBetweenReadAndWrite.ended:  # after the cancel's read
                    EndsBetweenReadAndWrite.ended = True
                    r.finish(job, TooManyDisks(vm="vm-1", count=9, limit=8))
                return found

            uow.jobs.get = get  # type: ignore[method-assign]
            return uow

    with pytest.raises(JobNotActive):
        JobQueries(lambda: EndsBetweenReadAndWrite(engine), now).cancel(job.id)
    with r.uow() as uow:
        saved = uow.jobs.get(job.id)
        assert uow.jobs.active() == []
    assert saved is not None and saved.state is JobState.FAILED


def test_the_journal_keeps_typed_steps_in_order_with_the_phase_log(engine) -> None:  # type: ignore[no-untyped-def]
    def work(ctx: JobContext) -> list[str]:
        ctx.record("point-chosen", point="20261201T000000Z-ab", checkpoint=None)
        ctx.phase("reading", disks=["vda", "vdb"])
        ctx.record("disk-written", target="vda", bytes=4096)
        return [s.step for s in ctx.steps()]

    out = runner(engine).run(JobType.BACKUP, "v", "uuid-j", "vm", work)
    assert out.result == ["point-chosen", "reading", "disk-written"]
    with SqlUnitOfWork(engine) as uow:
        steps = uow.jobs.steps(out.job.id)
        log = uow.jobs.log(out.job.id)
    assert [(s.step, s.data) for s in steps] == [
        ("point-chosen", {"point": "20261201T000000Z-ab", "checkpoint": None}),
        ("reading", {"disks": ["vda", "vdb"]}),
        ("disk-written", {"target": "vda", "bytes": 4096}),
    ]
    assert [s.seq for s in steps] == sorted(s.seq for s in steps)
    assert all(s.job_id == out.job.id for s in steps)
    # the phase is logged for people too, but recovery never reads that line
    assert any(line.endswith("phase: reading") for line in log)
    assert not any("point-chosen" in line for line in log)


def test_a_journal_step_that_json_cannot_hold_is_refused_before_it_is_written(engine) -> None:  # type: ignore[no-untyped-def]
    def work(ctx: JobContext) -> None:
        ctx.record("bad", when=datetime.now(UTC))

    out = runner(engine).run(JobType.BACKUP, "v", "uuid-k", "vm", work)
    assert out.job.error_code == "INTERNAL_ERROR" and "JSON" in (out.job.message or "")
    with SqlUnitOfWork(engine) as uow:
        assert uow.jobs.steps(out.job.id) == []
