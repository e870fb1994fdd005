"""The statistics route against the same numbers counted in Python from the records written."""

from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kbaudit.services.retention import purge
from kbaudit.services.stats import STALE_HOURS_A_TURN, refresh_stale_stats
from kbaudit.store.tables import stats_stale_hours
from tests.conftest import Api
from tests.helpers import RECORDS, record, seed_demo

STATS = "/v1/knowledge-base/audit/stats"
# Ragged on both ends: whole hours come from the hourly rows, the rest from the records.
WINDOW = {"start": "2026-05-12T10:17:00Z", "end": "2026-05-29T18:40:30Z"}


def text(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def keys_of(item: Any, group_by: str) -> list[str | None]:
    if group_by == "status":
        return [item.retrieval_status]
    if group_by == "kb_id":
        return sorted({str(s.knowledge_base_id) for s in item.scopes if s.knowledge_base_id})
    value = getattr(item, group_by)
    return [None if value is None else str(value)]


def expected_counts(
    items: list[Any], group_by: str, interval: timedelta, window: dict[str, str], **filters: Any
) -> dict[tuple[str, str | None], int]:
    start, end = (datetime.fromisoformat(window[name]) for name in ("start", "end"))
    counts: Counter[tuple[str, str | None]] = Counter()
    for item in items:
        at = item.created_at.astimezone(UTC)
        if not start <= at < end:
            continue
        if "statuses" in filters and item.retrieval_status not in filters["statuses"]:
            continue
        if "actor_user_id" in filters and str(item.actor_user_id) != filters["actor_user_id"]:
            continue
        bucket = (
            datetime.min.replace(tzinfo=UTC)
            + (at - datetime.min.replace(tzinfo=UTC)) // interval * interval
        )
        for key in keys_of(item, group_by):
            if "kb_ids" in filters and key not in filters["kb_ids"]:
                continue
            counts[text(bucket), key] += 1
    return dict(counts)


def got_counts(body: dict[str, Any]) -> dict[tuple[str, str | None], int]:
    return {
        (bucket["start"], group["key"]): group["count"]
        for bucket in body["buckets"]
        for group in bucket["groups"]
    }


@pytest.fixture
def seeded(api: Api) -> tuple[Api, dict[str, str], list[Any]]:
    key = api.key("acme")
    return api, key, seed_demo(api, key, 800)


@pytest.mark.parametrize("group_by", ["status", "kb_id", "agent_id", "serving_decision"])
@pytest.mark.parametrize("interval", ["hour", "day"])
def test_counts_match_the_records_for_every_grouping(
    seeded: tuple[Api, dict[str, str], list[Any]], group_by: str, interval: str
) -> None:
    api, key, items = seeded
    params = {**WINDOW, "group_by": group_by, "interval": interval}
    body = api.client.get(STATS, params=params, headers=key).json()
    length = timedelta(hours=1) if interval == "hour" else timedelta(days=1)
    assert got_counts(body) == expected_counts(items, group_by, length, WINDOW)
    starts = [bucket["start"] for bucket in body["buckets"]]
    assert starts[0] == text(
        datetime.fromisoformat(WINDOW["start"]).replace(minute=0)
        if interval == "hour"
        else datetime(2026, 5, 12, tzinfo=UTC)
    )
    assert len(starts) == len(set(starts))
    assert starts == sorted(starts)
    totals = {group["key"]: group["count"] for group in body["totals"]}
    per_key: Counter[str | None] = Counter()
    for (_, group_key), count in got_counts(body).items():
        per_key[group_key] += count
    assert totals == dict(per_key)


@pytest.mark.parametrize(
    ("group_by", "filters"),
    [
        ("status", {"statuses": ["miss", "blocked"]}),
        ("kb_id", {"statuses": ["hit"]}),
        ("agent_id", {"actor_user_id": None}),  # filled in below: counted from the records
        ("status", {"kb_ids": 1}),  # one: from the rows by knowledge base
        ("status", {"kb_ids": 2}),  # two: counted from the records, each once
        ("kb_id", {"kb_ids": 2}),
    ],
)
def test_filters_narrow_the_counts(
    seeded: tuple[Api, dict[str, str], list[Any]], group_by: str, filters: dict[str, Any]
) -> None:
    api, key, items = seeded
    if "actor_user_id" in filters:
        filters = {"actor_user_id": str(items[0].actor_user_id)}
    if "kb_ids" in filters:
        kbs = sorted({key for item in items for key in keys_of(item, "kb_id")})
        filters = {"kb_ids": kbs[: filters["kb_ids"]]}
    params = {**WINDOW, "group_by": group_by, "interval": "day", **filters}
    body = api.client.get(STATS, params=params, headers=key).json()
    if group_by != "kb_id" and "kb_ids" in filters:
        wanted = set(filters["kb_ids"])
        items = [i for i in items if wanted & set(keys_of(i, "kb_id"))]
        filters = {}
    expected = expected_counts(items, group_by, timedelta(days=1), WINDOW, **filters)
    assert expected
    assert got_counts(body) == expected


def test_percentiles_lie_within_a_bin_of_the_exact_ones(
    seeded: tuple[Api, dict[str, str], list[Any]],
) -> None:
    api, key, items = seeded
    body = api.client.get(STATS, params={**WINDOW, "interval": "day"}, headers=key).json()
    start, end = (datetime.fromisoformat(WINDOW[name]) for name in ("start", "end"))
    durations: dict[str, list[int]] = defaultdict(list)
    for item in items:
        if start <= item.created_at < end:
            durations[item.retrieval_status].append(item.duration_ms)
    for group in body["totals"]:
        ordered = sorted(durations[group["key"]])
        for q, name in ((0.5, "duration_ms_p50"), (0.95, "duration_ms_p95")):
            exact = ordered[math.ceil(q * len(ordered)) - 1]
            assert exact / 1.25 <= group[name] <= exact * 1.25, (group, exact)


def test_a_rewrite_and_a_purge_are_counted_again(api: Api) -> None:
    key = api.key("acme")
    first = record(
        created_at="2026-05-01T10:05:00Z",
        retrieval_status=None,
        audit_write_status="intent_recorded",
        duration_ms=40,
    )
    second = record(created_at="2026-05-01T11:05:00Z", retrieval_status="hit", duration_ms=80)
    api.client.post(RECORDS, json={"items": [first, second]}, headers=key)
    window = {"start": "2026-05-01T00:00:00Z", "end": "2026-05-02T00:00:00Z", "interval": "hour"}

    def counts() -> dict[tuple[str, str | None], int]:
        return got_counts(api.client.get(STATS, params=window, headers=key).json())

    assert counts() == {("2026-05-01T10:00:00Z", None): 1, ("2026-05-01T11:00:00Z", "hit"): 1}
    rewritten = {**first, "retrieval_status": "miss", "audit_write_status": "finalized"}
    assert api.client.post(RECORDS, json={"items": [rewritten]}, headers=key).status_code == 200
    assert counts() == {("2026-05-01T10:00:00Z", "miss"): 1, ("2026-05-01T11:00:00Z", "hit"): 1}
    policy = "/v1/knowledge-base/retention-policy"
    api.client.put(policy, json={"retention_days": 90}, headers=key)
    api.container.clock.now = datetime(2026, 9, 1, tzinfo=UTC)  # type: ignore[attr-defined]
    assert refresh_stale_stats(api.container.store) == 0  # the purge must mark its own hours
    assert purge(api.container.store, api.container.clock, api.container.archiver) == 2
    assert counts() == {}


def test_the_upkeep_counts_stale_hours_ahead_of_the_route(
    seeded: tuple[Api, dict[str, str], list[Any]],
) -> None:
    api, key, items = seeded
    stale = stale_hours(api)
    turns = [refresh_stale_stats(api.container.store)]
    while turns[-1] and len(turns) < 50:
        turns.append(refresh_stale_stats(api.container.store))
    assert sum(turns) == stale
    assert max(turns) == STALE_HOURS_A_TURN  # a bounded share a turn
    assert stale_hours(api) == 0
    body = api.client.get(STATS, params={**WINDOW, "interval": "day"}, headers=key).json()
    assert got_counts(body) == expected_counts(items, "status", timedelta(days=1), WINDOW)


def stale_hours(api: Api) -> int:
    from sqlalchemy import func, select

    with api.container.store.engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(stats_stale_hours)).scalar_one()
        )


