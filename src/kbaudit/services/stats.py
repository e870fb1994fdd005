"""Statistics of records for charts: counts and duration percentiles by hour or day, grouped by
status, knowledge base, agent or serving decision.

Whole hours come from the hourly rows the store keeps (``store/stats.py``), counted again
first where records changed; the ragged ends of a window, and filters those rows cannot
answer (actor, session, knowledge bases unless grouping by them), are counted from the
records. Either way the database does the counting.
"""

from __future__ import annotations

import operator
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate
from typing import Literal

from kbaudit.document import instant_of, micros
from kbaudit.domain import Caller, OrgId
from kbaudit.errors import InvalidRequest
from kbaudit.filters import RecordFilters
from kbaudit.services.access import record_access
from kbaudit.services.clock import Clock
from kbaudit.store.records import HOUR
from kbaudit.store.stats import DIMENSIONS, Tally, bin_bounds
from kbaudit.store.unit_of_work import Store

Interval = Literal["hour", "day"]
INTERVALS: dict[str, int] = {"hour": HOUR, "day": 24 * HOUR}
HOURLY_UP_TO = 48 * HOUR  # the interval chosen when none is asked for: hours up to two days
MAX_BUCKETS = 2_000
HOURS_A_TRANSACTION = 48  # what a stats call counts again at a time, before it answers
# The upkeep's share: on SQLite a recount holds the one write lock, and during a bulk load
# every hour it writes is stale again by the next turn. Short transactions and a bounded turn
# keep writers waiting at most about 0.3 s (six hours of 1,400 records) and leave them most
# of the time; the upkeep comes back every KBAUDIT_SWEEP_INTERVAL_SECONDS.
UPKEEP_HOURS_A_TRANSACTION = 6
STALE_HOURS_A_TURN = 120


@dataclass(frozen=True, slots=True)
class Group:
    key: str | None
    count: int
    duration_ms_p50: float | None
    duration_ms_p95: float | None


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    groups: list[Group]


@dataclass(frozen=True, slots=True)
class Stats:
    interval: str
    group_by: str
    buckets: list[Bucket]
    totals: list[Group]


def retrieval_stats(
    store: Store,
    clock: Clock,
    caller: Caller,
    filters: RecordFilters,
    *,
    interval: str | None = None,
    group_by: str = "status",
) -> Stats:
    if group_by not in DIMENSIONS:
        raise InvalidRequest(
            f"group_by must be one of {', '.join(DIMENSIONS)}", field=("query", "group_by")
        )
    chosen = interval or _interval_for(filters)
    if chosen not in INTERVALS:
        raise InvalidRequest("interval must be hour or day", field=("query", "interval"))
    length = INTERVALS[chosen]
    starts = _bucket_starts(filters, length)
    if len(starts) > MAX_BUCKETS:
        raise InvalidRequest(
            f"the window holds {len(starts)} {chosen}s; at most {MAX_BUCKETS} buckets "
            "(choose a shorter window or interval=day)",
            field=("query", "interval"),
        )
    tallies = _tallies(store, caller.org_id, filters, group_by, length)
    record_access(
        store,
        clock,
        caller,
        "stats",
        result_count=sum(tally.count for tally in tallies),
        details={"filters": filters.describe(), "interval": chosen, "group_by": group_by},
    )
    return _summarise(chosen, group_by, starts, tallies)


def refresh_stale_stats(store: Store, limit: int = STALE_HOURS_A_TURN) -> int:
    """Count again up to ``limit`` hours whose records changed, of any organization; the
    upkeep's share, so that the stats route seldom has to. Returns how many."""
    return _refresh(store, None, (-(2**62), 2**62), limit, UPKEEP_HOURS_A_TRANSACTION)


def _refresh(
    store: Store,
    org_id: OrgId | None,
    hours: tuple[int, int],
    limit: int,
    per_transaction: int = HOURS_A_TRANSACTION,
) -> int:
    done = 0
    while done < limit:
        with store.writing() as uow:
            stale = uow.stats.stale(org_id, hours, min(per_transaction, limit - done))
            if not stale:
                break
            uow.stats.recompute(stale)
            uow.commit()
        done += len(stale)
    return done


