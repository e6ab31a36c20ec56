"""The server's threads under supervision, over a real SQLite catalog (no libvirt): what
``/api/v1/health`` says when all is well, when the scheduler crashes or is stuck, and when a
worker crashes; and the port that is bound before anything starts."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from vmvault.bootstrap import bootstrap
from vmvault.config import ListenAddress, Settings
from vmvault.domain.access import Role
from vmvault.domain.errors import InvalidSetting, ListenFailed
from vmvault.domain.notification import Channel, Event, sample_message
from vmvault.jobs.server import Server, bind
from vmvault.jobs.supervisor import RestartPolicy
from vmvault.notify.webhook import WebhookSender
from vmvault.services.queue import QueueService
from vmvault.services.scheduler import SchedulerService


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    s = Settings.from_env({"VMVAULT_HOME": str(tmp_path / "home"), "VMVAULT_GC_SCHEDULE": "off"})
    bootstrap(s).vaults.create("main", "local", None)
    return s


@pytest.fixture()
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.stop()


def until(check: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


def client(server: Server, settings: Settings) -> TestClient:
    """The server's API, with a reader's token made through the token service."""
    _token, text = bootstrap(settings).tokens.create(
        f"reader-{len(server.services.tokens.list_tokens())}", Role.READER, "local:test"
    )
    return TestClient(server.app(), headers={"Authorization": f"Bearer {text}"})


def start(servers: list[Server], settings: Settings, **kw: Any) -> tuple[Server, TestClient]:
    server = Server(settings, tick=0.05, poll=0.05, stop_timeout=10, **kw)
    servers.append(server)
    server.start()
    return server, client(server, settings)


def test_health_reports_every_component_and_the_last_tick(
    settings: Settings, servers: list[Server]
) -> None:
    server, api = start(servers, settings)
    until(lambda: server.scheduler.last_beat)
    r = api.get("/api/v1/health")
    assert r.status_code == 200
    doc = r.json()
    assert doc["status"] == "ok" and doc["jobs_running"] == 0 and "down" not in doc
    comps = doc["components"]
    assert set(comps) == {"worker-0", "worker-1", "scheduler", "notifier", "api", "catalog"}
    assert all(c["status"] == "up" for c in comps.values()), comps
    assert comps["scheduler"]["last_beat"].startswith(str(server.scheduler.last_beat)[:10])
    assert comps["worker-0"] == {
        "status": "up", "state": "running", "restarts": 0, "last_error": None, "job": None
    }  # fmt: skip


def test_a_scheduler_whose_tick_raises_is_down_restarted_then_stops_the_server(
    settings: Settings, servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = {"n": 0}

    def broken_tick(self: SchedulerService) -> list[Any]:
        ticks["n"] += 1
        raise RuntimeError("tick exploded")

    monkeypatch.setattr(SchedulerService, "tick", broken_tick)
    fatal = threading.Event()
    policy = RestartPolicy(backoff=0.3, max_backoff=0.3, limit=3, window=60)  # time to look
    server = Server(settings, tick=0.05, poll=0.05, stop_timeout=10, restarts=policy)
    servers.append(server)
    server.on_fatal = fatal.set
    api = client(server, settings)
    server.start()
    r = until(lambda: (r := api.get("/api/v1/health")).status_code == 503 and r)
    doc = r.json()
    assert doc["status"] == "down" and doc["down"] == ["scheduler"]
    sched = doc["components"]["scheduler"]
    assert sched["state"] == "restarting" and sched["last_beat"] is None
    assert sched["problem"] == "restarting after RuntimeError: tick exploded"
    assert doc["components"]["worker-0"]["status"] == "up"  # the workers go on meanwhile
    assert fatal.wait(10), "the server never gave up"
    assert ticks["n"] == 4  # three restarts, then one crash too many
    assert server.failure is not None and server.failure.code == "SERVER_COMPONENT_FAILED"
    assert server.failure.text == (
        "the server's scheduler crashed 4 times within 60 s; the server stopped: "
        "RuntimeError: tick exploded"
    )
    assert server.stopping.is_set()  # the workers stop claiming


def test_a_stuck_scheduler_is_reported_down(
    settings: Settings, servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    original = SchedulerService.tick
    calls = {"n": 0}

    def tick(self: SchedulerService) -> list[Any]:
        calls["n"] += 1
        if calls["n"] > 1:
            release.wait(10)  # e.g. a catalog lock that is never released
        return original(self)

    monkeypatch.setattr(SchedulerService, "tick", tick)
    _server, api = start(servers, settings, stale_after=0.3)
    until(lambda: calls["n"] > 1)
    r = until(lambda: (r := api.get("/api/v1/health")).status_code == 503 and r)
    sched = r.json()["components"]["scheduler"]
    assert sched["state"] == "running" and sched["last_beat"] is not None
    assert sched["problem"].startswith("no sign of life for ")
    release.set()
    until(lambda: api.get("/api/v1/health").status_code == 200)


def test_a_worker_that_crashes_is_restarted_and_the_queue_still_runs(
    settings: Settings, servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = QueueService.claim_next
    failed = {"n": 0}

    def claim_next(self: QueueService) -> Any:
        if failed["n"] < 1:
            failed["n"] += 1
            raise OSError("disk I/O error")
        return original(self)

    monkeypatch.setattr(QueueService, "claim_next", claim_next)
    server, api = start(servers, settings)
    [worker] = until(
        lambda: [c for n, c in server.supervisor.components.items() if c.restarts and "worker" in n]
    )
    assert worker.last_error == "OSError: disk I/O error"
    job = bootstrap(settings).queue.submit_gc(None, origin="cli")
    until(lambda: api.get(f"/api/v1/jobs/{job.id}").json()["state"] == "completed")
    assert TestClient(server.app()).get(f"/api/v1/jobs/{job.id}").status_code == 401
    until(lambda: api.get("/api/v1/health").status_code == 200)


def test_a_server_refuses_bad_settings_before_it_opens_anything(settings: Settings) -> None:
    bad = replace(settings, gc_schedule="daily@25:00")
    with pytest.raises(InvalidSetting, match="VMVAULT_GC_SCHEDULE='daily@25:00'"):
        Server(bad)
    with pytest.raises(InvalidSetting, match="VMVAULT_JOB_WORKERS='0'"):
        Server(replace(settings, job_workers=0))


def test_bind_holds_the_port_or_says_why_not() -> None:
    sock = bind(ListenAddress("127.0.0.1", _free_port()))
    try:
        port = sock.getsockname()[1]
        with pytest.raises(ListenFailed) as caught:
            bind(ListenAddress("127.0.0.1", port))
        assert caught.value.text == f"cannot listen on 127.0.0.1:{port}: the port is in use"
        assert caught.value.kind == "failure"  # exit 1
    finally:
        sock.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_slow_receiver_never_makes_the_notifier_look_stuck(
    settings: Settings, servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notifier beats before each message it tries: eight messages to a receiver that
    takes 0.25 s each (2 s in all) keep it up with a 0.6 s staleness limit."""
    svc = bootstrap(settings)
    target = svc.notifications.add_target(
        "main", Channel.WEBHOOK, "http://127.0.0.1:9/hook", (Event.FAILED,)
    )
    now = datetime.now(UTC)
    with svc._uow() as uow:  # eight messages due now
        for n in range(8):
            uow.notifications.enqueue(target, sample_message(target, now + timedelta(n)), now)
        uow.commit()
    sent: list[str] = []

    def slow_send(_self: WebhookSender, _target: Any, message: Any) -> None:
        time.sleep(0.25)
        sent.append(message.key)

    monkeypatch.setattr(WebhookSender, "send", slow_send)
    server = Server(
        settings, tick=0.05, poll=0.05, stop_timeout=10, notify_poll=0.05, notify_stale_after=0.6
    )
    servers.append(server)
    api = client(server, settings)
    server.start()
    statuses = []
    deadline = time.monotonic() + 10
    while len(sent) < 8 and time.monotonic() < deadline:
        statuses.append(api.get("/api/v1/health").json()["components"]["notifier"]["status"])
        time.sleep(0.05)
    assert len(sent) == 8 and set(statuses) == {"up"}, statuses
