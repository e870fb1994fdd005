"""What the record store does differently on PostgreSQL: COPY in and out, and advisory locks
in place of SQLite's single writer."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from psycopg.abc import Buffer
from sqlalchemy import ARRAY, Connection, Select, Table, any_, func, literal
from sqlalchemy.types import TypeEngine

from kbaudit.document import RecordDocument, instant_of
from kbaudit.domain import OrgId
from kbaudit.store.partitions import analyze_partitions, ensure_partitions
from kbaudit.store.records import ExportBatch, RecordRepository
from kbaudit.store.tables import metadata, records

# kbaudit's advisory locks; the numbers only have to differ from each other's and from any
# other application's on the same database.
MIGRATION_LOCK = 7_241_000
# Writers hold this lock shared for their whole transaction; taking it exclusively therefore
# waits until every seq handed out so far is committed or rolled back (see newest_seq).
SNAPSHOT_LOCK = 7_241_002
UPKEEP_LOCK = 7_241_003
WRITER_LOCKS = 7_241_004  # with the organization's id as the second key


def lock_for_write(connection: Connection, org_id: OrgId) -> None:
    """Writers of one organization take turns, as SQLite's single writer does: a partitioned
    table cannot keep ids and refs unique without created_at, so the check-then-write of the
    ingest rules must not interleave. One lock per organization, rather than one per id,
    keeps the server's shared lock table small however large the batches."""
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock_shared(%s)", (SNAPSHOT_LOCK,))
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, %s)", (WRITER_LOCKS, org_id))


def newest_seq(connection: Connection) -> int:
    """The highest seq any writer has been handed, once every such writer has finished:
    records committed later always get a higher one."""
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (SNAPSHOT_LOCK,))
    row = connection.exec_driver_sql(
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM records_seq_seq"
    ).one()
    return int(row[0])


def copy_in(
    connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """COPY in binary: neither side escapes or unescapes the documents' text (a record's row
    took 40 µs against 55 in text, into a table with no index)."""
    if not rows:
        return
    types = [_type_name(table.c[name].type, connection) for name in columns]
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(
        f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _type_name(kind: TypeEngine[Any], connection: Connection) -> str:
    """The column type as psycopg knows it: ``VARCHAR(64)`` is ``varchar``."""
    return kind.compile(dialect=connection.dialect).split("(")[0].lower()


def copy_out_lines(
    connection: Connection, query: Select[Any], batch_rows: int
) -> Iterator[tuple[bytes, int]]:
    """A one-column text query's values as lines, ``batch_rows`` at a time, with their
    count. COPY in binary: each value comes as the server stores it, neither escaped by the
    server nor unescaped here (a 200k-record export took 1.2-1.4 s of the server's CPU in
    binary, 1.5-1.7 s in text). COPY takes no server-side parameters, so psycopg binds them
    client-side."""
    compiled = query.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    # JIT-compiling these row-by-row expressions costs up to a second a part and wins
    # nothing back (measured: 11.7k rows/s with it, 14.6k without, on a 50,000-row part).
    cursor.execute("SET LOCAL jit = off")
    statement = f"COPY ({compiled}) TO STDOUT (FORMAT BINARY)"
    with cursor.copy(statement, compiled.params) as copy:
        lines: list[Buffer] = []
        for value in _binary_values(copy):
            lines.append(value)
            if len(lines) >= batch_rows:
                yield b"\n".join([*lines, b""]), len(lines)  # one copy, the last line ended
                lines = []
        if lines:
            yield b"\n".join([*lines, b""]), len(lines)


_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_ROW_HEAD = 6  # a tuple's field count (2 bytes), then the one field's length (4)
_field_length = struct.Struct(">i").unpack_from


def _binary_values(messages: Iterable[Buffer]) -> Iterator[Buffer]:
    """The values of a one-column, non-null binary COPY, as views into its messages. The
    server sends a row a message (the first carries the file header too): a message that is
    exactly one row is sliced with no parsing, anything else walks its tuples."""
    messages = iter(messages)
    first = memoryview(next(messages, b""))
    if bytes(first[: len(_SIGNATURE)]) != _SIGNATURE:
        raise ValueError("COPY's binary output does not start with its signature")
    extension = int.from_bytes(first[15:19], "big")
    yield from _tuples(first[19 + extension :])
    for message in messages:
        size = len(message)
        if size > _ROW_HEAD and _field_length(message, 2)[0] == size - _ROW_HEAD:
            yield message[_ROW_HEAD:]  # psycopg's messages are views: no copy
        else:
            yield from _tuples(memoryview(message))


def _tuples(view: memoryview) -> Iterator[memoryview]:
    at = 0
    while at < len(view):
        if int.from_bytes(view[at : at + 2], "big", signed=True) == -1:  # the trailer
            return
        length = int.from_bytes(view[at + 2 : at + _ROW_HEAD], "big", signed=True)
        at += _ROW_HEAD
        yield view[at : at + length]
        at += length


class PostgresRecords(RecordRepository):
    def lock_for_write(self, org_id: OrgId) -> None:
        lock_for_write(self._connection, org_id)

    def newest_seq(self) -> int:
        return newest_seq(self._connection)

    def insert(self, org_id: OrgId, docs: Sequence[tuple[RecordDocument, int]]) -> None:
        made = ensure_partitions(self._connection, {instant_of(doc.created_at) for doc, _ in docs})
        super().insert(org_id, docs)
        analyze_partitions(self._connection, made)

    def _new_seqs(self, count: int) -> Sequence[int]:
        # One array, not a row per seq: at 5,000 rows the result's handling cost more than
        # the database's work.
        seqs: list[int] = self._connection.exec_driver_sql(
            "SELECT array_agg(nextval('records_seq_seq')) FROM generate_series(1, %s)", (count,)
        ).scalar_one()
        return seqs

    def _one_of(self, column: Any, values: Sequence[Any]) -> Any:
        # One array parameter, not one bound parameter per value: binding 5,000 of them
        # cost an import batch more than the lookup itself.
        return column == any_(literal(list(values), ARRAY(column.type)))

    def _insert_rows(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        copy_in(self._connection, metadata.tables[table], columns, rows)

    def _export_batches(self, query: Select[Any], batch_size: int) -> Iterator[ExportBatch]:
        """COPY's values, not rows: a server-side cursor fetching rows is several times
        slower, and parsing COPY's rows took a third of a part's time. The records not
        finalized are counted by the server, in the unit of work's snapshot
        (``Store.streaming``; the first batch carries the count)."""
        r = records.c
        unfinalized = self._connection.execute(
            query.with_only_columns(func.count())
            .where(r.audit_write_status != "finalized")
            .order_by(None)
        ).scalar_one()
        documents = query.with_only_columns(r.document)
        for text, rows in copy_out_lines(self._connection, documents, batch_size):
            yield ExportBatch(lines=text, rows=rows, unfinalized=unfinalized)
            unfinalized = 0
