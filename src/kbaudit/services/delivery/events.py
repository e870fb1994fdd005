"""Export events: queued in the outbox by the transaction that made them happen, so that an
event is never sent for what did not commit, and never lost for what did."""

from __future__ import annotations

import uuid
from datetime import datetime

import orjson

from kbaudit.document import instant_text
from kbaudit.services.exports.jobs import view_of
from kbaudit.store.models import ExportJob, OutboxItem, OutboxKind, OutboxStatus
from kbaudit.store.unit_of_work import UnitOfWork

EVENT_TYPES = (
    "export.succeeded",
    "export.partial",
    "export.failed",
    "export.expired",
    "export.delivered",
    "export.delivery_failed",
)
COPY_FILES = "export.copy"  # the outbox item of a destination copy


def follow_export(uow: UnitOfWork, job: ExportJob, now: datetime) -> None:
    """The job has just ended or expired: queue the copy to its destination (first, so that
    the event shows the copy pending), and tell the webhooks."""
    if job.destination and job.status.downloadable:
        uow.delivery.add_items(
            [_item(job, OutboxKind.DESTINATION, job.destination, COPY_FILES, now)]
        )
    export_event(uow, job, f"export.{job.status}", now)


def export_event(uow: UnitOfWork, job: ExportJob, event_type: str, now: datetime) -> None:
    """Queue ``event_type`` for every webhook of the organization that asked for it."""
    hooks = [hook for hook in uow.delivery.webhooks(job.org_id) if event_type in hook.events]
    if not hooks:
        return
    body = orjson.dumps(
        {
            "type": event_type,
            "timestamp": instant_text(now),
            "data": view_of(uow, job).as_dict(),  # no download tokens: none are minted
        },
        option=orjson.OPT_UTC_Z,
    )
    uow.delivery.add_items(
        [_item(job, OutboxKind.WEBHOOK, hook.id, event_type, now, body) for hook in hooks]
    )


def _item(
    job: ExportJob,
    kind: OutboxKind,
    target: str,
    event_type: str,
    now: datetime,
    body: bytes | None = None,
) -> OutboxItem:
    return OutboxItem(
        # The Standard Webhooks message id: the same on every retry, so receivers can dedupe.
        id=f"msg_{uuid.uuid4().hex}",
        org_id=job.org_id,
        kind=kind,
        target=target,
        export_id=job.id,
        event_type=event_type,
        body=body,
        status=OutboxStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
