"""Retrieval records with their scopes and refs: bulk writes and keyset reads.

Writes go straight to the driver's ``executemany`` with values already in storage form: at
tens of thousands of records a second, SQLAlchemy's per-value processing would be the
bottleneck. Reads use Core, where the column types do the conversions.
"""

from __future__ import annotations

import operator
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import orjson
import psycopg.errors
from sqlalchemy import (
    Boolean,
    Connection,
    Float,
    Row,
    Select,
    String,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    null,
    select,
    true,
    tuple_,
    type_coerce,
)

from kbaudit.domain import (
    RECORD_FIELDS,
    REF_FIELDS,
    SCOPE_FIELDS,
    OrgId,
    RecordFilters,
    RecordIn,
)
from kbaudit.errors import RecordConflict
from kbaudit.store import postgres
from kbaudit.store.partitions import ensure_partitions
from kbaudit.store.tables import retrieval_records, retrieval_refs, retrieval_scopes
from kbaudit.store.types import Instant, JsonObject, UuidText, instant_text

VALUE_FIELDS = tuple(f for f in RECORD_FIELDS if f != "ref")
_INSTANT_FIELDS = frozenset({"created_at", "intent_recorded_at", "finalized_at"})
_JSON_FIELDS = frozenset({"ineligible_counts_by_reason", "effective_serving_status_counts"})
_CREATED_AT = VALUE_FIELDS.index("created_at")
_WRITE_STATUS = VALUE_FIELDS.index("audit_write_status")


@dataclass(frozen=True, slots=True)
class ExportBatch:
    rows: list[tuple[Any, ...]]
    unfinalized: int


@dataclass(frozen=True, slots=True)
class StoredForm:
    """A record as the store holds it; equal forms mean an unchanged record."""

    id: str
    ref: str | None
    values: tuple[Any, ...]
    scopes: tuple[tuple[Any, ...], ...]
    refs: tuple[tuple[Any, ...], ...]

    @property
    def created_at(self) -> Any:
        return self.values[_CREATED_AT]

    @property
    def audit_write_status(self) -> str:
        status: str = self.values[_WRITE_STATUS]
        return status


class _Shaper:
    """Turns msgspec's builtins dict of one struct into a row tuple in storage form.

    Plain values pass through a C-level itemgetter; only instants and JSON maps, found by
    position, get Python work. This runs for every record written, so it stays lean.
    """

    def __init__(self, fields: Sequence[str]) -> None:
        self._get = operator.itemgetter(*fields)
        self._instants = [i for i, name in enumerate(fields) if name in _INSTANT_FIELDS]
        self._maps = [i for i, name in enumerate(fields) if name in _JSON_FIELDS]

    def __call__(self, data: dict[str, Any]) -> tuple[Any, ...]:
        if not (self._instants or self._maps):
            return tuple(self._get(data))
        row = list(self._get(data))
        for i in self._instants:
            if row[i] is not None:
                row[i] = instant_text(row[i])
        for i in self._maps:
            if row[i] is not None:
                row[i] = orjson.dumps(row[i], option=orjson.OPT_SORT_KEYS).decode()
        return tuple(row)


_record_row = _Shaper(VALUE_FIELDS)
_scope_row = _Shaper(SCOPE_FIELDS)
_ref_row = _Shaper(REF_FIELDS)


def stored_form(record: RecordIn) -> StoredForm:
    data = msgspec.to_builtins(record, builtin_types=(datetime,))
    return StoredForm(
        id=data["id"],
        ref=data["ref"],
        values=_record_row(data),
        scopes=tuple(map(_scope_row, data["scopes"])),
        refs=tuple(map(_ref_row, data["refs"])),
    )


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608


_RECORD_COLUMNS = ("org_id", "ref", *VALUE_FIELDS)
_SCOPE_COLUMNS = ("org_id", "record_id", "created_at", "position", *SCOPE_FIELDS)
_REF_COLUMNS = ("org_id", "record_id", "created_at", "position", *REF_FIELDS)
_INSERT_RECORD = _insert_sql("retrieval_records", _RECORD_COLUMNS)
_INSERT_SCOPE = _insert_sql("retrieval_scopes", _SCOPE_COLUMNS)
_INSERT_REF = _insert_sql("retrieval_refs", _REF_COLUMNS)
_UPDATE_RECORD = (
    "UPDATE retrieval_records SET "  # noqa: S608
    + ", ".join(f"{name} = ?" for name in ("ref", *VALUE_FIELDS))
    + " WHERE org_id = ? AND id = ?"
)
_SELECT_FORMS = (
    f"SELECT ref, {', '.join(VALUE_FIELDS)} FROM retrieval_records "  # noqa: S608
    "WHERE org_id = ? AND id IN ({marks})"
)


