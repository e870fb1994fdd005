"""The overview (counts, a chart, the knowledge bases) and the records: a table of what the
query route returns, and one record with its proof of inclusion."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import Request, Response

from kbaudit.api.auth import container_of
from kbaudit.api.console.forms import RecordQuery, Window
from kbaudit.api.console.guard import console_router, signed_in
from kbaudit.api.console.rendering import page, refusal
from kbaudit.document import summary_values
from kbaudit.domain import RETRIEVAL_STATUSES, Caller
from kbaudit.errors import KbAuditError
from kbaudit.services.log import proof_status
from kbaudit.services.query import query_records, record_detail
from kbaudit.services.stats import Stats, retrieval_stats

router = console_router()


@router.get("")
def overview(request: Request) -> Response:
    caller, session = signed_in(request)
    container = container_of(request)
    window = Window.parse(request.query_params, container.clock())
    filters = window.filters()

    def stats(group_by: str, **narrowed: Any) -> Stats:
        asked = filters.model_copy(update=narrowed)
        return retrieval_stats(container.store, container.clock, caller, asked, group_by=group_by)

    by_status = stats("status")
    by_kb = stats("kb_id")
    misses = {g.key: g.count for g in stats("kb_id", statuses=("miss",)).totals}
    blocked = {g.key: g.count for g in stats("kb_id", statuses=("blocked",)).totals}
    knowledge_bases = [
        {
            "id": group.key,
            "count": group.count,
            "miss_rate": misses.get(group.key, 0) / group.count,
            "blocked_rate": blocked.get(group.key, 0) / group.count,
            "p50": group.duration_ms_p50,
            "p95": group.duration_ms_p95,
        }
        for group in by_kb.totals[:10]
    ]
    context = {
        "window": window,
        "chart": _chart(by_status),
        "statuses": by_status.totals,
        "total": sum(group.count for group in by_status.totals),
        "knowledge_bases": knowledge_bases,
    }
    return page(request, "overview.html", context, caller, session)


def _chart(stats: Stats) -> dict[str, Any]:
    """The stacked chart's data: one series a status, counts a bucket."""
    series = {status: [0] * len(stats.buckets) for status in RETRIEVAL_STATUSES}
    for index, bucket in enumerate(stats.buckets):
        for group in bucket.groups:
            if group.key in series:
                series[group.key][index] = group.count
    return {
        "interval": stats.interval,
        "x": [int(bucket.start.timestamp()) for bucket in stats.buckets],
        "series": [{"label": status, "values": values} for status, values in series.items()],
    }


@router.get("/records")
def records_page(request: Request) -> Response:
    caller, session = signed_in(request)
    query = RecordQuery.parse(request.query_params, container_of(request).clock())
    context: dict[str, Any] = {"query": query, "problem": None}
    try:
        context |= _records(request, caller, query)
    except KbAuditError as exc:
        problem, status = refusal(exc)
        context |= {"problem": problem, "rows": [], "more": None}
        return page(request, "records.html", context, caller, session, status)
    return page(request, "records.html", context, caller, session)


@router.get("/records/rows")
def record_rows(request: Request) -> Response:
    """The next page of the table, for "Load more"."""
    caller, session = signed_in(request)
    query = RecordQuery.parse(request.query_params, container_of(request).clock())
    return page(request, "_record_rows.html", _records(request, caller, query), caller, session)


def _records(request: Request, caller: Caller, query: RecordQuery) -> dict[str, Any]:
    container = container_of(request)
    result = query_records(
        container.store,
        container.clock,
        container.cursor_codec,
        caller,
        query.filters(),
        limit=50,
        cursor=query.cursor,
    )
    more = None
    if result.has_more and result.next_cursor:
        more = urlencode([*query.params(), ("cursor", result.next_cursor)])
    return {"rows": [summary_values(item) for item in result.items], "more": more}


@router.get("/records/{ref}")
def record_page(request: Request, ref: str) -> Response:
    caller, session = signed_in(request)
    container = container_of(request)
    detail = record_detail(container.store, container.clock, caller, ref)
    proof = proof_status(container.store, container.clock, caller, ref)
    context = {"log": detail.log, "scopes": detail.scopes, "refs": detail.refs, "proof": proof}
    return page(request, "record.html", context, caller, session)
