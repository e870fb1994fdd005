"""Records on SQLite: rows go in and stream out through the driver itself."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Select

from kbaudit.store.records import ExportBatch, RecordRepository

CACHE_KB = 65536  # SQLite's page cache per connection
STREAM_CACHE_KB = 4096
FETCH_ROWS = 4  # of the largest records, about 6 MB


class SqliteRecords(RecordRepository):
    def _export_batches(
        self, query: Select[Any], batch_rows: int, batch_bytes: int
    ) -> Iterator[ExportBatch]:
        for rows in self._stream(query, batch_rows, batch_bytes):
            yield ExportBatch(
                lines=b"\n".join([row[0] for row in rows]) + b"\n",
                rows=len(rows),
                unfinalized=sum(1 for row in rows if row[1] != "finalized"),
            )

    def _new_seqs(self, count: int) -> Sequence[int]:
        # The writer holds SQLite's one write lock, so the next seqs are free until it
        # commits; inserting them moves AUTOINCREMENT's counter past them.
        row = (
            self._driver()
            .execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'")
            .fetchone()
        )
        last = row[0] if row else 0
        return range(last + 1, last + 1 + count)

    def _insert_rows(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        # Straight to the driver: SQLAlchemy's per-value processing would cost more than
        # SQLite's own work at tens of thousands of rows a second.
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
        self._driver().executemany(sql, rows)

    def _stream(
        self, query: Select[Any], batch_rows: int, batch_bytes: int
    ) -> Iterator[list[Sequence[Any]]]:
        """The rows in batches. SQLite hands over as many rows as asked for, whatever their
        size: a batch is gathered a few rows at a time, up to its rows or its bytes."""
        cursor = self._driver()
        # A part reads each page once: a page cache would only hold memory (64 MB of it).
        cursor.execute(f"PRAGMA cache_size = -{STREAM_CACHE_KB}")
        try:
            self._execute_on(cursor, query)
            batch: list[Sequence[Any]] = []
            size = 0
            while rows := cursor.fetchmany(FETCH_ROWS):
                batch += rows
                size += sum(len(row[0]) for row in rows)
                if len(batch) >= batch_rows or size >= batch_bytes:
                    yield batch
                    batch, size = [], 0
            if batch:
                yield batch
        finally:
            cursor.execute(f"PRAGMA cache_size = -{CACHE_KB}")

    def _execute_on(self, cursor: Any, query: Select[Any]) -> None:
        """Run ``query`` on the driver's cursor, inside the unit of work's transaction: over
        a part's rows, SQLAlchemy's cost more than SQLite's own reading of the documents.
        (Over a page of 200, compiling afresh costs what the rows save.)"""
        compiled = query.compile(
            dialect=self._connection.dialect, compile_kwargs={"render_postcompile": True}
        )
        assert compiled.positiontup is not None
        cursor.execute(str(compiled), [compiled.params[name] for name in compiled.positiontup])

    def _driver(self) -> Any:
        return self._connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