def _scope_rows(org_id: OrgId, forms: Sequence[StoredForm]) -> list[tuple[Any, ...]]:
    return [
        (org_id, form.id, form.created_at, position, *scope)
        for form in forms
        for position, scope in enumerate(form.scopes)
    ]


def _ref_rows(org_id: OrgId, forms: Sequence[StoredForm]) -> list[tuple[Any, ...]]:
    return [
        (org_id, form.id, form.created_at, position, *ref)
        for form in forms
        for position, ref in enumerate(form.refs)
    ]


class RecordRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._postgres = connection.dialect.name == "postgresql"

    # -- writes ---------------------------------------------------------------------------

    def stored_forms(self, org_id: OrgId, ids: Sequence[str]) -> dict[str, StoredForm]:
        """The stored form of each record among ``ids`` that exists in the organization."""
        if not ids:
            return {}
        cursor = self._driver()
        sql = _SELECT_FORMS.format(marks=", ".join("?" for _ in ids))
        rows = self._execute(cursor, sql, (org_id, *ids)).fetchall()
        if self._postgres:
            rows = [tuple(map(postgres.as_stored, row)) for row in rows]
        if not rows:
            return {}
        found = [row[1 + VALUE_FIELDS.index("id")] for row in rows]
        scopes = self._children(cursor, "retrieval_scopes", SCOPE_FIELDS, org_id, found)
        refs = self._children(cursor, "retrieval_refs", REF_FIELDS, org_id, found)
        forms = {}
        for row in rows:
            record_id = row[1 + VALUE_FIELDS.index("id")]
            forms[record_id] = StoredForm(
                id=record_id,
                ref=row[0],
                values=tuple(row[1:]),
                scopes=tuple(scopes.get(record_id, ())),
                refs=tuple(refs.get(record_id, ())),
            )
        return forms

    def owners_of_refs(self, org_id: OrgId, refs: Sequence[str]) -> dict[str, str]:
        """The id of the record each of ``refs`` already names, for those that name one."""
        if not refs:
            return {}
        r = retrieval_records.c
        query = select(r.ref, r.id).where(r.org_id == org_id, r.ref.in_(refs))
        return {row.ref: row.id for row in self._connection.execute(query)}

    def lock_for_write(self, org_id: OrgId) -> None:
        """Hold off the organization's other writers until this transaction ends. SQLite has
        one writer at a time already."""
        if self._postgres:
            postgres.lock_for_write(self._connection, org_id)

    def insert(self, org_id: OrgId, forms: Sequence[StoredForm]) -> None:
        if not forms:
            return
        rows = [(org_id, form.ref, *form.values) for form in forms]
        try:
            if self._postgres:
                ensure_partitions(self._connection, {form.created_at for form in forms})
                postgres.copy_in(self._connection, "retrieval_records", _RECORD_COLUMNS, rows)
            else:
                self._driver().executemany(_INSERT_RECORD, rows)
        except (sqlite3.IntegrityError, psycopg.errors.UniqueViolation) as exc:
            raise RecordConflict("a record id or ref in the batch is already taken") from exc
        self._insert_children(org_id, forms)

    def replace(self, org_id: OrgId, forms: Sequence[StoredForm]) -> None:
        """Overwrite existing records and their children with these forms."""
        if not forms:
            return
        cursor = self._driver()
        self._execute_many(
            cursor, _UPDATE_RECORD, [(form.ref, *form.values, org_id, form.id) for form in forms]
        )
        for table in ("retrieval_scopes", "retrieval_refs"):
            self._execute_many(
                cursor,
                f"DELETE FROM {table} WHERE org_id = ? AND record_id = ?",  # noqa: S608
                [(org_id, form.id) for form in forms],
            )
        self._insert_children(org_id, forms)

    def _insert_children(self, org_id: OrgId, forms: Sequence[StoredForm]) -> None:
        for table, columns, insert, rows in (
            ("retrieval_scopes", _SCOPE_COLUMNS, _INSERT_SCOPE, _scope_rows(org_id, forms)),
            ("retrieval_refs", _REF_COLUMNS, _INSERT_REF, _ref_rows(org_id, forms)),
        ):
            if self._postgres:
                postgres.copy_in(self._connection, table, columns, rows)
            elif rows:
                self._driver().executemany(insert, rows)

    def _children(
        self, cursor: Any, table: str, fields: Sequence[str], org_id: OrgId, ids: Sequence[str]
    ) -> dict[str, list[tuple[Any, ...]]]:
        marks = ", ".join("?" for _ in ids)
        sql = (
            f"SELECT record_id, {', '.join(fields)} FROM {table} "  # noqa: S608
            f"WHERE org_id = ? AND record_id IN ({marks}) ORDER BY record_id, position"
        )
        children: dict[str, list[tuple[Any, ...]]] = {}
        for row in self._execute(cursor, sql, (org_id, *ids)).fetchall():
            if self._postgres:
                row = tuple(map(postgres.as_stored, row))
            children.setdefault(row[0], []).append(tuple(row[1:]))
        return children

    def _driver(self) -> Any:
        return self._connection.connection.driver_connection.cursor()  # type: ignore[union-attr]

    def _execute(self, cursor: Any, sql: str, params: Sequence[Any]) -> Any:
        # The statements here are written with sqlite3's marks; psycopg's are %s.
        return cursor.execute(sql.replace("?", "%s") if self._postgres else sql, params)

    def _execute_many(self, cursor: Any, sql: str, params: list[tuple[Any, ...]]) -> None:
        cursor.executemany(sql.replace("?", "%s") if self._postgres else sql, params)

    # -- reads ----------------------------------------------------------------------------

    def page(
        self,
        org_id: OrgId,
        filters: RecordFilters,
        after: tuple[datetime, str] | None,
        limit: int,
        columns: Iterable[str],
    ) -> list[Row[Any]]:
        """Up to ``limit`` records newest first, strictly after the ``(created_at, id)`` key."""
        statement = self.page_statement(org_id, filters, after, limit, columns)
        return list(self._connection.execute(statement))

    def page_statement(
        self,
        org_id: OrgId,
        filters: RecordFilters,
        after: tuple[datetime, str] | None,
        limit: int,
        columns: Iterable[str],
    ) -> Select[Any]:
        r = retrieval_records.c
        query = (
            select(*(r[name] for name in columns))
            .where(*self._conditions(org_id, filters))
            .order_by(r.created_at.desc(), r.id.desc())
            .limit(limit)
        )
        if after is not None:
            # Typed binds: a bare datetime would be stored-formatted as SQLAlchemy's DateTime.
            query = query.where(tuple_(r.created_at, r.id) < tuple_(*_typed_key(after)))
        return query

    def _conditions(self, org_id: OrgId, filters: RecordFilters) -> list[Any]:
        r = retrieval_records.c
        conditions: list[Any] = [
            r.org_id == org_id,
            r.created_at >= filters.start,
            r.created_at < filters.end,
        ]
        if filters.statuses:
            conditions.append(r.retrieval_status.in_(filters.statuses))
        if filters.actor_user_id:
            conditions.append(r.actor_user_id == filters.actor_user_id)
        if filters.session_id:
            conditions.append(r.session_id == filters.session_id)
        if filters.kb_ids:
            s = retrieval_scopes.c
            conditions.append(
                exists().where(
                    and_(
                        s.org_id == r.org_id,
                        s.record_id == r.id,
                        # Lets PostgreSQL look in the one partition that holds them.
                        s.created_at == r.created_at,
                        s.knowledge_base_id.in_(filters.kb_ids),
                    )
                )
            )
        return conditions

    # -- exports --------------------------------------------------------------------------

    def part_bounds(
        self, org_id: OrgId, filters: RecordFilters, snapshot_seq: int, rows_per_part: int
    ) -> tuple[int, list[tuple[datetime, str]]]:
        """How many records match as of the snapshot, and the key of every
        ``rows_per_part``-th one in ascending order: the first key of each part."""
        r = retrieval_records.c
        conditions = [*self._conditions(org_id, filters), r.seq <= snapshot_seq]
        total = self._connection.execute(select(func.count()).where(*conditions)).scalar_one()
        number = func.row_number().over(order_by=(r.created_at, r.id)).label("n")
        numbered = select(r.created_at, r.id, number).where(*conditions).subquery()
        query = (
            select(numbered.c.created_at, numbered.c.id)
            .where((numbered.c.n - 1) % rows_per_part == 0)
            .order_by(numbered.c.n)
        )
        return int(total), [(row.created_at, row.id) for row in self._connection.execute(query)]

    def export_rows(
        self,
        org_id: OrgId,
        filters: RecordFilters,
        snapshot_seq: int,
        lower: tuple[datetime, str] | None,
        upper: tuple[datetime, str] | None,
        *,
        json_lines: bool = False,
        batch_size: int = 2000,
    ) -> Iterator[ExportBatch]:
        """One part's records in ascending key order, in batches.

        Rows are the raw stored values in ``RECORD_FIELDS`` order or, with ``json_lines``,
        one-element tuples holding the record as a JSON object with its scopes and refs, built
        by the database: turning rows into Python objects first would cost more than the rest
        of the export together.
        """
        r = retrieval_records.c
        cell = postgres.text_cell if self._postgres else _raw
        if json_lines:
            columns = [json_line(self._connection.dialect.name)]
        else:
            columns = [cell(r[name]) for name in RECORD_FIELDS]
        query = (
            select(*columns, r.audit_write_status)
            .where(*self._conditions(org_id, filters), r.seq <= snapshot_seq)
            .order_by(r.created_at, r.id)
        )
        key = tuple_(r.created_at, r.id)
        if lower is not None:
            query = query.where(key >= tuple_(*_typed_key(lower)))
        if upper is not None:
            query = query.where(key < tuple_(*_typed_key(upper)))
        if self._postgres:
            # Row-at-a-time fetching from a server-side cursor is several times slower.
            for rows in postgres.copy_out(self._connection, query, batch_size):
                yield ExportBatch(
                    rows=[row[:-1] for row in rows],
                    unfinalized=sum(1 for row in rows if row[-1] != "finalized"),
                )
            return
        result = self._connection.execution_options(yield_per=batch_size).execute(query)
        for partition in result.partitions():
            yield ExportBatch(
                rows=[tuple(row)[:-1] for row in partition],
                unfinalized=sum(1 for row in partition if row[-1] != "finalized"),
            )

    def newest_created_at(self, org_id: OrgId) -> datetime | None:
        r = retrieval_records.c
        newest: datetime | None = self._connection.execute(
            select(func.max(r.created_at)).where(r.org_id == org_id)
        ).scalar_one()
        return newest

    def find(self, org_id: OrgId, ref_or_id: str) -> Row[Any] | None:
        """The record whose ref is ``ref_or_id``, else the one whose id it is."""
        r = retrieval_records.c
        by_ref = select(retrieval_records).where(r.org_id == org_id, r.ref == ref_or_id)
        row = self._connection.execute(by_ref).one_or_none()
        if row is None and _is_uuid(ref_or_id):
            record_id = str(uuid.UUID(ref_or_id))
            by_id = select(retrieval_records).where(r.org_id == org_id, r.id == record_id)
            row = self._connection.execute(by_id).one_or_none()
        return row

    def scopes_of(self, org_id: OrgId, record_id: str) -> list[Row[Any]]:
        return self._children_rows(retrieval_scopes, org_id, record_id)

    def refs_of(self, org_id: OrgId, record_id: str) -> list[Row[Any]]:
        return self._children_rows(retrieval_refs, org_id, record_id)

    def _children_rows(self, table: Any, org_id: OrgId, record_id: str) -> list[Row[Any]]:
        query = (
            select(table)
            .where(table.c.org_id == org_id, table.c.record_id == record_id)
            .order_by(table.c.position)
        )
        return list(self._connection.execute(query))