def _tallies(
    store: Store, org_id: OrgId, filters: RecordFilters, group_by: str, length: int
) -> list[Tally]:
    first = -(-micros(filters.start) // HOUR)  # the first whole hour
    end = micros(filters.end) // HOUR
    rows = _rows_for(filters, group_by)
    if rows is None or first >= end:
        with store.reading() as uow:
            return uow.stats.computed(org_id, group_by, filters, length)
    _refresh(store, org_id, (first, end), limit=2**62)
    # Possibly empty windows, so not validated as a request's would be.
    head = filters.model_copy(update={"end": instant_of(first * HOUR)})
    tail = filters.model_copy(update={"start": instant_of(end * HOUR)})
    with store.reading() as uow:
        kb_ids = [str(kb) for kb in filters.kb_ids or ()]
        tallies = uow.stats.summed(
            org_id, rows, (first, end), length, filters.statuses or (), kb_ids
        )
        for edge in (head, tail):
            if edge.start < edge.end:
                tallies += uow.stats.computed(org_id, group_by, edge, length)
    return tallies


def _rows_for(filters: RecordFilters, group_by: str) -> str | None:
    """The dimension of the hourly rows that answer these filters, if any does. Rows by
    knowledge base also answer one knowledge base's counts by status; for several, a record
    in two of them would count twice. The rows know nothing of any other filter."""
    if set(filters.narrowed_by()) - {"statuses", "kb_ids"}:
        return None
    if not filters.kb_ids or group_by == "kb_id":
        return group_by
    if len(filters.kb_ids) == 1 and group_by == "status":
        return "kb_id"
    return None


def _interval_for(filters: RecordFilters) -> str:
    return "hour" if micros(filters.end) - micros(filters.start) <= HOURLY_UP_TO else "day"


def _bucket_starts(filters: RecordFilters, length: int) -> range:
    first = micros(filters.start) // length * length
    return range(first, micros(filters.end), length)


@dataclass(slots=True)
class _Sum:
    count: int = 0
    durations: Sequence[int] = ()

    def add(self, tally: Tally) -> None:
        self.count += tally.count
        if self.durations:
            self.durations = list(map(operator.add, self.durations, tally.durations))
        else:
            self.durations = tally.durations

    def group(self, key: str | None) -> Group:
        cumulative = list(accumulate(self.durations))
        p50, p95 = percentile(cumulative, 0.5), percentile(cumulative, 0.95)
        return Group(key, self.count, p50, p95)


def _summarise(interval: str, group_by: str, starts: range, tallies: Iterable[Tally]) -> Stats:
    by_bucket: dict[int, dict[str | None, _Sum]] = {start: {} for start in starts}
    totals: dict[str | None, _Sum] = {}
    for tally in tallies:
        key = tally.status if group_by == "status" else tally.key
        by_bucket[tally.bucket].setdefault(key, _Sum()).add(tally)
        totals.setdefault(key, _Sum()).add(tally)
    return Stats(
        interval=interval,
        group_by=group_by,
        buckets=[Bucket(instant_of(start), _groups(groups)) for start, groups in by_bucket.items()],
        totals=_groups(totals),
    )


def _groups(sums: dict[str | None, _Sum]) -> list[Group]:
    """Largest first; ties by key, with records that have no key last."""
    ordered = sorted(
        sums.items(), key=lambda item: (-item[1].count, item[0] is None, item[0] or "")
    )
    return [total.group(key) for key, total in ordered]


def percentile(cumulative: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of binned durations (given as running totals over the bins),
    placed linearly inside its bin; None when no record has a duration."""
    if not cumulative or cumulative[-1] == 0:
        return None
    rank = q * cumulative[-1]
    index = bisect_left(cumulative, rank)
    below = cumulative[index - 1] if index else 0
    low, high = bin_bounds(index)
    return round(low + (high - low) * (rank - below) / (cumulative[index] - below), 1)
