"""Routes for exports: create, list, view, download."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from kbaudit.api.auth import container_of, require_scope
from kbaudit.api.bodies import KIB, json_route
from kbaudit.api.retrievals import ERROR_RESPONSES
from kbaudit.api.schemas import CursorPage, ErrorResponse, ExportJobResponse, ExportRequest
from kbaudit.api.streaming import accepts_zstd, file_headers, one_ahead, parse_range
from kbaudit.domain import Caller, JobStatus
from kbaudit.services.exports.download import open_download
from kbaudit.services.exports.jobs import (
    ExportView,
    create_export,
    get_export,
    list_exports,
)

DOWNLOAD_PATH = "/exports/{export_id}/download/{file_name}"
router = APIRouter(
    route_class=json_route(1024 * KIB),
    prefix="/v1/knowledge-base/audit",
    tags=["knowledge-base-audit"],
)


def as_response(view: ExportView) -> dict[str, Any]:
    return view.as_dict()


@router.post(
    "/exports",
    status_code=202,
    response_model=ExportJobResponse,
    summary="Request an async encrypted KB audit export",
    operation_id="requestKBAuditExport",
    responses={409: {"model": ErrorResponse}},
)
def request_export(
    request: Request,
    body: ExportRequest,
    caller: Annotated[Caller, Depends(require_scope("kb_audit:export"))],
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
    ] = None,
) -> dict[str, Any]:
    container = container_of(request)
    return as_response(create_export(container.exports, caller, body.spec(), idempotency_key))


@router.get(
    "/exports",
    response_model=CursorPage[ExportJobResponse],
    summary="List this org's KB audit export jobs (newest first)",
    operation_id="listKBAuditExports",
)
def list_export_jobs(
    request: Request,
    caller: Annotated[Caller, Depends(require_scope("kb_audit:read"))],
    status: Annotated[JobStatus | None, Query(description="Optional status filter.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="Opaque cursor from a prior page.")] = None,
) -> dict[str, Any]:
    container = container_of(request)
    page = list_exports(container.exports, container.cursor_codec, caller, status, limit, cursor)
    return {
        "items": [as_response(view) for view in page.items],
        "next_cursor": page.next_cursor,
        "has_more": page.has_more,
    }


@router.get(
    "/exports/{export_id}",
    response_model=ExportJobResponse,
    summary="Get an audit export job's status + per-file download tokens",
    operation_id="getKBAuditExport",
    responses=ERROR_RESPONSES,
)
def view_export(
    request: Request,
    caller: Annotated[Caller, Depends(require_scope("kb_audit:read"))],
    export_id: Annotated[UUID, Path()],
) -> dict[str, Any]:
    return as_response(get_export(container_of(request).exports, caller, str(export_id)))


@router.get(
    DOWNLOAD_PATH,
    summary="Server-mediated, decrypted download of one export file",
    operation_id="downloadKBAuditExportFile",
    responses={**ERROR_RESPONSES, 410: {"model": ErrorResponse}},
)
async def download_export_file(
    request: Request,
    caller: Annotated[Caller, Depends(require_scope("kb_audit:export"))],
    export_id: Annotated[UUID, Path()],
    file_name: Annotated[str, Path()],
    token: Annotated[str, Query(description="Short-lived HMAC download token.")],
    byte_range: Annotated[str | None, Header(alias="range", include_in_schema=False)] = None,
    if_range: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """``HEAD`` answers the headers alone; ``Range: bytes=...`` (one range) resumes a
    download with a 206, unless ``If-Range`` names another version of the file. A client
    whose ``Accept-Encoding`` takes zstd gets a whole data file zstd-coded."""
    deps = container_of(request).exports
    head = request.method == "HEAD"
    # The checks and the first segment's decryption touch the database and disk: off the loop.
    download = await asyncio.to_thread(
        open_download,
        deps,
        caller,
        str(export_id),
        file_name,
        token,
        wanted=parse_range(byte_range),
        only_if_version=None if if_range is None else if_range.strip('"'),
        head=head,
        zstd_accepted=accepts_zstd(request),
    )
    headers = {**file_headers(download), "Accept-Ranges": "bytes", "Cache-Control": "no-store"}
    status = 200
    if download.partial:
        status = 206
        headers["Content-Range"] = f"bytes {download.start}-{download.stop - 1}/{download.size}"
    if head:
        answer = Response(status_code=status, media_type=download.content_type, headers=headers)
        if download.encoding:
            del answer.headers["content-length"]  # Starlette's 0 for the empty body; unknown
        return answer
    return StreamingResponse(
        one_ahead(download.chunks),
        status_code=status,
        media_type=download.content_type,
        headers=headers,
    )


# The same handler answers HEAD, outside the OpenAPI document (one operation a route there).
router.add_api_route(DOWNLOAD_PATH, download_export_file, methods=["HEAD"], include_in_schema=False)