def _raw(column: Any) -> Any:
    """The column as stored, skipping the Python-side conversion of its type."""
    if isinstance(column.type, Instant | UuidText | JsonObject):
        return type_coerce(column, String).label(column.name)
    return column


def _json_value(column: Any) -> Any:
    """A column as json_object should embed it: maps as objects, flags as true/false."""
    if isinstance(column.type, JsonObject):
        return func.json(column)
    if isinstance(column.type, Boolean):
        return case((column == true(), func.json("true")), (column == false(), func.json("false")))
    if isinstance(column.type, Float):
        # SQLite's JSON writes 15 significant digits; a double needs up to 17 to come back
        # the same. Take 15 when they suffice (the usual, readable case), else 17.
        short = func.printf("%.15g", column)
        exact = case((cast(short, Float) == column, short), else_=func.printf("%!.17g", column))
        return case((column.is_(None), null()), else_=func.json(exact))
    return _raw(column)


def _json_object(table: Any, fields: Sequence[str]) -> Any:
    pairs = [part for name in fields for part in (literal(name), _json_value(table.c[name]))]
    return func.json_object(*pairs)


_CHILDREN = (("scopes", retrieval_scopes, SCOPE_FIELDS), ("refs", retrieval_refs, REF_FIELDS))


def json_line(dialect: str = "sqlite") -> Any:
    """A record and its children as one JSON object, built inside the database. Children come
    out in position order: each list is read along its (org_id, record_id, position) key."""
    r = retrieval_records
    if dialect == "postgresql":
        return postgres.json_line(r, _CHILDREN, RECORD_FIELDS)
    children = []
    for name, table, fields in _CHILDREN:
        items = (
            select(func.json_group_array(func.json(_json_object(table, fields))))
            .where(table.c.org_id == r.c.org_id, table.c.record_id == r.c.id)
            .scalar_subquery()
        )
        children += [literal(name), func.json(items)]
    pairs = [part for name in RECORD_FIELDS for part in (literal(name), _json_value(r.c[name]))]
    return func.json_object(*pairs, *children)


def _typed_key(key: tuple[datetime, str]) -> tuple[Any, Any]:
    r = retrieval_records.c
    return literal(key[0], r.created_at.type), literal(key[1], r.id.type)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