@pytest.mark.scaleout  # SQLite has one writer: counting and writing take turns there
def test_writers_never_wait_for_the_count_of_their_hour(api: Api) -> None:
    """On PostgreSQL, an hour being counted (by the upkeep, or a stats call) is the counter's
    alone, yet records written into it meanwhile go through: under a lock on the hour's
    stale row, every writer waited for the whole count (seconds, in the soak run)."""
    key = api.key()
    assert api.client.post(RECORDS, json={"items": [record()]}, headers=key).status_code == 200
    every_hour = (-(2**62), 2**62)
    store = api.container.store
    with store.writing() as counting:
        assert len(counting.stats.stale(None, every_hour, 10)) == 1
        with store.writing() as another_counter:
            assert another_counter.stats.stale(None, every_hour, 10) == []
        written: list[int] = []
        writer = threading.Thread(
            target=lambda: written.append(
                api.client.post(RECORDS, json={"items": [record()]}, headers=key).status_code
            )
        )
        writer.start()
        writer.join(timeout=20)
        assert written == [200]  # while the count is still open
    writer.join()
    assert refresh_stale_stats(store) == 1
    answer = api.client.get(STATS, params=WINDOW | {"start": "2026-05-01T00:00:00Z"}, headers=key)
    assert answer.json()["totals"] == [
        {"key": "hit", "count": 2, "duration_ms_p50": None, "duration_ms_p95": None}
    ]


def test_organizations_see_only_their_own_numbers(
    seeded: tuple[Api, dict[str, str], list[Any]],
) -> None:
    api, _, _ = seeded
    other = api.key("globex")
    body = api.client.get(STATS, params=WINDOW, headers=other).json()
    assert body["totals"] == []
    assert all(bucket["groups"] == [] for bucket in body["buckets"])


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"group_by": "caller"}, 422, None),
        ({"interval": "minute"}, 422, None),
        ({"start": WINDOW["end"], "end": WINDOW["start"]}, 422, None),
        ({"start": "2020-01-01T00:00:00Z", "interval": "hour"}, 422, "invalid_request"),
        ({"statuses": "served"}, 422, None),
    ],
)
def test_bad_questions_get_a_clear_answer(
    api: Api, params: dict[str, str], status: int, code: str | None
) -> None:
    response = api.client.get(STATS, params={**WINDOW, **params}, headers=api.key())
    assert response.status_code == status, response.text
    if code:
        [problem] = response.json()["detail"]
        assert problem["type"] == code
        assert "at most 2000 buckets" in problem["msg"]


def test_the_route_needs_the_read_scope(api: Api) -> None:
    key = api.key("acme", scopes=("kb_audit:write",))
    assert api.client.get(STATS, params=WINDOW, headers=key).status_code == 403
