"""Retention policies, and deleting records in bounded batches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from kbaudit.domain import OrgId
from kbaudit.store import partitions
from kbaudit.store.partitions import Month
from kbaudit.store.records import json_line
from kbaudit.store.tables import (
    archives,
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

    def oldest_before(
        self, org_id: OrgId, cutoff: datetime, limit: int, *, json_lines: bool = False
    ) -> list[Row[Any]]:
        """Up to ``limit`` of the organization's oldest records created before ``cutoff``:
        (seq, id), and with ``json_lines`` each record as a JSON object with its children."""
        r = retrieval_records.c
        line = json_line(self._connection.dialect.name).label("record")
        columns = [r.seq, r.id, *([line] if json_lines else [])]
        query = (
            select(*columns)
            .where(r.org_id == org_id, r.created_at < cutoff)
            .order_by(r.created_at, r.id)
            .limit(limit)
        )
        return list(self._connection.execute(query))

    def delete_records(self, org_id: OrgId, victims: list[Row[Any]]) -> int:
        """Delete these records (rows with seq and id) and their scopes and refs."""
        ids = [row.id for row in victims]
        for child in (retrieval_scopes, retrieval_refs):
            self._connection.execute(
                delete(child).where(child.c.org_id == org_id, child.c.record_id.in_(ids))
            )
        result = self._connection.execute(
            delete(retrieval_records).where(
                retrieval_records.c.org_id == org_id, retrieval_records.c.id.in_(ids)
            )
        )
        return result.rowcount

    # -- whole months (PostgreSQL) --------------------------------------------------------

    def record_months(self) -> list[Month]:
        if self._connection.dialect.name != "postgresql":
            return []
        return partitions.months_present(self._connection)

    def organizations_in(self, month: Month) -> list[OrgId]:
        return [OrgId(org) for org in partitions.organizations_in(self._connection, month)]

    def drop_month(self, month: Month) -> int:
        return partitions.drop_month(self._connection, month)

    def add_archive(self, values: dict[str, Any]) -> None:
        self._connection.execute(insert(archives).values(**values))

    def archives(self, org_id: OrgId | None = None) -> list[Row[Any]]:
        query = select(archives).order_by(archives.c.created_at)
        if org_id is not None:
            query = query.where(archives.c.org_id == org_id)
        return list(self._connection.execute(query))

    def archive(self, archive_id: str) -> Row[Any] | None:
        query = select(archives).where(archives.c.id == archive_id)
        return self._connection.execute(query).one_or_none()
