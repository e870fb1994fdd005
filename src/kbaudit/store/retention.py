"""Retention policies, and deleting records in bounded batches."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from kbaudit.domain import OrgId
from kbaudit.store.models import Archive, Month, RetentionPolicy
from kbaudit.store.tables import (
    archives,
    organizations,
    retention_policies,
)


class RetentionRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def policy(self, org_id: OrgId, *, lock: bool = False) -> RetentionPolicy | None:
        """``lock``: hold the row until the transaction ends (SQLite's writers take turns
        already; it has no row locks to take)."""
        query = select(retention_policies).where(retention_policies.c.org_id == org_id)
        if lock:
            query = query.with_for_update()
        row = self._connection.execute(query).one_or_none()
        return None if row is None else RetentionPolicy.of(row)

    def add_policy(self, policy: RetentionPolicy) -> None:
        self._connection.execute(insert(retention_policies).values(**policy.as_dict()))

    def update_policy(self, policy: RetentionPolicy) -> None:
        """Write the policy over the organization's (it keeps its id and first date)."""
        values = policy.as_dict(without=("id", "org_id", "created_at"))
        p = retention_policies.c
        self._connection.execute(
            update(retention_policies).where(p.id == policy.id).values(**values)
        )

    def organization_ids(self) -> list[OrgId]:
        return [OrgId(row.id) for row in self._connection.execute(select(organizations.c.id))]

    # -- whole months, where the engine keeps records in one partition a month --------------

    def record_months(self) -> list[Month]:
        """The months whose records can go whole; none unless the engine partitions them."""
        return []

    def make_months_ahead(self, now: datetime) -> None:
        """Make this month's and the next's place for records before writers need it."""

    def hold_month(self, month: Month) -> int:
        """Count the month's records, then keep any more from coming in until the end of
        the transaction."""
        raise NotImplementedError("records are not kept by month on this engine")

    def organizations_in(self, month: Month) -> list[OrgId]:
        raise NotImplementedError("records are not kept by month on this engine")

    def drop_month(self, month: Month) -> None:
        raise NotImplementedError("records are not kept by month on this engine")

    def add_archive(self, archive: Archive) -> None:
        self._connection.execute(insert(archives).values(**archive.as_dict()))

    def archives(self, org_id: OrgId | None = None) -> list[Archive]:
        query = select(archives).order_by(archives.c.created_at)
        if org_id is not None:
            query = query.where(archives.c.org_id == org_id)
        return [Archive.of(row) for row in self._connection.execute(query)]

    def archive(self, archive_id: str) -> Archive | None:
        query = select(archives).where(archives.c.id == archive_id)
        row = self._connection.execute(query).one_or_none()
        return None if row is None else Archive.of(row)
