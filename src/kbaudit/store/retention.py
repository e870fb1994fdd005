"""Retention policies, and deleting records in bounded batches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from kbaudit.domain import OrgId
from kbaudit.store.tables import (
    organizations,
    retention_policies,
    retrieval_records,
    retrieval_refs,
    retrieval_scopes,
)


class RetentionRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def policy(self, org_id: OrgId) -> Row[Any] | None:
        query = select(retention_policies).where(retention_policies.c.org_id == org_id)
        return self._connection.execute(query).one_or_none()

    def add_policy(self, values: dict[str, Any]) -> None:
        self._connection.execute(insert(retention_policies).values(**values))

    def update_policy(self, org_id: OrgId, values: dict[str, Any]) -> None:
        self._connection.execute(
            update(retention_policies).where(retention_policies.c.org_id == org_id).values(**values)
        )

    def organization_ids(self) -> list[OrgId]:
        return [OrgId(row.id) for row in self._connection.execute(select(organizations.c.id))]

    def delete_older_than(self, org_id: OrgId, cutoff: datetime, limit: int) -> int:
        """Delete up to ``limit`` of the organization's oldest records created before
        ``cutoff``, with their scopes and refs. Returns how many records went."""
        r = retrieval_records.c
        victims = list(
            self._connection.execute(
                select(r.seq, r.id)
                .where(r.org_id == org_id, r.created_at < cutoff)
                .order_by(r.created_at, r.id)
                .limit(limit)
            )
        )
        if not victims:
            return 0
        ids = [row.id for row in victims]
        for child in (retrieval_scopes, retrieval_refs):
            self._connection.execute(
                delete(child).where(child.c.org_id == org_id, child.c.record_id.in_(ids))
            )
        self._connection.execute(
            delete(retrieval_records).where(r.seq.in_([row.seq for row in victims]))
        )
        return len(victims)
