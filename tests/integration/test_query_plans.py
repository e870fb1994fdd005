"""The query route's SQL walks an index for every filter, never the whole table.

At millions of records a plan that scans ``retrieval_records`` or sorts it in a temporary
B-tree is the difference between milliseconds and seconds, and nothing else would notice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, event, select

from kbaudit.container import Container
from kbaudit.domain import SUMMARY_FIELDS, OrgId, RecordFilters
from kbaudit.store.tables import retrieval_records

START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
ID = "00000000-0000-0000-0000-000000000001"
# Each filter, and the index its query must walk.
CASES = {
    "window only": (RecordFilters(START, END), "ix_retrieval_records_org_time"),
    "statuses": (
        RecordFilters(START, END, statuses=("blocked", "error")),
        "ix_retrieval_records_org_time",
    ),
    "actor": (RecordFilters(START, END, actor_user_id=ID), "ix_retrieval_records_org_actor_time"),
    "session": (RecordFilters(START, END, session_id=ID), "ix_retrieval_records_org_session_time"),
    "kb": (RecordFilters(START, END, kb_ids=(ID,)), "ix_retrieval_records_org_time"),
}


def plan(container: Container, filters: RecordFilters, after: Any) -> str:
    with container.store.reading() as uow:
        statement = uow.records.page_statement(OrgId(1), filters, after, 51, SUMMARY_FIELDS)
        return explain(uow.records._connection, statement)


def explain(connection: Connection, statement: Any) -> str:
    """The plan SQLite picks for ``statement``, with its binds as the store sends them."""
    sent: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        sent.append((args[2], args[3]))

    event.listen(connection, "before_cursor_execute", capture)
    try:
        connection.execute(statement).fetchall()
    finally:
        event.remove(connection, "before_cursor_execute", capture)
    sql, params = sent[0]
    rows = connection.connection.driver_connection.execute("EXPLAIN QUERY PLAN " + sql, params)  # type: ignore[union-attr]
    return "\n".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize(("filters", "index"), CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("after", [None, (START, ID)], ids=["first page", "next page"])
def test_query_walks_its_index_and_never_sorts(
    container: Container, filters: RecordFilters, index: str, after: Any
) -> None:
    text = plan(container, filters, after)
    assert f"retrieval_records USING INDEX {index}" in text, text
    assert "TEMP B-TREE" not in text, text
    assert "SCAN retrieval_records\n" not in text + "\n", text


def test_the_plan_check_can_see_a_scan(container: Container) -> None:
    unindexed = select(retrieval_records.c.id).order_by(retrieval_records.c.duration_ms)
    with container.store.reading() as uow:
        text = explain(uow.records._connection, unindexed)
    assert "TEMP B-TREE" in text
    assert "SCAN retrieval_records" in text
