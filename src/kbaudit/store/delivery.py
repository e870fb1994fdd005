"""Webhooks, destinations and the outbox of what is to be sent to them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select, update

from kbaudit.domain import OrgId
from kbaudit.store.models import Destination, OutboxItem, OutboxKind, OutboxStatus, Webhook
from kbaudit.store.tables import destinations, outbox, webhooks


class DeliveryRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    # -- webhooks -------------------------------------------------------------------------

    def add_webhook(self, hook: Webhook) -> None:
        self._connection.execute(insert(webhooks).values(**hook.as_dict()))

    def webhooks(self, org_id: OrgId) -> list[Webhook]:
        w = webhooks.c
        query = select(webhooks).where(w.org_id == org_id).order_by(w.created_at, w.id)
        return [Webhook.of(row) for row in self._connection.execute(query)]

    def webhook(self, org_id: OrgId, webhook_id: str) -> Webhook | None:
        w = webhooks.c
        query = select(webhooks).where(w.org_id == org_id, w.id == webhook_id)
        row = self._connection.execute(query).one_or_none()
        return None if row is None else Webhook.of(row)

    def remove_webhook(self, org_id: OrgId, webhook_id: str) -> bool:
        """Its pending events are given up with it."""
        w = webhooks.c
        query = delete(webhooks).where(w.org_id == org_id, w.id == webhook_id)
        if self._connection.execute(query).rowcount != 1:
            return False
        o = outbox.c
        self._connection.execute(
            delete(outbox).where(o.kind == OutboxKind.WEBHOOK, o.target == webhook_id)
        )
        return True

    # -- destinations ---------------------------------------------------------------------

    def put_destination(self, destination: Destination) -> None:
        """Add the destination, or replace the one of that name (keeping when it was made)."""
        d = destinations.c
        key = (d.org_id == destination.org_id, d.name == destination.name)
        changed = destination.as_dict(without=("created_at",))
        if self._connection.execute(update(destinations).where(*key).values(**changed)).rowcount:
            return
        self._connection.execute(insert(destinations).values(**destination.as_dict()))

    def destinations(self, org_id: OrgId) -> list[Destination]:
        d = destinations.c
        query = select(destinations).where(d.org_id == org_id).order_by(d.name)
        return [Destination.of(row) for row in self._connection.execute(query)]

    def destination(self, org_id: OrgId, name: str) -> Destination | None:
        d = destinations.c
        query = select(destinations).where(d.org_id == org_id, d.name == name)
        row = self._connection.execute(query).one_or_none()
        return None if row is None else Destination.of(row)

    def remove_destination(self, org_id: OrgId, name: str) -> bool:
        d = destinations.c
        query = delete(destinations).where(d.org_id == org_id, d.name == name)
        return bool(self._connection.execute(query).rowcount == 1)

    # -- the outbox -----------------------------------------------------------------------

    def add_items(self, items: Sequence[OutboxItem]) -> None:
        if items:
            self._connection.execute(insert(outbox), [item.as_dict() for item in items])

    def item(self, item_id: str) -> OutboxItem | None:
        row = self._connection.execute(select(outbox).where(outbox.c.id == item_id)).one_or_none()
        return None if row is None else OutboxItem.of(row)

    def items_for(self, kind: OutboxKind, target: str, limit: int) -> list[OutboxItem]:
        o = outbox.c
        query = (
            select(outbox)
            .where(o.kind == kind, o.target == target)
            .order_by(o.created_at.desc(), o.id.desc())
            .limit(limit)
        )
        return [OutboxItem.of(row) for row in self._connection.execute(query)]

    def destination_item(self, export_id: str) -> OutboxItem | None:
        o = outbox.c
        query = select(outbox).where(o.export_id == export_id, o.kind == OutboxKind.DESTINATION)
        row = self._connection.execute(query).first()
        return None if row is None else OutboxItem.of(row)

    def due(self, now: datetime, limit: int, per_org: int) -> list[tuple[str, str, int]]:
        """(id, kind, org_id) of the items due now, the longest waiting first, at most
        ``per_org`` of each organization's: one with thousands waiting cannot fill a round."""
        o = outbox.c
        place = func.row_number().over(partition_by=o.org_id, order_by=o.next_attempt_at).label("n")
        waiting = (
            select(o.id, o.kind, o.org_id, o.next_attempt_at, place)
            .where(o.status == OutboxStatus.PENDING, o.next_attempt_at <= now)
            .subquery()
        )
        query = (
            select(waiting.c.id, waiting.c.kind, waiting.c.org_id)
            .where(waiting.c.n <= per_org)
            .order_by(waiting.c.next_attempt_at)
            .limit(limit)
        )
        return [(row.id, row.kind, row.org_id) for row in self._connection.execute(query)]

    def claim(self, item_id: str, now: datetime, lease_until: datetime) -> OutboxItem | None:
        """Take a due item for one attempt; its next attempt moves to the lease's end, so it
        is due again if this worker never reports back."""
        o = outbox.c
        claimed = self._connection.execute(
            update(outbox)
            .where(o.id == item_id, o.status == OutboxStatus.PENDING, o.next_attempt_at <= now)
            .values(attempts=o.attempts + 1, next_attempt_at=lease_until)
        ).rowcount
        return self.item(item_id) if claimed == 1 else None

    def record_attempt(self, ended: OutboxItem) -> bool:
        """Record how the claimed attempt ended (``ended``: the claimed item as the attempt
        left it), unless another attempt has begun since."""
        o = outbox.c
        query = (
            update(outbox)
            .where(o.id == ended.id, o.status == OutboxStatus.PENDING, o.attempts == ended.attempts)
            .values(
                status=ended.status,
                last_status_code=ended.last_status_code,
                last_error=ended.last_error,
                next_attempt_at=ended.next_attempt_at,
                ended_at=ended.ended_at,
            )
        )
        return bool(self._connection.execute(query).rowcount == 1)
