"""The outcome of a queued job's run, kept by the server for the remote CLI
(services/job_outcomes.py, vmvault/outcomes.py): recorded in the job's journal once the run
has returned, as the document a local run prints; none for a job that never ran."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain.errors import JobNotFound
from vmvault.jobs.server import record_outcome


@pytest.fixture()
def services(tmp_path: Path) -> Services:
    s = bootstrap(Settings.from_env({"VMVAULT_HOME": str(tmp_path)}))
    s.vaults.create("main", "local", None)
    s.queue.on_outcome = partial(record_outcome, s)  # as the server's workers do
    return s


def test_a_queued_runs_outcome_is_kept_after_it_ends(services: Services) -> None:
    job = services.queue.submit_gc(None)
    assert services.job_outcomes.get(job.id)[1:] == (False, None)  # not run yet
    claimed = services.queue.claim_next()
    assert claimed is not None and claimed.id == job.id
    done = services.queue.execute(claimed)
    assert done.state.value == "completed"
    shown, recorded, outcome = services.job_outcomes.get(job.id)
    assert shown.id == job.id and recorded
    assert outcome is not None and outcome["result"]["chunks_removed"] == 0
    assert set(outcome["result"]) >= {"chunks_scanned", "points_purged", "bytes_removed"}
    # verify: what it healed and found damaged (nothing here), from its journal
    verify = services.queue.submit_verify(None)
    claimed = services.queue.claim_next()
    assert claimed is not None and claimed.id == verify.id
    services.queue.execute(claimed)
    assert services.job_outcomes.get(verify.id)[1:] == (True, {"healed": [], "damaged": []})


def test_a_job_cancelled_while_queued_has_no_outcome(services: Services) -> None:
    job = services.queue.submit_gc(None)
    services.jobs.cancel(job.id)
    assert services.queue.claim_next() is None
    assert services.job_outcomes.get(job.id)[1:] == (False, None)
    with pytest.raises(JobNotFound):
        services.job_outcomes.get(job.id + 100)
