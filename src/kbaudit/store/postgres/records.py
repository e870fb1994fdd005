"""Records on PostgreSQL: writers of an organization take turns on an advisory lock, rows go
in by COPY into monthly partitions, and exports read COPY's output."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import ARRAY, Select, any_, func, literal

from kbaudit.document import RecordDocument, instant_of
from kbaudit.domain import OrgId
from kbaudit.store.postgres.copy import copy_in, copy_out_lines
from kbaudit.store.postgres.locks import lock_for_write, newest_seq
from kbaudit.store.postgres.partitions import analyze_partitions, ensure_partitions
from kbaudit.store.records import ExportBatch, RecordRepository
from kbaudit.store.tables import metadata, records


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

    def _export_batches(
        self, query: Select[Any], batch_rows: int, batch_bytes: int
    ) -> Iterator[ExportBatch]:
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
        for text, rows in copy_out_lines(self._connection, documents, batch_rows, batch_bytes):
            yield ExportBatch(lines=text, rows=rows, unfinalized=unfinalized)
            unfinalized = 0
