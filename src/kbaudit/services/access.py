"""Writing the access log: who read or took what, and how it ended."""

from __future__ import annotations

from typing import Any

from kbaudit.domain import Caller
from kbaudit.services.clock import Clock
from kbaudit.store.access_log import AccessEntry
from kbaudit.store.unit_of_work import Store


def record_access(
    store: Store,
    clock: Clock,
    caller: Caller,
    action: str,
    *,
    result_count: int | None = None,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> None:
    """Log what ``caller`` did, under the route it came in by (its edge's own)."""
    entry = AccessEntry(
        org_id=caller.org_id,
        key_id=caller.key_id,
        action=action,
        route=caller.via.route if caller.via else "",
        edge=caller.via.edge if caller.via else None,
        at=clock(),
        outcome=outcome,
        result_count=result_count,
        client_address=caller.client_address,
        details=details or {},
    )
    store.append_access(entry)


def newest_entries(
    store: Store, clock: Clock, caller: Caller, before: int | None, limit: int = 100
) -> list[AccessEntry]:
    """The organization's access log, newest first: who read or took what, when, from where.
    Reading it is logged too."""
    store.flush_access()
    with store.reading() as uow:
        entries = uow.access_log.newest(caller.org_id, before, limit)
    record_access(
        store,
        clock,
        caller,
        "access_log",
        result_count=len(entries),
        details={"before": before},
    )
    return entries
