"""The append-only access log: the store only ever inserts into it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select

from kbaudit.domain import KeyId, OrgId
from kbaudit.store.tables import access_log, access_spools


@dataclass(frozen=True, slots=True)
class AccessEntry:
    org_id: OrgId
    key_id: KeyId
    action: str
    route: str  # as the edge named it: "GET /console/records/{ref}"
    at: datetime
    outcome: str = "ok"
    result_count: int | None = None
    client_address: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    edge: str | None = None  # api, console or cli; none before kbaudit kept it
    id: int | None = None  # once stored


class AccessLogRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def append(self, entries: Sequence[AccessEntry]) -> None:
        self._connection.execute(
            insert(access_log),
            [
                {
                    "org_id": entry.org_id,
                    "key_id": entry.key_id,
                    "action": entry.action,
                    "route": entry.route,
                    "edge": entry.edge,
                    "details": entry.details,
                    "result_count": entry.result_count,
                    "outcome": entry.outcome,
                    "client_address": entry.client_address,
                    "at": entry.at,
                }
                for entry in entries
            ],
        )

    def claim_spool(self, name: str) -> bool:
        """Record that a spool file's entries are in; False when they were already."""
        if self._connection.execute(
            select(access_spools).where(access_spools.c.name == name)
        ).first():
            return False
        self._connection.execute(insert(access_spools).values(name=name))
        return True

    def spools(self) -> list[str]:
        return list(self._connection.execute(select(access_spools.c.name)).scalars())

    def forget_spools(self, names: Sequence[str]) -> None:
        if names:
            self._connection.execute(delete(access_spools).where(access_spools.c.name.in_(names)))

    def entries(self, org_id: OrgId) -> list[AccessEntry]:
        query = select(access_log).where(access_log.c.org_id == org_id).order_by(access_log.c.id)
        return [_entry(row) for row in self._connection.execute(query)]

    def newest(self, org_id: OrgId, before: int | None, limit: int) -> list[AccessEntry]:
        """Up to ``limit`` entries, newest first, older than the entry ``before``."""
        a = access_log.c
        query = select(access_log).where(a.org_id == org_id).order_by(a.id.desc()).limit(limit)
        if before is not None:
            query = query.where(a.id < before)
        return [_entry(row) for row in self._connection.execute(query)]


def _entry(row: Row[Any]) -> AccessEntry:
    return AccessEntry(
        org_id=OrgId(row.org_id),
        key_id=KeyId(row.key_id),
        action=row.action,
        route=row.route,
        edge=row.edge,
        at=row.at,
        outcome=row.outcome,
        result_count=row.result_count,
        client_address=row.client_address,
        details=row.details or {},
        id=row.id,
    )


class GroupCommit:
    """Appends access-log entries durably, letting concurrent appends share one commit.

    Every query and read writes an entry before it answers, so under load the commits, not
    the reads, would set the pace. An append waits until its entry is committed (an answered
    request's entry survives a crash); whoever finds no commit under way writes every entry
    queued by then in one transaction, and the others wait for it.
    """

    def __init__(self, write: Callable[[Sequence[AccessEntry]], None]) -> None:
        self._write = write
        self._turn = threading.Condition()
        self._queue: list[_Ticket] = []
        self._writing = False

    def append(self, entry: AccessEntry) -> None:
        ticket = _Ticket(entry)
        with self._turn:
            self._queue.append(ticket)
            while not ticket.done and self._writing:
                self._turn.wait()
            if ticket.done:
                ticket.raise_failure()
                return
            self._writing = True
            batch, self._queue = self._queue, []
        try:
            self._write([queued.entry for queued in batch])
        except BaseException as exc:
            for queued in batch:
                queued.failure = exc
            raise
        finally:
            with self._turn:
                for queued in batch:
                    queued.done = True
                self._writing = False
                self._turn.notify_all()

    def flush(self) -> None:
        """Nothing to do: an append returns once its entry is committed."""

    def close(self) -> None:
        """Nothing to do: no entry waits in memory."""


@dataclass(slots=True)
class _Ticket:
    entry: AccessEntry
    done: bool = False
    failure: BaseException | None = None

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure
