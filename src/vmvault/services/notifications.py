"""Notifications: targets per vault and event, the outbox, its delivery (docs/notifications.md).

How a message travels:

1. **written** — in the transaction that ends a job (:meth:`NotificationService.job_ended`,
   called by :meth:`JobRunner.finish <vmvault.services.jobs.JobRunner.finish>`), one outbox
   row per target of the job's vault that wants the event; the overdue check
   (:meth:`check_overdue`) writes its rows the same way, keyed by the episode so that an
   episode is written once per target.  A job's end and its notification are committed
   together or not at all: a crash cannot lose one or send a notification for a job that
   did not end;
2. **delivered** — by the notifier loop of ``vmvault serve`` (:meth:`deliver_due`), outside
   any transaction, one message at a time through the :class:`NotificationSender` port;
3. **marked** — ``sent``, or after a failure ``pending`` again with a growing delay
   (:func:`~vmvault.domain.notification.retry_delay`), or ``failed`` for good after
   :data:`~vmvault.domain.notification.MAX_ATTEMPTS` failures.

A crash between 2 and 3 sends the message again at the next start (at least once).  One
notifier per catalog: two servers on one catalog could both send a due message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from vmvault.domain.errors import (
    InvalidInput,
    NotifyDeliveryFailed,
    NotifyNoTarget,
    NotifyTargetNotFound,
    VmvaultError,
)
from vmvault.domain.inputs import check_id
from vmvault.domain.job import Job
from vmvault.domain.notification import (
    Channel,
    Delivery,
    Event,
    Lateness,
    Message,
    Outgoing,
    Target,
    after_failure,
    check_address,
    job_events,
    job_message,
    overdue_message,
    sample_message,
    shown_address,
)
from vmvault.services.context import Service, ServiceContext
from vmvault.services.dashboard import DashboardService
from vmvault.services.ports import NotificationSender, UnitOfWork

log = logging.getLogger("vmvault.notify")

#: The attention reasons that are an overdue episode (services/dashboard.py).
OVERDUE_REASONS = ("overdue", "never-backed-up")
#: How long delivered and failed messages stay in the outbox.
KEEP_OUTBOX = timedelta(days=30)
#: The most messages one look at the outbox lists.
MAX_OUTBOX_PAGE = 1000


@dataclass(frozen=True)
class SendResult:
    target: Target
    error: VmvaultError | None


class NotificationService(Service):
    def __init__(
        self,
        ctx: ServiceContext,
        sender: NotificationSender,
        dashboard: DashboardService,
        retry_base: timedelta = timedelta(seconds=30),
    ) -> None:
        super().__init__(ctx)
        self.sender = sender
        self.dashboard = dashboard
        self.retry_base = retry_base

    # --- targets ----------------------------------------------------------------------------

    def add_target(
        self, vault: str | None, channel: Channel, address: str, events: tuple[Event, ...]
    ) -> Target:
        address = check_address(channel, address)
        name = self.vaults.resolve(vault).name
        with self.uow() as uow:
            target = uow.notifications.add_target(name, channel, address, events, self.clock())
            uow.commit()
        return target

    def list_targets(self, vault: str | None = None) -> list[Target]:
        name = self.vaults.resolve(vault).name if vault else None
        with self.uow() as uow:
            return uow.notifications.targets(name)

    def get_target(self, target_id: int) -> Target:
        check_id(target_id, "target id")
        with self.uow() as uow:
            target = uow.notifications.target(target_id)
        if target is None:
            raise NotifyTargetNotFound(target=target_id)
        return target

    def remove_target(self, target_id: int) -> Target:
        target = self.get_target(target_id)
        with self.uow() as uow:
            uow.notifications.remove_target(target_id)
            uow.commit()
        return target

    def outbox(self, limit: int = 100, target_id: int | None = None) -> list[Outgoing]:
        """The newest ``limit`` (1 … :data:`MAX_OUTBOX_PAGE`) messages of the outbox, newest
        first: pending, sent and failed ones (of one target, which must exist)."""
        if not 1 <= limit <= MAX_OUTBOX_PAGE:
            raise InvalidInput(f"give 1 … {MAX_OUTBOX_PAGE}", what="limit")
        if target_id is not None:
            self.get_target(target_id)
        with self.uow() as uow:
            return uow.notifications.outbox(limit, target_id)

    # --- writing the outbox -----------------------------------------------------------------

    def job_ended(self, uow: UnitOfWork, job: Job) -> int:
        """Write the messages the end of ``job`` produces, in the caller's transaction (the
        one that ends the job); how many were written."""
        written = 0
        for event in job_events(job):
            message = job_message(event, job)
            written += self._enqueue(uow, message)
        return written

    def emit(self, message: Message) -> int:
        """Write ``message`` for every target of its vault that wants its event (the overdue
        check and the approvals call this)."""
        with self.uow() as uow:
            written = self._enqueue(uow, message)
            uow.commit()
        return written

    def _enqueue(self, uow: UnitOfWork, message: Message) -> int:
        now = self.clock()
        targets = [t for t in uow.notifications.targets(message.vault) if t.wants(message.event)]
        return sum(uow.notifications.enqueue(t, message, now) for t in targets)

    def check_overdue(self) -> int:
        """Write one message per overdue episode (the dashboard's attention rule) and target
        that wants ``overdue``; an episode already written is skipped.  How many were written."""
        with self.uow() as uow:
            vaults = sorted(
                {t.vault for t in uow.notifications.targets() if t.wants(Event.OVERDUE)}
            )
        written = 0
        for vault in vaults:
            try:
                _count, flagged = self.dashboard.attention(vault)
            except VmvaultError as exc:  # e.g. the vault was deleted: its targets wait
                log.warning("overdue check of vault %s: %s", vault, exc.text)
                continue
            for a in flagged:
                if a.reason not in OVERDUE_REASONS or a.since is None:
                    continue
                late = Lateness(
                    vault, a.vm, a.name, a.policy, a.since, a.detail, a.reason != "overdue"
                )
                written += self.emit(overdue_message(late))
        return written

    def prune(self) -> int:
        """Forget the delivered and failed messages older than :data:`KEEP_OUTBOX`.  An
        overdue episode longer than that is notified again: a reminder, once a month."""
        with self.uow() as uow:
            gone = uow.notifications.prune(self.clock() - KEEP_OUTBOX)
            uow.commit()
        return gone

    # --- delivering -------------------------------------------------------------------------

    def deliver_due(
        self, limit: int = 50, beat: Callable[[], None] | None = None
    ) -> list[Outgoing]:
        """Try each due message once; what was tried, with its new state.  ``beat`` is called
        before each message is tried: a batch of slow receivers (up to ``limit`` × the timeout) is no
        sign of a stuck notifier (jobs/server.py)."""
        with self.uow() as uow:
            due = uow.notifications.due(self.clock(), limit)
        done = []
        for o in due:
            if beat is not None:
                beat()
            attempts = o.attempts + 1
            error = self._send(o.target, o.message)
            if error is None:
                now = self.clock()
                self._mark(o, Delivery.SENT, attempts, now, None, now)
                done.append(self._with(o, Delivery.SENT, attempts, None))
                continue
            state, nxt = after_failure(attempts, self.clock(), self.retry_base)
            self._mark(o, state, attempts, nxt, error.text, None)
            log.warning(
                "notification %s (%s) to target %s: attempt %d failed (%s)%s",
                o.id, o.message.event.value, o.target.id, attempts, error.text,
                ", giving up" if state is Delivery.FAILED else "",
            )  # fmt: skip
            done.append(self._with(o, state, attempts, error.text))
        return done

    def _send(self, target: Target, message: Message) -> VmvaultError | None:
        """Deliver once; the failure as data.  A sender's unexpected exception is a failed
        delivery too: one bad message must not stop the notifier."""
        try:
            self.sender.send(target, message)
        except VmvaultError as exc:
            return exc
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            return NotifyDeliveryFailed(
                detail, channel=target.channel.value, address=shown_address(target.address)
            )
        return None

    def _mark(
        self,
        o: Outgoing,
        state: Delivery,
        attempts: int,
        nxt: datetime,
        error: str | None,
        sent_at: datetime | None,
    ) -> None:
        with self.uow() as uow:
            uow.notifications.mark(o.id, state, attempts, nxt, error, sent_at)
            uow.commit()

    @staticmethod
    def _with(o: Outgoing, state: Delivery, attempts: int, error: str | None) -> Outgoing:
        return Outgoing(
            o.id, o.target, o.message, state, attempts, o.next_attempt_at, error, o.created_at
        )

    # --- testing ----------------------------------------------------------------------------

    def test(self, target_id: int | None = None, vault: str | None = None) -> list[SendResult]:
        """Send a test message now (not through the outbox) to one target, or to every target
        (of ``vault``); each target's outcome.  Not both: a target is named by its id alone."""
        if target_id is not None and vault is not None:
            raise InvalidInput("give a target's id or a vault, not both", what="the test's targets")
        if target_id is not None:
            targets = [self.get_target(target_id)]
        else:
            targets = self.list_targets(vault)
            if not targets:
                raise NotifyNoTarget(where=f" for vault {vault}" if vault else "")
        return [SendResult(t, self._send(t, sample_message(t, self.clock()))) for t in targets]
