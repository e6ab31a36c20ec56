"""Notifications end to end: real failed backup jobs on a real SQLite catalog, the outbox,
delivery to a real local HTTP receiver and a real local SMTP server (tests/e2e/conftest.py),
retries, overdue episodes, the CLI and the API.

The failed backup is a real one: a VM registered on a libvirt host nobody listens on
(``qemu+tcp://127.0.0.1:9``) fails ``HOST_UNREACHABLE`` in a few milliseconds, no lab needed.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import CliRunner, save_vm
from tests.e2e.conftest import MailReceiver, WebhookReceiver, new_address
from vmvault.api.app import create_app
from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain.access import Principal, Role
from vmvault.domain.errors import ChunkCorrupt
from vmvault.domain.job import JobState, JobType
from vmvault.domain.notification import MAX_ATTEMPTS, SUBSCRIBABLE, Channel, Delivery, Event
from vmvault.domain.retention import Retention
from vmvault.domain.vm import VmState
from vmvault.jobs.server import Server

DEAD_HOST = "qemu+tcp://127.0.0.1:9/system"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def smtp_env(smtp: MailReceiver) -> dict[str, str]:
    return {
        "VMVAULT_SMTP_HOST": "127.0.0.1",
        "VMVAULT_SMTP_PORT": str(smtp.port),
        "VMVAULT_SMTP_FROM": "vmvault@test.example",
    }


def make_services(home: Path, smtp: MailReceiver, clock: Callable[[], datetime] | None) -> Services:
    # this process is the node of the dead host: its backups are run, and fail there
    env = {"VMVAULT_HOME": str(home), "VMVAULT_NODE_HOST": DEAD_HOST, **smtp_env(smtp)}
    return bootstrap(Settings.from_env(env), clock)


def unreachable_vm(services: Services, name: str) -> None:
    """A registered VM whose host refuses connections: its backup fails HOST_UNREACHABLE."""
    vm = replace(save_vm(services, name, VmState.REGISTERED), host_uri=DEAD_HOST)
    with services._uow() as uow:
        if uow.hosts.get(DEAD_HOST) is None:
            uow.hosts.add(DEAD_HOST, "local", "dead", services.clock())
        uow.vms.save(vm)
        uow.commit()


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def services(tmp_path: Path, smtp: MailReceiver, clock: Clock) -> Services:
    svc = make_services(tmp_path / "home", smtp, clock)
    svc.vaults.create("main", "local", None)
    return svc


def test_failed_backup_reaches_the_webhook_and_the_mailbox(
    services: Services, webhook: WebhookReceiver, smtp: MailReceiver
) -> None:
    unreachable_vm(services, "web")
    path, address = webhook.new_path(), new_address()
    n = services.notifications
    hook = n.add_target("main", Channel.WEBHOOK, webhook.url(path), (Event.FAILED,))
    mail = n.add_target("main", Channel.EMAIL, address, (Event.FAILED, Event.OVERDUE))
    n.add_target("main", Channel.EMAIL, new_address(), (Event.WARNINGS,))  # not this event

    [outcome] = services.backups.backup("main", ["web"])
    job = outcome.job
    assert job.state is JobState.FAILED and job.error_code == "HOST_UNREACHABLE"
    # written with the job's end, before anything was sent: one row per interested target
    pending = n.outbox()
    assert {(o.target.id, o.state) for o in pending} == {
        (hook.id, Delivery.PENDING),
        (mail.id, Delivery.PENDING),
    }
    assert not webhook.at(path) and not smtp.to(address)

    delivered = n.deliver_due()
    assert sorted(o.state.value for o in delivered) == ["sent", "sent"]
    [post] = webhook.at(path)
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["X-Vmvault-Event"] == "failed"
    body = post.body
    assert body["event"] == "failed" and body["vault"] == "main"
    assert body["vm"] == {"uuid": job.vm_uuid, "name": job.vm_name}
    assert body["job"]["id"] == job.id and body["job"]["state"] == "failed"
    assert body["job"]["error"]["code"] == "HOST_UNREACHABLE"
    assert "127.0.0.1:9" in body["job"]["error"]["message"]
    [message] = smtp.to(address)
    assert message["From"] == "vmvault@test.example"
    assert message["Subject"] == f"[vmvault] {job.vm_name}: backup failed (job {job.id})"
    text = message.get_content()
    assert f"error: HOST_UNREACHABLE: {job.message}" in text
    assert f"remedy: {job.remedy}" in text
    assert f"vmvault jobs show {job.id}" in text
    # delivered once: nothing is due any more
    assert n.deliver_due() == []
    assert len(webhook.at(path)) == 1 and len(smtp.to(address)) == 1


def test_a_webhook_answering_500_twice_gets_the_message_on_the_third_try(
    services: Services, webhook: WebhookReceiver, clock: Clock
) -> None:
    unreachable_vm(services, "web")
    path = webhook.new_path(500, 500)
    n = services.notifications
    n.add_target("main", Channel.WEBHOOK, webhook.url(path), (Event.FAILED,))
    services.backups.backup("main", ["web"])

    [first] = n.deliver_due()
    assert first.state is Delivery.PENDING and first.attempts == 1
    assert "HTTP 500" in (first.last_error or "")
    assert n.deliver_due() == []  # backing off: not due before its delay
    clock.advance(30)
    [second] = n.deliver_due()
    assert second.state is Delivery.PENDING and second.attempts == 2
    clock.advance(59)
    assert n.deliver_due() == []  # the second delay is twice the first
    clock.advance(1)
    [third] = n.deliver_due()
    assert third.state is Delivery.SENT and third.attempts == 3
    posts = webhook.at(path)
    assert [p.status for p in posts] == [500, 500, 200]
    assert posts[0].body == posts[2].body  # the same message each time
    [row] = n.outbox()
    assert row.state is Delivery.SENT and row.attempts == 3 and row.sent_at == clock.now


def test_a_receiver_that_never_answers_2xx_ends_failed(
    services: Services, webhook: WebhookReceiver, clock: Clock
) -> None:
    unreachable_vm(services, "web")
    path = webhook.new_path(*([503] * 20))
    n = services.notifications
    n.add_target("main", Channel.WEBHOOK, webhook.url(path), (Event.FAILED,))
    services.backups.backup("main", ["web"])
    for _ in range(MAX_ATTEMPTS):
        n.deliver_due()
        clock.advance(3600)
    [row] = n.outbox()
    assert row.state is Delivery.FAILED and row.attempts == MAX_ATTEMPTS
    assert "HTTP 503" in (row.last_error or "")
    assert len(webhook.at(path)) == MAX_ATTEMPTS
    assert n.deliver_due() == []


def test_a_job_of_another_vault_or_a_cancelled_one_notifies_nobody(
    services: Services, webhook: WebhookReceiver
) -> None:
    services.vaults.create("other", "local", None)
    path = webhook.new_path()
    services.notifications.add_target("other", Channel.WEBHOOK, webhook.url(path), (Event.FAILED,))
    unreachable_vm(services, "web")  # its vault is main
    services.backups.backup("main", ["web"])
    assert services.notifications.outbox() == []


def test_overdue_is_notified_once_per_episode(
    services: Services, webhook: WebhookReceiver, clock: Clock
) -> None:
    services.policies.create("main", "nightly", "daily@02:00", "UTC", Retention(daily=7))
    vm = save_vm(services, "db", VmState.PROTECTED, policy="nightly")
    with services._uow() as uow:
        uow.vms.save(replace(vm, protected_since=clock.now - timedelta(days=3)))
        uow.commit()
    path = webhook.new_path()
    n = services.notifications
    n.add_target("main", Channel.WEBHOOK, webhook.url(path), (Event.OVERDUE,))
    _count, flagged = services.dashboard.attention("main")
    assert [a.reason for a in flagged] == ["never-backed-up"]  # the dashboard's own rule

    assert n.check_overdue() == 1
    clock.advance(60)
    assert n.check_overdue() == 0  # the same episode, a minute later
    clock.advance(86400)
    assert n.check_overdue() == 0  # still the same episode a day later
    n.deliver_due()
    [post] = webhook.at(path)
    assert post.body["event"] == "overdue" and post.body["never_backed_up"] is True
    assert post.body["vm"]["name"] == "host/db" and post.body["policy"] == "nightly"
    assert "protection configured at" in post.body["detail"]
    clock.advance(28 * 86400)
    assert n.prune() == 0 and n.check_overdue() == 0  # kept 30 days: still the same episode
    clock.advance(2 * 86400)
    assert n.prune() == 1 and n.check_overdue() == 1  # then a reminder, once a month


def test_notify_cli_add_list_test_remove(
    cli: CliRunner, home: Path, webhook: WebhookReceiver, smtp: MailReceiver
) -> None:
    svc = make_services(home, smtp, None)
    svc.vaults.create("main", "local", None)
    svc.close()
    env = smtp_env(smtp)
    path, address = webhook.new_path(), new_address()
    r = cli("notify", "add", "--vault", "main", "--webhook", webhook.url(path), "--json")
    assert r.code == 0, r.stderr
    hook = r.json()
    assert hook["events"] == ["failed", "overdue", "verify-failed"]  # the default
    r = cli("notify", "add", "--email", address, "--events", "failed,warnings", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["channel"] == "email" and r.json()["events"] == ["failed", "warnings"]
    listed = cli("notify", "list", "--json").json()
    assert [t["address"] for t in listed] == [f"http://127.0.0.1:{webhook.port}/…", address]

    r = cli("notify", "test", env=env)
    assert r.code == 0, r.stderr
    assert r.stdout.count(": sent") == 2
    [post] = webhook.at(path)
    assert post.body["event"] == "test" and post.body["target"] == hook["id"]
    [mail] = smtp.to(address)
    assert mail["Subject"] == "[vmvault] test message for vault main"
    assert "This is a test message from vmvault" in mail.get_content()

    r = cli("notify", "test", str(hook["id"]), env=env)  # one target only
    assert r.code == 0 and len(webhook.at(path)) == 2 and len(smtp.to(address)) == 1

    r = cli("notify", "test")  # no SMTP server configured: the e-mail target fails
    assert r.code == 1
    assert "error SMTP_NOT_CONFIGURED" in r.stderr and "VMVAULT_SMTP_HOST" in r.stderr

    r = cli("notify", "add", "--webhook", "ftp://x", "--events", "failed")
    assert r.code == 2 and "INVALID_INPUT" in r.stderr
    r = cli("notify", "add", "--webhook", webhook.url(path), "--events", "failed,bogus")
    assert r.code == 2 and "--events" in r.stderr
    assert r.stdout == "" and len(cli("notify", "list", "--json").json()) == 2

    assert cli("notify", "remove", str(hook["id"])).code == 0
    assert [t["channel"] for t in cli("notify", "list", "--json").json()] == ["email"]
    r = cli("notify", "remove", str(hook["id"]))
    assert r.code == 2 and "NOTIFY_TARGET_NOT_FOUND" in r.stderr


def test_notify_test_of_an_unreachable_webhook_fails(
    services: Services, webhook: WebhookReceiver
) -> None:
    dead = f"http://127.0.0.1:{webhook.port + 1 if webhook.port < 65535 else 1}/x"
    bad_port = "http://127.0.0.1:99999/x"  # urllib's own error, not an OSError
    for url in (dead, bad_port):
        target = services.notifications.add_target("main", Channel.WEBHOOK, url, (Event.FAILED,))
        [result] = services.notifications.test(target.id)
        assert result.error is not None and result.error.code == "NOTIFY_DELIVERY_FAILED"


TOKENS = {
    "c": Principal("carol", Role.CONTRIBUTOR),
    "r": Principal("rita", Role.READER),
}


def test_notifications_api(services: Services, webhook: WebhookReceiver) -> None:
    api = TestClient(create_app(services, authenticate=TOKENS.get))
    c, r = {"Authorization": "Bearer c"}, {"Authorization": "Bearer r"}
    path = webhook.new_path()
    assert api.get("/api/v1/notifications").status_code == 401
    assert api.get("/api/v1/notifications", headers=r).status_code == 403
    created = api.post(
        "/api/v1/notifications",
        json={"webhook": webhook.url(path), "events": ["failed", "approval"]},
        headers=c,
    )
    assert created.status_code == 201, created.text
    doc = created.json()
    assert doc["vault"] == "main" and doc["events"] == ["failed", "approval"]
    assert api.get("/api/v1/notifications", headers=c).json() == [doc]
    bad = api.post(
        "/api/v1/notifications",
        json={"webhook": webhook.url(path), "email": "a@b.example", "events": ["failed"]},
        headers=c,
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_INPUT"
    tested = api.post("/api/v1/notifications/test", json={"id": doc["id"]}, headers=c)
    assert tested.status_code == 200 and tested.json()[0]["ok"] is True
    assert webhook.at(path)[0].body["event"] == "test"
    both = api.post(
        "/api/v1/notifications/test", json={"id": doc["id"], "vault": "main"}, headers=c
    )
    assert both.status_code == 400 and "not both" in both.json()["error"]["message"]
    as_text = api.post("/api/v1/notifications/test", json={"id": str(doc["id"])}, headers=c)
    assert as_text.status_code == 400  # strict: "7" is no id
    listed = api.post(
        "/api/v1/notifications", json={"webhook": webhook.url(path), "events": "failed"}, headers=c
    )
    assert listed.status_code == 400  # strict: a string is no list
    spec = api.get("/openapi.json").json()["components"]["schemas"]
    events = spec["TargetCreate"]["properties"]["events"]["items"]["enum"]
    assert events == [e.value for e in SUBSCRIBABLE]
    gone = api.delete(f"/api/v1/notifications/{doc['id']}", headers=c)
    assert gone.status_code == 200 and gone.json()["id"] == doc["id"]
    missing = api.delete(f"/api/v1/notifications/{doc['id']}", headers=c)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOTIFY_TARGET_NOT_FOUND"


def test_the_server_notifier_delivers_a_failed_backup(
    tmp_path: Path, webhook: WebhookReceiver, smtp: MailReceiver
) -> None:
    """``vmvault serve``'s notifier loop: a backup queued and run by a worker fails, and the
    webhook gets the message without anyone calling the service."""
    env = {"VMVAULT_HOME": str(tmp_path / "home"), "VMVAULT_GC_SCHEDULE": "off", **smtp_env(smtp)}
    settings = Settings.from_env(env | {"VMVAULT_NODE_HOST": DEAD_HOST})
    setup = bootstrap(settings)
    setup.vaults.create("main", "local", None)
    unreachable_vm(setup, "web")
    path = webhook.new_path()
    setup.notifications.add_target("main", Channel.WEBHOOK, webhook.url(path), (Event.FAILED,))
    server = Server(settings, workers=1, poll=0.1, notify_poll=0.1, stop_timeout=10)
    server.start()
    try:
        [job] = setup.queue.submit_backup("main", ["web"])
        server.wake.set()
        deadline = time.monotonic() + 90  # a busy 2-core CI host
        while not webhook.at(path) and time.monotonic() < deadline:
            time.sleep(0.1)
        [post] = webhook.at(path)
        assert post.body["job"]["id"] == job.id and post.body["event"] == "failed"
        assert server.health()["notifier"]["status"] == "up"
    finally:
        server.stop()
        setup.close()


def test_warnings_and_verify_failures_reach_the_targets_that_want_them(
    services: Services, webhook: WebhookReceiver, smtp: MailReceiver
) -> None:
    """Jobs driven through the real JobRunner on the real catalog: a backup that completes
    with warnings and a verify that fails."""
    vm = save_vm(services, "app", VmState.REGISTERED)
    path, address = webhook.new_path(), new_address()
    n = services.notifications
    n.add_target("main", Channel.WEBHOOK, webhook.url(path), (Event.WARNINGS,))
    n.add_target("main", Channel.EMAIL, address, (Event.VERIFY_FAILED,))

    def warn(ctx) -> None:  # type: ignore[no-untyped-def]
        ctx.warn("disk vdb skipped: it is excluded")

    def corrupt(ctx) -> None:  # type: ignore[no-untyped-def]
        raise ChunkCorrupt(chunk="ab" * 32, why="its digest differs")

    warned = services.runner.run(JobType.BACKUP, "main", vm.uuid, vm.label, warn).job
    failed = services.runner.run(JobType.VERIFY, "main", None, None, corrupt).job
    assert warned.state is JobState.COMPLETED_WITH_WARNINGS and failed.state is JobState.FAILED
    assert sorted(o.message.event.value for o in n.outbox()) == ["verify-failed", "warnings"]
    n.deliver_due()
    [post] = webhook.at(path)
    assert post.body["event"] == "warnings" and post.body["job"]["id"] == warned.id
    assert post.body["job"]["warnings"] == ["disk vdb skipped: it is excluded"]
    [mail] = smtp.to(address)
    assert mail["Subject"] == f"[vmvault] vault main: verify failed (job {failed.id})"
    assert f"error: {failed.error_code}: {failed.message}" in mail.get_content()


def test_the_overdue_check_skips_a_vault_that_is_gone(
    services: Services, webhook: WebhookReceiver
) -> None:
    """Targets of a vault no longer in the catalog must not stop the notifier's check."""
    with services._uow() as uow:
        uow.notifications.add_target(
            "gone", Channel.WEBHOOK, webhook.url(webhook.new_path()), (Event.OVERDUE,),
            services.clock(),
        )  # fmt: skip
        uow.commit()
    assert services.notifications.check_overdue() == 0


