"""A database as kbaudit left it at revision 0005, before records became documents (0006) and
the log began (0007): one column a field, scopes and refs in tables of their own. The
migration tests upgrade it; ``python -m tests.old_database URL`` makes one to look at.

Its records are kept here as a writer sends them (``WRITTEN``), so that a test can hold what
an upgrade makes of them to what today's code makes of the same records.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
from alembic import command
from sqlalchemy import Connection, text

from kbaudit.store.engine import create_store_engine
from kbaudit.store.migrate import alembic_config

REVISION = "0005"
ORG = "11111111-1111-4111-8111-111111111111"
KB_A, KB_B = "aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002"
ACTOR = "bbbbbbbb-0000-4000-8000-000000000001"
FULL_ID = "cccccccc-0000-4000-8000-000000000001"
BARE_ID = "cccccccc-0000-4000-8000-000000000002"
FULL: dict[str, Any] = {
    "ref": "case-42",
    "id": FULL_ID,
    "created_at": "2026-01-05T10:00:00.000001Z",
    "retrieval_status": "hit",
    "audit_write_status": "finalized",
    "actor_user_id": ACTOR,
    "caller": "=SUM(A1)",
    "ineligible_counts_by_reason": {"stale": 2},
    "alpha": 0.25,
    "reranked": True,
    "top_k": 8,
    "intent_recorded_at": "2026-01-05T09:59:59.500000Z",
    "scopes": [
        {
            "knowledge_base_id": KB_A,
            "requested": True,
            "result_count": 3,
            "effective_serving_status_counts": {"ok": 3},
        },
        {
            "knowledge_base_id": KB_B,
            "requested": False,
            "result_count": 3,
            "effective_serving_status_counts": {"ok": 3},
        },
    ],
    "refs": [{"chunk_id": KB_B, "rank": 1, "score": 0.875}],
}
BARE: dict[str, Any] = {
    "id": BARE_ID,
    "created_at": "2026-01-06T00:00:00.000000Z",
    "audit_write_status": "intent_recorded",
}


def plain(number: int) -> dict[str, Any]:
    """One of many ordinary records: enough of them that the log spans two tiles."""
    return {
        "id": f"dddddddd-0000-4000-8000-{number:012d}",
        "created_at": f"2026-01-{7 + number // 100:02d}T{number % 24:02d}:00:00.{number:06d}Z",
        "retrieval_status": ("hit", "miss", "blocked", "error")[number % 4],
        "audit_write_status": "finalized",
        "duration_ms": number,
        "scopes": [{"knowledge_base_id": (KB_A, KB_B)[number % 2], "requested": True}],
    }


# (seq, the record as written): a purge freed some seqs along the way.
WRITTEN = [(5, FULL), (9, BARE), *((100 + n, plain(n)) for n in range(300))]
LAST_SEQ = 420  # what the seq counter had reached


def build(url: str) -> None:
    """Make the database at ``url`` (empty) as revision 0005 would hold ``WRITTEN``."""
    engine = create_store_engine(url)
    try:
        command.upgrade(alembic_config(engine), REVISION)
        with engine.begin() as connection:
            postgres = connection.dialect.name == "postgresql"
            if postgres:
                _partitions(connection)
            connection.execute(
                text(
                    "INSERT INTO organizations (id, uuid, name, created_at) "
                    "VALUES (1, :org, 'acme', '2026-01-01T00:00:00.000000Z')"
                ),
                {"org": ORG},
            )
            for seq, record in WRITTEN:
                _write(connection, seq, record, postgres)
            _seq_counter(connection, postgres)
    finally:
        engine.dispose()


def _write(connection: Connection, seq: int, record: dict[str, Any], postgres: bool) -> None:
    fields = {name: value for name, value in record.items() if name not in ("scopes", "refs")}
    fields.setdefault("ref", "r" + record["id"].replace("-", ""))
    _insert(connection, "retrieval_records", {"seq": seq, "org_id": 1, **fields}, postgres)
    for table, children in (("retrieval_scopes", "scopes"), ("retrieval_refs", "refs")):
        for position, child in enumerate(record.get(children, [])):
            row = {
                "org_id": 1,
                "record_id": record["id"],
                "created_at": record["created_at"],
                "position": position,
                **child,
            }
            _insert(connection, table, row, postgres)


def _insert(connection: Connection, table: str, row: dict[str, Any], postgres: bool) -> None:
    """A row as the old layout kept it: maps as JSON text (cast to jsonb on PostgreSQL)."""
    values = {
        name: orjson.dumps(value).decode() if isinstance(value, dict) else value
        for name, value in row.items()
    }
    marks = [
        f"CAST(:{name} AS jsonb)" if postgres and isinstance(row[name], dict) else f":{name}"
        for name in row
    ]
    columns = ", ".join(row)
    statement = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(marks)})"  # noqa: S608
    connection.execute(text(statement), values)


def _partitions(connection: Connection) -> None:
    month = "FOR VALUES FROM ('2026-01-01T00:00:00Z') TO ('2026-02-01T00:00:00Z')"
    for table in ("retrieval_records", "retrieval_scopes", "retrieval_refs"):
        connection.execute(text(f"CREATE TABLE {table}_p2026_01 PARTITION OF {table} {month}"))


def _seq_counter(connection: Connection, postgres: bool) -> None:
    if postgres:
        connection.execute(text("SELECT setval('retrieval_records_seq_seq', :n)"), {"n": LAST_SEQ})
    else:
        connection.execute(
            text("UPDATE sqlite_sequence SET seq = :n WHERE name = 'retrieval_records'"),
            {"n": LAST_SEQ},
        )


if __name__ == "__main__":
    build(sys.argv[1])
    print(f"{sys.argv[1]}: revision {REVISION}, {len(WRITTEN)} records")
