"""The query route's SQL walks an index for every filter, never the whole table, and so does
ingest's lookup of the ids it is about to write.

At millions of records a plan that scans ``records`` or sorts it in a temporary
B-tree is the difference between milliseconds and seconds, and nothing else would notice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from sqlalchemy import Connection, event, select

from kbaudit.container import Container
from kbaudit.document import micros
from kbaudit.domain import SCOPES, OrgId, RecordIn
from kbaudit.filters import RecordFilters
from kbaudit.services.ingest import ingest_records
from kbaudit.services.keys import create_key
from kbaudit.store.tables import records

START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
ID = uuid.UUID(int=1)
BATCH_ROWS = 1000
# Each filter, and the index its query must walk.
CASES = {
    "window only": (RecordFilters.window(START, END), "ix_records_org_time"),
    "statuses": (
        RecordFilters(start=START, end=END, statuses=("blocked", "error")),
        "ix_records_org_time",
    ),
    "actor": (RecordFilters(start=START, end=END, actor_user_id=ID), "ix_records_org_actor_time"),
    "session": (RecordFilters(start=START, end=END, session_id=ID), "ix_records_org_session_time"),
    "kb": (RecordFilters(start=START, end=END, kb_ids=(ID,)), "ix_records_org_time"),
}


def plan(container: Container, filters: RecordFilters, after: Any) -> str:
    if container.store.engine.dialect.name == "postgresql":
        # PostgreSQL plans a month only once its partition exists.
        create_key(container.store, container.clock, "acme", SCOPES)
        ingest_records(container.store, container.clock, OrgId(1), [_record_in_january()])
    with container.store.reading() as uow:
        statement = uow.records.page_statement(OrgId(1), filters, after, 51)
        return explain(uow.connection, statement)


def _record_in_january() -> RecordIn:
    return msgspec.convert(
        {"id": str(uuid.uuid4()), "created_at": "2026-01-15T00:00:00Z", "scopes": [], "refs": []},
        RecordIn,
    )


def explain(connection: Connection, statement: Any) -> str:
    """The plan the database picks for ``statement``, with its binds as the store sends them.
    On PostgreSQL, table scans are priced out of reach, so that a plan with no index to walk
    shows up as a scan even on the test's few rows."""
    return explain_first(connection, lambda: connection.execute(statement).fetchall())


def explain_first(connection: Connection, run: Callable[[], object]) -> str:
    """The plan of the first statement ``run`` sends through ``connection``."""
    return explain_sent(connection, run)[0]


def explain_sent(connection: Connection, run: Callable[[], object]) -> list[str]:
    """The plans of the statements ``run`` sends through ``connection``."""
    sent: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        sent.append((args[2], args[3]))

    event.listen(connection, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(connection, "before_cursor_execute", capture)
    driver: Any = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        driver.execute("SET enable_seqscan = off")
        return [
            "\n".join(str(row[0]) for row in driver.execute("EXPLAIN " + sql, params))
            for sql, params in sent
        ]
    return [
        "\n".join(str(row[-1]) for row in driver.execute("EXPLAIN QUERY PLAN " + sql, params))
        for sql, params in sent
    ]


def assert_walks_index(text: str, index: str, dialect: str) -> None:
    if dialect == "postgresql":
        # Partition indexes are named after the parent's columns, not the parent index.
        assert "Index Scan" in text or "Index Only Scan" in text, text
        assert "Seq Scan" not in text, text
        assert "Sort" not in text, text
        return
    assert f"records USING INDEX {index}" in text, text
    assert "TEMP B-TREE" not in text, text
    assert "SCAN records\n" not in text + "\n", text


@pytest.mark.parametrize(("filters", "index"), CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize(
    "after", [None, (micros(START), ID.bytes)], ids=["first page", "next page"]
)
def test_query_walks_its_index_and_never_sorts(
    container: Container, filters: RecordFilters, index: str, after: Any
) -> None:
    text = plan(container, filters, after)
    assert_walks_index(text, index, container.store.engine.dialect.name)


def test_the_plan_check_can_see_a_scan(container: Container) -> None:
    unindexed = select(records.c.id).order_by(records.c.document)
    plan(container, RecordFilters.window(START, END), None)  # makes the partition on PostgreSQL
    with container.store.reading() as uow:
        text = explain(uow.connection, unindexed)
    with pytest.raises(AssertionError):
        assert_walks_index(text, "ix_records_org_time", container.store.engine.dialect.name)


def test_ingest_finds_a_batchs_ids_through_the_unique_index(container: Container) -> None:
    """A write looks up every id of its batch first. On PostgreSQL, in a month partition its
    own first write had just made, the planner guessed an organization held 0.5% of the
    rows and read all of them instead of walking the index, at a cost that grew with the
    table (see store/postgres/partitions.py). The first write now leaves statistics that
    know better.
    """
    create_key(container.store, container.clock, "acme", SCOPES)
    first = [_record_in_january() for _ in range(BATCH_ROWS)]
    ingest_records(container.store, container.clock, OrgId(1), first)
    batch = [record.id for record in first[:100]] + [uuid.uuid4() for _ in range(100)]
    with container.store.reading() as uow:
        connection = uow.connection
        if connection.dialect.name == "postgresql":
            guess = connection.exec_driver_sql(
                "EXPLAIN (FORMAT JSON) SELECT 1 FROM records_p2026_01 WHERE org_id = 1"
            ).scalar_one()[0]["Plan"]["Plan Rows"]
            assert guess >= BATCH_ROWS * 0.9, guess
        text = explain_first(connection, lambda: uow.records.stored(OrgId(1), batch))
    assert_walks_index(text, "uq_records_org_id", container.store.engine.dialect.name)


def test_planning_an_export_reads_the_time_index_alone(container: Container) -> None:
    """Counting an export's records and finding its parts' first keys: at 200k records,
    reading the table for them (and sorting what it read) took 430 ms before the first part
    could start; the time index alone answers in 140. (On SQLite the seq is the rowid,
    which every index holds.)"""
    plan(container, RecordFilters.window(START, END), None)  # makes the partition on PostgreSQL
    with container.store.streaming() as uow:
        connection = uow.connection
        plans = explain_sent(
            connection,
            lambda: uow.records.part_bounds(OrgId(1), RecordFilters.window(START, END), 10),
        )
    assert len(plans) == 2  # the count, the bounds
    for text in plans:
        if connection.dialect.name == "postgresql":
            assert "Index Only Scan" in text, text
            assert "Seq Scan" not in text, text
            assert "Bitmap" not in text, text
        else:
            assert "USING COVERING INDEX ix_records_org_time" in text, text
