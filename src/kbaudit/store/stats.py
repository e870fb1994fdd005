"""Statistics of records, counted in the database: straight from the records, or summed from
the hourly rows of ``stats_hours``.

A duration goes into one of ``DURATION_BINS`` bins: bin 0 holds durations under 1 ms, bin
``i`` those in ``[BIN_RATIO**(i-1), BIN_RATIO**i)`` ms, the last everything above. Bins add up
across hours and keys, so a percentile of any sum of them is found within one bin (12%).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    Integer,
    String,
    and_,
    case,
    cast,
    delete,
    func,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from kbaudit.document import instant_of
from kbaudit.domain import OrgId, RecordFilters
from kbaudit.store.records import HOUR, filter_conditions
from kbaudit.store.tables import DURATION_BINS, record_kbs, records, stats_hours, stats_stale_hours

BIN_RATIO = 1.25
DIMENSIONS = ("status", "kb_id", "agent_id", "serving_decision")
BIN_COLUMNS = tuple(f"d{index:02d}" for index in range(DURATION_BINS))
NO_DURATION = -1


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
        r = records.c
        duration = cast(self._field("duration_ms"), Float)
        by_kb = dimension == "kb_id"
        # By knowledge base, the join below picks them.
        conditions = filter_conditions(org_id, replace(filters, kb_ids=()) if by_kb else filters)
        each = select(
            (r.created_at // bucket).label("bucket"),
            r.retrieval_status.label("status"),
            self._key(dimension).label("key"),
            _bin_of(duration).label("bin"),
        ).where(*conditions)
        if by_kb:
            k = record_kbs.c
            each = each.join_from(
                records,
                record_kbs,
                and_(k.org_id == r.org_id, k.created_at == r.created_at, k.seq == r.seq),
            )
            if filters.kb_ids:
                each = each.where(k.kb_id.in_([uuid.UUID(kb).bytes for kb in filters.kb_ids]))
        # Grouped outside: PostgreSQL would not match the select's expressions to GROUP BY's
        # (each has parameters of its own).
        rows = each.subquery()
        query = select(rows.c.bucket, rows.c.status, rows.c.key, rows.c.bin, func.count()).group_by(
            rows.c.bucket, rows.c.status, rows.c.key, rows.c.bin
        )
        tallies: dict[tuple[int, str | None, str | None], list[int]] = {}
        for index, status, raw_key, bin_index, count in self._connection.execute(query):
            durations = tallies.setdefault(
                (index * bucket, status, _key_text(dimension, raw_key)), [0] * (DURATION_BINS + 1)
            )
            durations[DURATION_BINS] += count
            if bin_index != NO_DURATION:
                durations[bin_index] += count
        return [
            Tally(start, status, key_text, counts[DURATION_BINS], tuple(counts[:DURATION_BINS]))
            for (start, status, key_text), counts in tallies.items()
        ]

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
        ``bucket``-long buckets (a whole number of hours)."""
        s = stats_hours.c
        hours_a_bucket = bucket // HOUR
        each = select(
            (s.hour // hours_a_bucket).label("bucket"), s.status, s.key, s.count, *s[BIN_COLUMNS]
        ).where(
            s.org_id == org_id,
            s.dimension == dimension,
            s.hour >= hours[0],
            s.hour < hours[1],
        )
        if statuses:
            each = each.where(s.status.in_(statuses))
        if keys:
            each = each.where(s.key.in_(keys))
        rows = each.subquery()
        query = select(
            rows.c.bucket,
            rows.c.status,
            rows.c.key,
            func.sum(rows.c.count),
            *(func.sum(rows.c[name]) for name in BIN_COLUMNS),
        ).group_by(rows.c.bucket, rows.c.status, rows.c.key)
        return [
            Tally(
                row[0] * bucket,
                row[1] or None,
                row[2] or None,
                int(row[3]),
                tuple(int(value) for value in row[4:]),
            )
            for row in self._connection.execute(query)
        ]

    # -- keeping stats_hours ----------------------------------------------------------------

    def stale(self, org_id: OrgId | None, hours: tuple[int, int], limit: int) -> list[StaleHour]:
        """Up to ``limit`` stale hours in ``[first, end)``, oldest first, of one organization
        or of any. On PostgreSQL they stay locked until the transaction ends, so that two
        hosts never compute the same hour at once."""
        s = stats_stale_hours.c
        query = (
            select(s.org_id, s.hour, s.version)
            .where(s.hour >= hours[0], s.hour < hours[1])
            .order_by(s.org_id, s.hour)
            .limit(limit)
        )
        if org_id is not None:
            query = query.where(s.org_id == org_id)
        if self._connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return [StaleHour(OrgId(row[0]), row[1], row[2]) for row in self._connection.execute(query)]

    def recompute(self, stale: Sequence[StaleHour]) -> None:
        """Count the stale hours again from their records. An hour written to meanwhile (its
        version moved on) stays stale."""
        for org_id, first, end in _runs(stale):
            window = RecordFilters(start=instant_of(first * HOUR), end=instant_of(end * HOUR))
            s = stats_hours.c
            self._connection.execute(
                delete(stats_hours).where(s.org_id == org_id, s.hour >= first, s.hour < end)
            )
            rows = [
                _row(org_id, dimension, tally)
                for dimension in DIMENSIONS
                for tally in self.computed(org_id, dimension, window, HOUR)
            ]
            if rows:
                self._connection.execute(stats_hours.insert(), rows)
        t = stats_stale_hours.c
        for chunk in _chunks([(h.org_id, h.hour, h.version) for h in stale], 300):
            self._connection.execute(
                delete(stats_stale_hours).where(tuple_(t.org_id, t.hour, t.version).in_(chunk))
            )

    # -- the parts of a document ------------------------------------------------------------

    def _key(self, dimension: str) -> Any:
        if dimension == "status":
            return records.c.retrieval_status
        if dimension == "kb_id":
            return record_kbs.c.kb_id
        return self._field(dimension)

    def _field(self, name: str) -> ColumnElement[Any]:
        """A top-level field of the record's document, as text."""
        if self._connection.dialect.name == "postgresql":
            text: ColumnElement[Any] = cast(records.c.document, postgresql.JSONB)[name].astext
            return text
        return cast(func.json_extract(records.c.document, f"$.{name}"), String)


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


def _key_text(dimension: str, raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    if dimension == "kb_id":
        return str(uuid.UUID(bytes=bytes(raw)))
    return str(raw)


def _row(org_id: OrgId, dimension: str, tally: Tally) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "dimension": dimension,
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


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for offset in range(0, len(items), size):
        yield items[offset : offset + size]
