"""The statistics route (kbaudit's addition): counts and duration percentiles for charts."""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from kbaudit.api.auth import container_of, require_scope
from kbaudit.api.depends import Filters
from kbaudit.api.schemas import StatsResponse
from kbaudit.domain import Caller
from kbaudit.services.stats import retrieval_stats

router = APIRouter(prefix="/v1/knowledge-base/audit", tags=["knowledge-base-audit"])


@router.get(
    "/stats",
    response_model=StatsResponse,
    summary="Counts and duration percentiles by hour or day (kbaudit addition)",
    operation_id="getKBRetrievalAuditStats",
    description="Buckets cover the window; a bucket's `start` is the hour or UTC day it "
    "lies in. `interval` defaults to `hour` for windows up to 48 hours, else `day`. "
    "Grouped by `kb_id`, a record counts once for each knowledge base its scopes name.",
)
def stats(
    request: Request,
    caller: Annotated[Caller, Depends(require_scope("kb_audit:read"))],
    filters: Filters,
    interval: Annotated[Literal["hour", "day"] | None, Query()] = None,
    group_by: Annotated[
        Literal["status", "kb_id", "agent_id", "serving_decision"], Query()
    ] = "status",
) -> Response:
    container = container_of(request)
    result = retrieval_stats(
        container.store,
        container.clock,
        caller,
        filters,
        interval=interval,
        group_by=group_by,
    )
    return Response(orjson.dumps(result, option=orjson.OPT_UTC_Z), media_type="application/json")
