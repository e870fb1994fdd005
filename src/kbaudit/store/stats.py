"""Statistics of records, counted in the database: straight from the records, or summed from
the rows of ``stats_hours``, one for each hour and one for each UTC day (the sum of its
hours).

A duration goes into one of ``DURATION_BINS`` bins: bin 0 holds durations under 1 ms, bin
``i`` those in ``[BIN_RATIO**(i-1), BIN_RATIO**i)`` ms, the last everything above. Bins add up
across hours and keys, so a percentile of any sum of them is found within one bin (12%).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Float,
    Integer,
    Select,
    case,
    cast,
    delete,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from kbaudit.document import instant_of
from kbaudit.domain import OrgId
from kbaudit.filters import RecordFilters
from kbaudit.store.records import HOUR, chunks, filter_conditions
from kbaudit.store.tables import DURATION_BINS, records, stats_hours, stats_stale_hours

BIN_RATIO = 1.25
DIMENSIONS = ("status", "kb_id", "agent_id", "serving_decision")
BIN_COLUMNS = tuple(f"d{index:02d}" for index in range(DURATION_BINS))
NO_DURATION = -1
Counted = Sequence[Sequence[Any]]  # rows of (bucket, status, keys..., duration bin, count)
DAY_HOURS = 24


@dataclass(frozen=True, slots=True)
class Tally:
    """The records of one bucket with one status and one key: how many, and their durations."""

    bucket: int  # the bucket's start, in microseconds
    status: str | None
    key: str | None
    count: int
    durations: tuple[int, ...]  # DURATION_BINS counts


@dataclass(frozen=True, slots=True)
class StaleHour:
    org_id: OrgId
    hour: int  # hours since the epoch
    version: int


def drop_hours(connection: Connection, first: int, end: int) -> None:
    """Forget every organization's statistics of the hours in ``[first, end)`` (their
    records are gone)."""
    for table in (stats_hours, stats_stale_hours):
        connection.execute(delete(table).where(table.c.hour >= first, table.c.hour < end))


class StatsRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    # -- counting records -----------------------------------------------------------------

    def computed(
        self, org_id: OrgId, dimension: str, filters: RecordFilters, bucket: int
    ) -> list[Tally]:
        """Tallies of the records the filters select, by ``bucket``-long buckets, status and
        the dimension's key, counted from the records themselves."""
        if dimension == "kb_id":
            return _tallies(self._counts_by_kb(org_id, filters, bucket), bucket, key_at=2)
        if dimension == "status":
            return _tallies(self._counts(org_id, filters, bucket, ()), bucket, key_at=1)
        return _tallies(self._counts(org_id, filters, bucket, (dimension,)), bucket, key_at=2)

    def _counts(
        self, org_id: OrgId, filters: RecordFilters, bucket: int, fields: Sequence[str]
    ) -> Counted:
        """(bucket, status, *fields, duration bin, count) of the records the filters select."""
        source, values = self._document_fields(("duration_ms", *fields))
        each = (
            select(
                *self._bucket_status_bin(bucket, values["duration_ms"]),
                *(values[name].label(name) for name in fields),
            )
            .select_from(source)
            .where(*filter_conditions(org_id, filters))
        )
        return self._grouped(each, ("bucket", "status", *fields, "bin"))

    def _counts_by_kb(self, org_id: OrgId, filters: RecordFilters, bucket: int) -> Counted:
        """(bucket, status, knowledge base, duration bin, count): a record counts once for
        each knowledge base its scopes name. From the document's scopes: record_kbs is keyed
        for walking one knowledge base, not for finding a record's."""
        source, duration, kb = self._document_scopes()
        any_kb = filters.model_copy(update={"kb_ids": None})
        each = (
            select(records.c.seq, *self._bucket_status_bin(bucket, duration), kb.label("kb_id"))
            .select_from(source)
            .where(kb.is_not(None), *filter_conditions(org_id, any_kb))
            .distinct()
        )
        if filters.kb_ids:
            each = each.where(kb.in_([str(kb_id) for kb_id in filters.kb_ids]))
        return self._grouped(each, ("bucket", "status", "kb_id", "bin"))

    def _bucket_status_bin(
        self, bucket: int, duration_text: ColumnElement[Any]
    ) -> tuple[ColumnElement[Any], ...]:
        r = records.c
        return (
            (r.created_at // bucket).label("bucket"),
            r.retrieval_status.label("status"),
            _bin_of(cast(duration_text, Float)).label("bin"),
        )

    def _grouped(self, each: Select[Any], columns: Sequence[str]) -> Counted:
        # Grouped outside: PostgreSQL would not match the select's expressions to GROUP BY's
        # (each has parameters of its own).
        rows = each.subquery()
        keys = [rows.c[name] for name in columns]
        return list(self._connection.execute(select(*keys, func.count()).group_by(*keys)))

    def summed(
        self,
        org_id: OrgId,
        dimension: str,
        hours: tuple[int, int],
        bucket: int,
        statuses: Sequence[str] = (),
        keys: Sequence[str] = (),
    ) -> list[Tally]:
        """Tallies of the hours in ``[first, end)`` from ``stats_hours``, summed into
        ``bucket``-long buckets (a whole number of hours): by the day rows for whole days
        when buckets are days, else by the hour rows."""
        first, end = hours
        spans = [(1, first, end)]
        if bucket % (DAY_HOURS * HOUR) == 0:
            first_day = -(-first // DAY_HOURS) * DAY_HOURS
            end_day = end // DAY_HOURS * DAY_HOURS
            if first_day < end_day:
                spans = [(1, first, first_day), (DAY_HOURS, first_day, end_day), (1, end_day, end)]
        tallies = []
        for grain, span_first, span_end in spans:
            if span_first < span_end:
                query = self._sum_query(
                    org_id, dimension, grain, (span_first, span_end), bucket, statuses, keys
                )
                tallies += [
                    Tally(row[0] * bucket, row[1] or None, row[2] or None, row[3], tuple(row[4:]))
                    for row in self._connection.execute(query)
                ]
        return tallies

    def _sum_query(
        self,
        org_id: OrgId,
        dimension: str,
        grain: int,
        hours: tuple[int, int],
        bucket: int,
        statuses: Sequence[str],
        keys: Sequence[str],
    ) -> Select[Any]:
        s = stats_hours.c
        each = select(
            (s.hour // (bucket // HOUR)).label("bucket"),
            s.status,
            s.key,
            s.count,
            *s[BIN_COLUMNS],
        ).where(
            s.org_id == org_id,
            s.dimension == dimension,
            s.hours == grain,
            s.hour >= hours[0],
            s.hour < hours[1],
        )
        if statuses:
            each = each.where(s.status.in_(statuses))
        if keys:
            each = each.where(s.key.in_(keys))
        if bucket == grain * HOUR:
            return each  # a row a bucket, status and key already: nothing to add up
        rows = each.subquery()
        return select(
            rows.c.bucket,
            rows.c.status,
            rows.c.key,
            # As BIGINT: PostgreSQL's sum of one is NUMERIC, which the driver hands out as
            # Decimal.
            cast(func.sum(rows.c.count), BigInteger),
            *(cast(func.sum(rows.c[name]), BigInteger) for name in BIN_COLUMNS),
        ).group_by(rows.c.bucket, rows.c.status, rows.c.key)

    # -- keeping stats_hours ----------------------------------------------------------------

    def stale(self, org_id: OrgId | None, hours: tuple[int, int], limit: int) -> list[StaleHour]:
        """Up to ``limit`` stale hours in ``[first, end)``, oldest first, of one organization
        or of any, that no other transaction is counting."""
        s = stats_stale_hours.c
        query = (
            select(s.org_id, s.hour, s.version)
            .where(s.hour >= hours[0], s.hour < hours[1])
            .order_by(s.org_id, s.hour)
            .limit(limit)
        )
        if org_id is not None:
            query = query.where(s.org_id == org_id)
        found = [
            StaleHour(OrgId(row[0]), row[1], row[2]) for row in self._connection.execute(query)
        ]
        return [hour for hour in found if self._claim(hour)]

    def recompute(self, stale: Sequence[StaleHour]) -> None:
        """Count the stale hours again from their records. An hour written to meanwhile (its
        version moved on) stays stale."""
        for org_id, first, end in _runs(stale):
            window = RecordFilters.window(instant_of(first * HOUR), instant_of(end * HOUR))
            s = stats_hours.c
            self._connection.execute(
                delete(stats_hours).where(
                    s.org_id == org_id,
                    s.dimension.in_(DIMENSIONS),  # the key's second column: no scan
                    s.hours == 1,
                    s.hour >= first,
                    s.hour < end,
                )
            )
            # One pass over the documents for the record's own fields, one for its scopes.
            fields = self._counts(org_id, window, HOUR, ("agent_id", "serving_decision"))
            tallies = {
                "status": _tallies(fields, HOUR, key_at=1),
                "agent_id": _tallies(fields, HOUR, key_at=2),
                "serving_decision": _tallies(fields, HOUR, key_at=3),
                "kb_id": _tallies(self._counts_by_kb(org_id, window, HOUR), HOUR, key_at=2),
            }
            rows = [_row(org_id, name, tally) for name, each in tallies.items() for tally in each]
            if rows:
                self._connection.execute(stats_hours.insert(), rows)
            for day in range(first // DAY_HOURS, -(-end // DAY_HOURS)):
                self._sum_day(org_id, day * DAY_HOURS)
        t = stats_stale_hours.c
        for chunk in chunks([(h.org_id, h.hour, h.version) for h in stale], 300):
            self._connection.execute(
                delete(stats_stale_hours).where(tuple_(t.org_id, t.hour, t.version).in_(chunk))
            )

    def _sum_day(self, org_id: OrgId, first_hour: int) -> None:
        """The day's rows again, as the sums of its hour rows."""
        s = stats_hours.c
        self._connection.execute(
            delete(stats_hours).where(
                s.org_id == org_id,
                s.dimension.in_(DIMENSIONS),
                s.hours == DAY_HOURS,
                s.hour == first_hour,
            )
        )
        sums = (
            select(
                s.org_id,
                s.dimension,
                literal(DAY_HOURS),
                literal(first_hour),
                s.status,
                s.key,
                func.sum(s.count),
                *(func.sum(s[name]) for name in BIN_COLUMNS),
            )
            .where(
                s.org_id == org_id,
                s.dimension.in_(DIMENSIONS),
                s.hours == 1,
                s.hour >= first_hour,
                s.hour < first_hour + DAY_HOURS,
            )
            .group_by(s.org_id, s.dimension, s.status, s.key)
        )
        columns = ["org_id", "dimension", "hours", "hour", "status", "key", "count", *BIN_COLUMNS]
        self._connection.execute(stats_hours.insert().from_select(columns, sums))

    # -- what differs between the engines (each engine's package): the document's parts, and
    # claiming hours

    def _document_fields(
        self, names: Sequence[str]
    ) -> tuple[FromClause, dict[str, ColumnElement[Any]]]:
        """``records`` (joined to what it takes) and the document's top-level fields
        ``names`` as text."""
        raise NotImplementedError

    def _document_scopes(self) -> tuple[FromClause, ColumnElement[Any], ColumnElement[Any]]:
        """``records`` joined to a row for each scope of its document, with the record's
        duration (text) and the scope's knowledge base id."""
        raise NotImplementedError

    def _claim(self, hour: StaleHour) -> bool:
        """Whether this transaction may count the hour: no other one is counting it. (One
        writer at a time, on SQLite: always.)"""
        return True


def _bin_of(duration: ColumnElement[Any]) -> ColumnElement[Any]:
    top = DURATION_BINS - 1
    return case(
        (duration.is_(None), NO_DURATION),
        (duration < 1, 0),
        (duration >= BIN_RATIO ** (top - 1), top),
        else_=cast(func.floor(func.ln(duration) / math.log(BIN_RATIO)), Integer) + 1,
    )


def bin_bounds(index: int) -> tuple[float, float]:
    """The durations (ms) bin ``index`` holds: ``[low, high)``."""
    if index == 0:
        return 0.0, 1.0
    return BIN_RATIO ** (index - 1), BIN_RATIO**index


def _tallies(rows: Counted, bucket: int, key_at: int) -> list[Tally]:
    """Rows of (bucket, status, ..., duration bin, count) summed into tallies by bucket,
    status and the column at ``key_at``."""
    sums: dict[tuple[int, str | None, str | None], list[int]] = {}
    for row in rows:
        key = row[key_at] if row[key_at] != "" else None
        counts = sums.setdefault((row[0] * bucket, row[1], key), [0] * (DURATION_BINS + 1))
        counts[DURATION_BINS] += row[-1]
        if row[-2] != NO_DURATION:
            counts[row[-2]] += row[-1]
    return [
        Tally(start, status, key, counts[DURATION_BINS], tuple(counts[:DURATION_BINS]))
        for (start, status, key), counts in sums.items()
    ]


def _row(org_id: OrgId, dimension: str, tally: Tally) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "dimension": dimension,
        "hours": 1,
        "hour": tally.bucket // HOUR,
        "status": tally.status or "",
        "key": tally.key or "",
        "count": tally.count,
        **dict(zip(BIN_COLUMNS, tally.durations, strict=True)),
    }


def _runs(stale: Sequence[StaleHour]) -> Iterable[tuple[OrgId, int, int]]:
    """Runs of consecutive hours of one organization: (org, first hour, end hour)."""
    run: tuple[OrgId, int, int] | None = None
    for hour in sorted(stale, key=lambda h: (h.org_id, h.hour)):
        if run is not None and run[0] == hour.org_id and run[2] == hour.hour:
            run = (run[0], run[1], hour.hour + 1)
            continue
        if run is not None:
            yield run
        run = (hour.org_id, hour.hour, hour.hour + 1)
    if run is not None:
        yield run
