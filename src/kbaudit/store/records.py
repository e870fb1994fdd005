"""Retrieval records: bulk writes of canonical documents and keyset reads over their columns.

Each record is one row: the canonical document (``kbaudit.document``) beside the columns that
queries filter and sort on, plus one ``record_kbs`` row per knowledge base its scopes name.
What differs between the engines (how rows go in, how a long read streams out) is in a
subclass in each engine's package, which its adapter names.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    LargeBinary,
    Row,
    Select,
    Table,
    and_,
    cast,
    exists,
    func,
    literal,
    select,
    tuple_,
)

from kbaudit.document import RecordDocument, instant_of, micros
from kbaudit.domain import OrgId, default_ref, id_named_by, is_derived_ref
from kbaudit.filters import RecordFilters
from kbaudit.store.tables import record_kbs, records, stats_stale_hours

RECORD_COLUMNS = (
    "seq",
    "org_id",
    "id",
    "ref",
    "created_at",
    "retrieval_status",
    "audit_write_status",
    "actor_user_id",
    "session_id",
    "document",
    "leaf_index",
)
STORED_COLUMNS = tuple(
    records.c[name]
    for name in ("seq", "id", "ref", "created_at", "audit_write_status", "document", "leaf_index")
)
KB_COLUMNS = ("org_id", "kb_id", "created_at", "seq")
HOUR = 3_600_000_000  # in microseconds, as created_at


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """What ingest needs to know of a record already stored."""

    seq: int
    id: uuid.UUID
    ref: str
    created_at: int
    audit_write_status: str
    document: str
    leaf_index: int | None

    @property
    def kb_ids(self) -> list[uuid.UUID]:
        return kb_ids_of(self.document)


# 300 records of 1.7 MB: an NDJSON worker peaked at 286 MB with batches of 8 MiB, 236 MB at
# 2 MiB (bench/hostile.py). 2,000 typical records are about 2.4 MB.
EXPORT_BATCH_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ExportBatch:
    # The documents, UTF-8, each ending in a newline: what an NDJSON file holds, with no
    # decoding on the way.
    lines: bytes
    rows: int
    # Records not finalized; summed over a part's batches, the part's count.
    unfinalized: int


def kb_ids_of(document: str) -> list[uuid.UUID]:
    scopes = orjson.loads(document)["scopes"]
    return sorted({uuid.UUID(s["knowledge_base_id"]) for s in scopes if s["knowledge_base_id"]})


def record_row(
    seq: int, org_id: OrgId, doc: RecordDocument, leaf_index: int | None
) -> tuple[Any, ...]:
    return (
        seq,
        org_id,
        doc.id.bytes,
        doc.chosen_ref,
        doc.created_at,
        doc.retrieval_status,
        doc.audit_write_status,
        doc.actor_user_id.bytes if doc.actor_user_id else None,
        doc.session_id.bytes if doc.session_id else None,
        doc.body,
        leaf_index,
    )


class RecordRepository:
    """The engine-neutral part: reads, and writes through ``_insert_rows``; exports read
    through ``_export_batches``."""

    def __init__(self, connection: Connection, upsert: Callable[[Table], Any]) -> None:
        self._connection = connection
        self._upsert = upsert  # the engine's INSERT that can be told what to do on conflict

    # -- writes ---------------------------------------------------------------------------

    def lock_for_write(self, org_id: OrgId) -> None:
        """Hold off the organization's other writers until this transaction ends."""

    def stored(self, org_id: OrgId, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredRecord]:
        """The stored form of each record among ``ids`` that exists in the organization."""
        if not ids:
            return {}
        r = records.c
        query = select(*STORED_COLUMNS).where(
            r.org_id == org_id, self._one_of(r.id, [record_id.bytes for record_id in ids])
        )
        found = map(_stored, self._connection.execute(query))
        return {record.id: record for record in found}

    def owners_of_refs(self, org_id: OrgId, refs: Sequence[str]) -> dict[str, uuid.UUID]:
        """The id of the record each of ``refs`` names, for those writers chose."""
        chosen = [ref for ref in refs if not is_derived_ref(ref)]
        if not chosen:
            return {}
        r = records.c
        query = select(r.ref, r.id).where(r.org_id == org_id, self._one_of(r.ref, chosen))
        return {row.ref: uuid.UUID(bytes=row.id) for row in self._connection.execute(query)}

    def insert(self, org_id: OrgId, docs: Sequence[tuple[RecordDocument, int]]) -> None:
        """New records, each with the index of its leaf in the log."""
        if not docs:
            return
        seqs = self._new_seqs(len(docs))
        self._insert_rows(
            "records",
            RECORD_COLUMNS,
            [
                record_row(seq, org_id, doc, leaf)
                for (doc, leaf), seq in zip(docs, seqs, strict=True)
            ],
        )
        self._insert_kbs(org_id, [(doc, seq) for (doc, _), seq in zip(docs, seqs, strict=True)])
        self._mark_stale(org_id, [doc.created_at for doc, _ in docs])

    def replace(
        self, org_id: OrgId, changes: Sequence[tuple[StoredRecord, RecordDocument, int]]
    ) -> None:
        """Overwrite stored records with new documents of theirs, and their new leaves."""
        if not changes:
            return
        r, k = records.c, record_kbs.c
        for old, new, leaf in changes:
            row = dict(zip(RECORD_COLUMNS, record_row(old.seq, org_id, new, leaf), strict=True))
            self._connection.execute(
                records.update()
                .where(r.org_id == org_id, r.id == old.id.bytes, r.created_at == old.created_at)
                .values(**row)
            )
            if old.kb_ids:
                self._connection.execute(
                    record_kbs.delete().where(
                        k.org_id == org_id,
                        k.kb_id.in_([kb.bytes for kb in old.kb_ids]),
                        k.created_at == old.created_at,
                        k.seq == old.seq,
                    )
                )
        self._insert_kbs(org_id, [(new, old.seq) for old, new, _ in changes])
        self._mark_stale(
            org_id, [at for old, new, _ in changes for at in (old.created_at, new.created_at)]
        )

    def delete(self, org_id: OrgId, victims: Sequence[StoredRecord]) -> int:
        """Delete these records with their knowledge-base rows."""
        r, k = records.c, record_kbs.c
        kb_keys = [(kb.bytes, v.created_at, v.seq) for v in victims for kb in v.kb_ids]
        for chunk in chunks(kb_keys, 300):
            self._connection.execute(
                record_kbs.delete().where(
                    k.org_id == org_id, tuple_(k.kb_id, k.created_at, k.seq).in_(chunk)
                )
            )
        deleted = 0
        for chunk in chunks([(v.created_at, v.id.bytes) for v in victims], 300):
            result = self._connection.execute(
                records.delete().where(r.org_id == org_id, tuple_(r.created_at, r.id).in_(chunk))
            )
            deleted += result.rowcount
        self._mark_stale(org_id, [v.created_at for v in victims])
        return deleted

    def _mark_stale(self, org_id: OrgId, created_ats: Sequence[int]) -> None:
        """Note that the hours of these instants changed, for their statistics
        (store/stats.py) to be counted again."""
        hours = sorted({created_at // HOUR for created_at in created_ats})
        if not hours:
            return
        s = stats_stale_hours
        statement = self._upsert(s).values(
            [{"org_id": org_id, "hour": hour, "version": 1} for hour in hours]
        )
        self._connection.execute(
            statement.on_conflict_do_update(
                index_elements=[s.c.org_id, s.c.hour], set_={"version": s.c.version + 1}
            )
        )

    def _one_of(self, column: Any, values: Sequence[Any]) -> Any:
        """``column IN values``, for a batch's worth of values."""
        return column.in_(values)

    def _insert_kbs(self, org_id: OrgId, docs: Sequence[tuple[RecordDocument, int]]) -> None:
        rows = [(org_id, kb.bytes, doc.created_at, seq) for doc, seq in docs for kb in doc.kb_ids]
        if rows:
            self._insert_rows("record_kbs", KB_COLUMNS, rows)

    def _new_seqs(self, count: int) -> Sequence[int]:
        """``count`` seqs never handed out before, ascending."""
        raise NotImplementedError

    def _insert_rows(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    # -- reads ----------------------------------------------------------------------------

    def page(
        self, org_id: OrgId, filters: RecordFilters, after: tuple[int, bytes] | None, limit: int
    ) -> list[tuple[int, bytes, str]]:
        """Up to ``limit`` records newest first, strictly after the ``(created_at, id)`` key:
        each as (created_at, id, document)."""
        statement = self.page_statement(org_id, filters, after, limit)
        return [(row[0], row[1], row[2]) for row in self._connection.execute(statement)]

    def page_statement(
        self, org_id: OrgId, filters: RecordFilters, after: tuple[int, bytes] | None, limit: int
    ) -> Select[Any]:
        r = records.c
        query = (
            select(r.created_at, r.id, r.document)
            .where(*filter_conditions(org_id, filters))
            .order_by(r.created_at.desc(), r.id.desc())
            .limit(limit)
        )
        if after is not None:
            # The first term bounds a walk of any index by time; the second, of the time
            # index alone, by both.
            query = query.where(
                r.created_at <= after[0], tuple_(r.created_at, r.id) < tuple_(*map(literal, after))
            )
        return query

    def find(self, org_id: OrgId, ref_or_id: str) -> str | None:
        """The document of the record whose ref is ``ref_or_id``, else of the one whose id it
        is."""
        row = self._find(org_id, ref_or_id, records.c.document)
        return None if row is None else str(row.document)

    def find_stored(self, org_id: OrgId, ref_or_id: str) -> StoredRecord | None:
        row = self._find(org_id, ref_or_id, *STORED_COLUMNS)
        return None if row is None else _stored(row)

    def _find(self, org_id: OrgId, ref_or_id: str, *columns: Any) -> Row[Any] | None:
        r = records.c
        found = self._connection.execute(
            select(*columns).where(r.org_id == org_id, r.ref == ref_or_id)
        ).one_or_none()
        record_id = id_named_by(ref_or_id)
        if found is None and record_id is not None:
            found = self._connection.execute(
                select(*columns).where(r.org_id == org_id, r.id == record_id.bytes)
            ).one_or_none()
        return found

    def newest_created_at(self, org_id: OrgId) -> datetime | None:
        r = records.c
        newest = self._connection.execute(
            select(func.max(r.created_at)).where(r.org_id == org_id)
        ).scalar_one()
        return None if newest is None else instant_of(newest)

    def oldest_before(self, org_id: OrgId, cutoff: datetime, limit: int) -> list[StoredRecord]:
        """Up to ``limit`` of the organization's oldest records created before ``cutoff``."""
        r = records.c
        query = (
            select(*STORED_COLUMNS)
            .where(r.org_id == org_id, r.created_at < micros(cutoff))
            .order_by(r.created_at, r.id)
            .limit(limit)
        )
        return [_stored(row) for row in self._connection.execute(query)]

    def newest_seq(self) -> int:
        """The highest seq handed out to a committed record (exports' snapshot)."""
        seq = self._connection.execute(select(func.max(records.c.seq))).scalar_one()
        return int(seq or 0)

    # -- exports --------------------------------------------------------------------------

    def part_bounds(
        self, org_id: OrgId, filters: RecordFilters, rows_per_part: int
    ) -> tuple[int, list[tuple[datetime, str]]]:
        """How many records match, and the key of every ``rows_per_part``-th one in
        ascending order: the first key of each part. Read in the snapshot whose newest seq
        bounds the export (``Store.snapshot``), so every record it sees is under that seq:
        with no test of the seq, the time index alone answers, and the table is not read."""
        r = records.c
        conditions = filter_conditions(org_id, filters)
        total = self._connection.execute(select(func.count()).where(*conditions)).scalar_one()
        number = func.row_number().over(order_by=(r.created_at, r.id)).label("n")
        numbered = select(r.created_at, r.id, number).where(*conditions).subquery()
        query = (
            select(numbered.c.created_at, numbered.c.id)
            .where((numbered.c.n - 1) % rows_per_part == 0)
            .order_by(numbered.c.n)
        )
        bounds = [
            (instant_of(row.created_at), str(uuid.UUID(bytes=row.id)))
            for row in self._connection.execute(query)
        ]
        return int(total), bounds

    def export_documents(
        self,
        org_id: OrgId,
        filters: RecordFilters,
        snapshot_seq: int,
        lower: tuple[datetime, str] | None,
        upper: tuple[datetime, str] | None,
        batch_rows: int = 2000,
        batch_bytes: int = EXPORT_BATCH_BYTES,
    ) -> Iterator[ExportBatch]:
        """One part's documents in ascending ``(created_at, id)`` order, in batches of at
        most ``batch_rows`` rows and about ``batch_bytes`` bytes (a batch may pass that by
        one record): records run from a few hundred bytes to a few megabytes, and 2,000
        of the largest held 3.7 GB."""
        r = records.c
        query = (
            # As a BLOB, SQLite hands the stored bytes over without decoding them to text.
            select(cast(r.document, LargeBinary), r.audit_write_status)
            .where(*filter_conditions(org_id, filters), r.seq <= snapshot_seq)
            .order_by(r.created_at, r.id)
        )
        key = tuple_(r.created_at, r.id)
        if lower is not None:
            low = _stored_key(lower)
            query = query.where(r.created_at >= low[0], key >= tuple_(*map(literal, low)))
        if upper is not None:
            high = _stored_key(upper)
            query = query.where(r.created_at <= high[0], key < tuple_(*map(literal, high)))
        return self._export_batches(query, batch_rows, batch_bytes)

    def _export_batches(
        self, query: Select[Any], batch_rows: int, batch_bytes: int
    ) -> Iterator[ExportBatch]:
        """The rows of ``query`` (document as bytes, audit_write_status) in batches."""
        raise NotImplementedError


def filter_conditions(org_id: OrgId, filters: RecordFilters) -> list[Any]:
    """The WHERE terms of the query route's window and filters over ``records``."""
    r = records.c
    conditions: list[Any] = [
        r.org_id == org_id,
        r.created_at >= micros(filters.start),
        r.created_at < micros(filters.end),
    ]
    if filters.statuses:
        conditions.append(r.retrieval_status.in_(filters.statuses))
    if filters.actor_user_id:
        conditions.append(r.actor_user_id == filters.actor_user_id.bytes)
    if filters.session_id:
        conditions.append(r.session_id == filters.session_id.bytes)
    if filters.kb_ids:
        k = record_kbs.c
        conditions.append(
            exists().where(
                and_(
                    k.org_id == r.org_id,
                    k.kb_id.in_([kb.bytes for kb in filters.kb_ids]),
                    # Lets PostgreSQL look in the one partition that holds them.
                    k.created_at == r.created_at,
                    k.seq == r.seq,
                )
            )
        )
    return conditions


def _stored(row: Row[Any]) -> StoredRecord:
    record_id = uuid.UUID(bytes=row.id)
    return StoredRecord(
        row.seq,
        record_id,
        row.ref or default_ref(str(record_id)),
        row.created_at,
        row.audit_write_status,
        row.document,
        row.leaf_index,
    )


def _stored_key(key: tuple[datetime, str]) -> tuple[int, bytes]:
    return micros(key[0]), uuid.UUID(key[1]).bytes


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for offset in range(0, len(items), size):
        yield items[offset : offset + size]
