"""The append-only access log: the store only ever inserts into it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from kbaudit.domain import KeyId, OrgId
from kbaudit.store.tables import access_log


@dataclass(frozen=True, slots=True)
class AccessEntry:
    org_id: OrgId
    key_id: KeyId
    action: str
    route: str
    at: datetime
    outcome: str = "ok"
    result_count: int | None = None
    client_address: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class AccessLogRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def append(self, entry: AccessEntry) -> None:
        self._connection.execute(
            insert(access_log).values(
                org_id=entry.org_id,
                key_id=entry.key_id,
                action=entry.action,
                route=entry.route,
                details=entry.details,
                result_count=entry.result_count,
                outcome=entry.outcome,
                client_address=entry.client_address,
                at=entry.at,
            )
        )

    def entries(self, org_id: OrgId) -> list[AccessEntry]:
        rows = self._connection.execute(
            select(access_log).where(access_log.c.org_id == org_id).order_by(access_log.c.id)
        )
        return [
            AccessEntry(
                org_id=OrgId(row.org_id),
                key_id=KeyId(row.key_id),
                action=row.action,
                route=row.route,
                at=row.at,
                outcome=row.outcome,
                result_count=row.result_count,
                client_address=row.client_address,
                details=row.details or {},
            )
            for row in rows
        ]
