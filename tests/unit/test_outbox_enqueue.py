"""A message is written to the outbox once per target and key, on SQLite and PostgreSQL, even
when two writers enqueue it at once — two nodes checking the same overdue episode
(persistence/upsert.py: one ``INSERT … ON CONFLICT DO NOTHING``; a check then an insert
failed on the (target, key) key on PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from tests.unit.fleet_world import fleet_services
from vmvault.domain.notification import Channel, Event, sample_message

AT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_a_message_is_written_once_even_by_two_writers_at_once(
    tmp_path: Path, catalog_url: str
) -> None:
    services = fleet_services(tmp_path / "home", catalog_url)
    try:
        services.vaults.create("main", "local", None)
        hook, mail = (
            services.notifications.add_target("main", channel, address, (Event.FAILED,))
            for channel, address in (
                (Channel.WEBHOOK, "http://127.0.0.1:9/hook"),
                (Channel.EMAIL, "ops@example.com"),
            )
        )
        message = sample_message(hook, AT)
        answers: list[bool] = []
        failed: list[BaseException] = []

        def enqueue_meanwhile() -> None:
            try:
                with services._uow() as uow:
                    answers.append(uow.notifications.enqueue(hook, message, AT))
                    uow.commit()
            except BaseException as e:
                failed.append(e)

        with services._uow() as uow:  # the first writer's row, not yet committed
            assert uow.notifications.enqueue(hook, message, AT)
            racing = threading.Thread(target=enqueue_meanwhile)
            racing.start()
            racing.join(1.0)  # it waits for the first's commit (SQLite: for the write lock)
            uow.commit()
        racing.join(30)
        assert not racing.is_alive() and failed == [] and answers == [False]
        with services._uow() as uow:
            assert not uow.notifications.enqueue(hook, message, AT)  # written: not again
            assert uow.notifications.enqueue(mail, message, AT)  # another target's own
            uow.commit()
        outbox = services.notifications.outbox()
        assert sorted((o.target.id, o.message.key) for o in outbox) == sorted(
            [(hook.id, message.key), (mail.id, message.key)]
        )
    finally:
        services.close()
