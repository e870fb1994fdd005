"""Working the outbox: every worker host polls for due items and claims them one at a time;
an item is sent at least once, retried with backoff and jitter, and given up only after
``retry_for`` (more than a day).

Receivers are the customers' own, and some are slow: an attempt takes up to the timeout
(10 s). ``Outbox`` keeps ``SENDERS`` attempts in flight, at most ``PER_ORG`` of any one
organization, and starts each as a slot frees rather than round by round: one
organization's slow receivers hold its own slots only, and every other organization's
events go out while they wait."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from kbaudit.services.delivery.deps import DeliveryDeps
from kbaudit.services.delivery.destinations import copy_export, describe_store_error
from kbaudit.services.delivery.events import export_event
from kbaudit.services.delivery.webhooks import Attempt, send_event
from kbaudit.store.models import OutboxItem, OutboxKind, OutboxStatus
from kbaudit.store.unit_of_work import UnitOfWork

log = structlog.get_logger("kbaudit.delivery")
BATCH = 20
# Attempts in flight at once, and of one organization: a receiver that never answers holds
# one slot for its timeout, not every event behind it.
SENDERS = 8
PER_ORG = 2


class Outbox:
    """Attempts on threads of their own, started as slots free up (see the module)."""

    def __init__(self, deps: DeliveryDeps, senders: int = SENDERS, per_org: int = PER_ORG):
        self._deps = deps
        self._senders = senders
        self._per_org = per_org
        self._pool = ThreadPoolExecutor(senders, "kbaudit-send")
        self._lock = threading.Lock()
        self._in_flight: Counter[int] = Counter()

    def send_due(self) -> int:
        """Start an attempt at each due item there is a slot for; how many were started."""
        now = self._deps.clock()
        with self._deps.store.reading() as uow:
            due = uow.delivery.due(now, BATCH, self._per_org)
        started = 0
        for item_id, kind, org_id in due:
            with self._lock:
                full = sum(self._in_flight.values()) >= self._senders
                if full or self._in_flight[org_id] >= self._per_org:
                    continue
                self._in_flight[org_id] += 1
            item = _claim(self._deps, item_id, kind, now)
            if item is None:
                self._done(org_id)
                continue
            self._pool.submit(self._send, item)
            started += 1
        return started

    def close(self) -> None:
        """Wait for the attempts in flight."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, item: OutboxItem) -> None:
        try:
            _record(self._deps, item, _attempt(self._deps, item))
        except Exception as exc:  # recorded nowhere: the item's lease brings it back
            log.error("delivery_attempt_failed", item=item.id, error=repr(exc))
        finally:
            self._done(item.org_id)

    def _done(self, org_id: int) -> None:
        with self._lock:
            self._in_flight[org_id] -= 1


def deliver_due(deps: DeliveryDeps) -> int:
    """One round, waited for: every item due now that the slots allow; how many were tried
    (the CLI's and the tests' way to send now)."""
    with Outbox(deps) as outbox:
        return outbox.send_due()


def _claim(deps: DeliveryDeps, item_id: str, kind: str, now: datetime) -> OutboxItem | None:
    """The item, now this worker's for one attempt; None when another worker took it."""
    lease = deps.config.event_lease if kind == OutboxKind.WEBHOOK else deps.config.copy_lease
    with deps.store.writing() as uow:
        item = uow.delivery.claim(item_id, now, now + lease)
        uow.commit()
    return item


def next_wait(config_first: float, longest: float, attempts: int) -> float:
    """Exponential backoff with jitter: half the step for sure, the other half at random,
    so that receivers that came back are not hit by every sender at once."""
    step = min(longest, config_first * 2 ** max(0, attempts - 1))
    return float(step / 2 + random.uniform(0, step / 2))


def _attempt(deps: DeliveryDeps, item: OutboxItem) -> Attempt:
    now = deps.clock()
    if item.kind is OutboxKind.WEBHOOK:
        return send_event(deps, item, now)
    try:
        impossible = copy_export(deps, item)
    except Exception as exc:  # the store's errors, the network's, a refused endpoint
        return Attempt(False, error=describe_store_error(exc)[:500])
    if impossible:
        return Attempt(False, error=impossible, final=True)
    return Attempt(True)


def _record(deps: DeliveryDeps, item: OutboxItem, attempt: Attempt) -> None:
    now = deps.clock()
    config = deps.config
    wait = timedelta(
        seconds=next_wait(config.first_retry_seconds, config.longest_wait_seconds, item.attempts)
    )
    given_up = attempt.final or (now + wait > item.created_at + config.retry_for)
    status = (
        OutboxStatus.DELIVERED
        if attempt.ok
        else OutboxStatus.FAILED
        if given_up
        else OutboxStatus.PENDING
    )
    ended = replace(
        item,
        status=status,
        last_status_code=attempt.status_code,
        last_error=attempt.error,
        next_attempt_at=now + wait if status is OutboxStatus.PENDING else None,
        ended_at=None if status is OutboxStatus.PENDING else now,
    )
    with deps.store.writing() as uow:
        recorded = uow.delivery.record_attempt(ended)
        if recorded and item.kind is OutboxKind.DESTINATION and status is not OutboxStatus.PENDING:
            _tell_about_copy(uow, item, status, now)
        uow.commit()
    log.info(
        "delivery_attempt",
        item=item.id,
        kind=item.kind,
        event_type=item.event_type,
        export_id=item.export_id,
        attempt=item.attempts,
        status=status,
        status_code=attempt.status_code,
        error=attempt.error,
    )


def _tell_about_copy(
    uow: UnitOfWork, item: OutboxItem, status: OutboxStatus, now: datetime
) -> None:
    job = uow.exports.job(item.export_id)
    if job is not None:
        delivered = status is OutboxStatus.DELIVERED
        export_event(uow, job, "export.delivered" if delivered else "export.delivery_failed", now)