def test_a_webhook_urls_password_goes_as_basic_auth_and_is_never_shown(
    cli: CliRunner,
    home: Path,
    webhook: WebhookReceiver,
    smtp: MailReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``http://user:pass@host/path``: the receiver gets ``Authorization: Basic``, and neither
    the password nor the path (a Slack-like secret) appears in any output, log or outbox row."""
    caplog.set_level("DEBUG")
    secret, token = "s3cret-pw", "path-token-42"
    path = f"/hook/{token}"
    webhook.script[path] = []
    good = f"http://hookuser:{secret}@127.0.0.1:{webhook.port}{path}"
    dead = f"http://hookuser:{secret}@127.0.0.1:1/{token}"
    svc = make_services(home, smtp, None)
    svc.vaults.create("main", "local", None)
    n = svc.notifications
    n.add_target("main", Channel.WEBHOOK, good, (Event.FAILED,))
    n.add_target("main", Channel.WEBHOOK, dead, (Event.FAILED,))
    unreachable_vm(svc, "web")
    svc.backups.backup("main", ["web"])
    done = n.deliver_due()
    assert sorted(o.state.value for o in done) == ["pending", "sent"]
    [post] = webhook.at(path)
    expected = base64.b64encode(f"hookuser:{secret}".encode()).decode()
    assert post.headers["Authorization"] == f"Basic {expected}"
    rows = n.outbox()
    [failed] = [o for o in rows if o.state is Delivery.PENDING]
    assert failed.last_error and "127.0.0.1:1/…" in failed.last_error
    svc.close()

    listed = cli("notify", "list", "--json")
    tested = cli("notify", "test")
    assert tested.code == 1 and ": sent" in tested.stdout
    shown = [
        listed.stdout,
        listed.stderr,
        tested.stdout,
        tested.stderr,
        caplog.text,
        *(o.last_error or "" for o in rows),
    ]
    assert [t["address"] for t in listed.json()] == [
        f"http://127.0.0.1:{webhook.port}/…",
        "http://127.0.0.1:1/…",
    ]
    for text in shown:
        assert secret not in text and token not in text and "hookuser" not in text


def test_the_outbox_through_the_cli_and_the_api(
    cli: CliRunner, home: Path, webhook: WebhookReceiver, smtp: MailReceiver
) -> None:
    """``notify outbox`` and ``GET /notifications/outbox``: one document, newest first, the
    state, attempts and last error of a message whose receiver answered 500."""
    svc = make_services(home, smtp, None)
    svc.vaults.create("main", "local", None)
    unreachable_vm(svc, "web")
    path = webhook.new_path(500)
    n = svc.notifications
    hook = n.add_target("main", Channel.WEBHOOK, webhook.url(path), (Event.FAILED,))
    other = n.add_target("main", Channel.EMAIL, new_address(), (Event.WARNINGS,))
    svc.backups.backup("main", ["web"])
    [tried] = n.deliver_due()
    assert tried.state is Delivery.PENDING
    api = TestClient(create_app(svc, authenticate=TOKENS.get))
    c = {"Authorization": "Bearer c"}
    r = cli("notify", "outbox", "--json")
    assert r.code == 0, r.stderr
    [row] = r.json()
    assert row["target"]["id"] == hook.id and row["event"] == "failed"
    assert row["state"] == "pending" and row["attempts"] == 1
    assert "HTTP 500" in row["last_error"] and row["sent_at"] is None
    assert "backup failed" in row["subject"]
    answer = api.get("/api/v1/notifications/outbox", headers=c)
    assert answer.status_code == 200 and answer.json() == [row]
    assert api.get(f"/api/v1/notifications/outbox?target={other.id}", headers=c).json() == []
    text = cli("notify", "outbox")
    assert text.code == 0 and "pending" in text.stdout and "HTTP 500" in text.stdout
    missing = api.get("/api/v1/notifications/outbox?target=999", headers=c)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOTIFY_TARGET_NOT_FOUND"
    assert api.get("/api/v1/notifications/outbox?limit=0", headers=c).status_code == 400
    assert cli("notify", "outbox", "--limit", "0").code == 2
    assert (
        api.get("/api/v1/notifications/outbox", headers={"Authorization": "Bearer r"}).status_code
        == 403
    )
    svc.close()
