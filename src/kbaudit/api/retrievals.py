"""Routes for retrieval audit records: batch write, query and detail."""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from kbaudit.api.auth import container_of, require_scope
from kbaudit.api.bodies import read_body
from kbaudit.api.depends import Filters
from kbaudit.api.errors import from_msgspec, validation_error
from kbaudit.api.schemas import (
    CursorPage,
    ErrorResponse,
    IngestResponse,
    RetrievalAuditDetailResponse,
    RetrievalAuditLogSummary,
)
from kbaudit.decoding import JsonRefused, check_json
from kbaudit.domain import INSTANT_RANGE, Caller, RecordBatch, instant_out_of_range
from kbaudit.services.ingest import Outcome, ingest_records
from kbaudit.services.query import query_records, record_detail

router = APIRouter(prefix="/v1/knowledge-base/audit", tags=["knowledge-base-audit"])
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Authentication required"},
    400: {"model": ErrorResponse, "description": "Bad request"},
    404: {"model": ErrorResponse, "description": "Resource not found"},
}


@router.post(
    "/retrievals",
    response_model=IngestResponse,
    summary="Write a batch of retrieval audit records (kbaudit addition)",
    operation_id="writeKBRetrievalAudits",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/RecordBatch"}}
            },
        }
    },
    responses={409: {"model": ErrorResponse}, 413: {"model": ErrorResponse}},
)
async def write_retrievals(
    request: Request, caller: Annotated[Caller, Depends(require_scope("kb_audit:write"))]
) -> IngestResponse:
    container = container_of(request)
    body = await read_body(request, container.settings.max_body_bytes)
    # Parsing a large batch is CPU work: keep it off the event loop, next to the write.
    batch = await run_in_threadpool(_decode_batch, body, container.settings.max_batch_records)
    result = await run_in_threadpool(
        ingest_records, container.store, container.clock, caller.org_id, batch.items
    )
    for outcome in Outcome:
        container.metrics.records_written.labels(outcome.value).inc(result.count(outcome))
    return IngestResponse.model_validate(
        {
            "items": [
                {"id": item.id, "ref": item.ref, "outcome": item.outcome.value}
                for item in result.outcomes
            ],
            "created": result.count(Outcome.CREATED),
            "updated": result.count(Outcome.UPDATED),
            "unchanged": result.count(Outcome.UNCHANGED),
        }
    )


def _decode_batch(body: bytes, max_records: int) -> RecordBatch:
    """The batch, decoded and checked. msgspec reads first: it stops at the first thing
    that is not a record, holding little (a duplicate-key pass that built every object first
    held 1 GB for 32 MiB of ``{}``). The strict reading, which alone sees a key given twice,
    then runs over a body known to be records, dropping each object as it goes."""
    batch = _records_of(body)
    if len(batch.items) <= max_records:
        try:
            check_json(body)
        except JsonRefused as exc:
            raise validation_error(("body",), exc.msg, None, exc.kind) from exc
    if not 1 <= len(batch.items) <= max_records:
        raise validation_error(
            ("body", "items"),
            f"a batch holds 1 to {max_records} records; this one has {len(batch.items)}",
            None,
            "too_long" if batch.items else "too_short",
        )
    for index, item in enumerate(batch.items):
        if name := instant_out_of_range(item):
            raise validation_error(
                ("body", "items", index, name),
                f"instants must lie {INSTANT_RANGE}",
                str(getattr(item, name)),
                "instant_range",
            )
    return batch


def _records_of(body: bytes) -> RecordBatch:
    try:
        return msgspec.json.decode(body, type=RecordBatch)
    except UnicodeDecodeError as exc:
        raise validation_error(("body",), "the body is not valid UTF-8", None, "utf8") from exc
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: caught first
        raise from_msgspec(exc) from exc
    except msgspec.DecodeError as exc:
        raise from_msgspec(_clearer(body, exc)) from exc


def _clearer(body: bytes, exc: msgspec.DecodeError) -> msgspec.DecodeError:
    """msgspec calls a lone surrogate escape (``\\ud800``) truncated input: JSON that the
    standard library reads whole is not truncated."""
    if not str(exc).startswith("Input data was truncated"):
        return exc
    try:
        check_json(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return exc
    return msgspec.DecodeError("a string holds a lone surrogate escape (\\ud800 to \\udfff)")


@router.get(
    "/retrievals",
    response_model=CursorPage[RetrievalAuditLogSummary],
    summary="Query governed KB retrieval-audit logs (incl. misses/blocks/errors)",
    operation_id="queryKBRetrievalAudits",
)
def query_retrievals(
    request: Request,
    caller: Annotated[Caller, Depends(require_scope("kb_audit:read"))],
    filters: Filters,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query()] = None,
) -> Response:
    container = container_of(request)
    page = query_records(
        container.store,
        container.clock,
        container.cursor_codec,
        caller,
        filters,
        limit=limit,
        cursor=cursor,
    )
    # The items are the canonical documents' own bytes in the contract's shapes already:
    # writing them out directly spares the response model's validation.
    body = {"items": page.items, "next_cursor": page.next_cursor, "has_more": page.has_more}
    return Response(msgspec.json.encode(body), media_type="application/json")


@router.get(
    "/retrievals/{ref}",
    response_model=RetrievalAuditDetailResponse,
    summary="Get one retrieval-audit log with its scopes and chunk refs",
    operation_id="getKBRetrievalAuditDetail",
    responses=ERROR_RESPONSES,
)
def retrieval_detail(
    request: Request,
    caller: Annotated[Caller, Depends(require_scope("kb_audit:read"))],
    ref: Annotated[str, Path()],
) -> Response:
    container = container_of(request)
    detail = record_detail(container.store, container.clock, caller, ref)
    body = {"log": detail.log, "scopes": detail.scopes, "refs": detail.refs}
    return Response(orjson.dumps(body), media_type="application/json")
