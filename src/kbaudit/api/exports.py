"""Routes for exports: create, list, view, download."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from kbaudit.api.auth import container_of, require_scope
from kbaudit.api.retrievals import ERROR_RESPONSES
from kbaudit.api.schemas import CursorPage, ErrorResponse, ExportJobResponse, ExportRequest
from kbaudit.api.strict_json import StrictJsonRoute
from kbaudit.domain import Caller, JobStatus
from kbaudit.services.exports.download import Download, Wanted, open_download
from kbaudit.services.exports.jobs import (
    ExportView,
    create_export,
    get_export,
    list_exports,
)

DOWNLOAD_PATH = "/exports/{export_id}/download/{file_name}"
router = APIRouter(
    route_class=StrictJsonRoute, prefix="/v1/knowledge-base/audit", tags=["knowledge-base-audit"]
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
    headers = {
        "Content-Disposition": f'attachment; filename="{download.file_name}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "no-store",
        **coding_headers(download),
    }
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


# RFC 9110 section 12.4.2: a weight of zero, "q=0" to "q=0.000", refuses the coding.
_REFUSED = re.compile(r"q=0(\.0{0,3})?")


def accepts_zstd(request: Request) -> bool:
    """Whether the request's ``Accept-Encoding`` names zstd without refusing it."""
    for coding in request.headers.get("accept-encoding", "").split(","):
        name, _, weight = coding.partition(";")
        if name.strip().lower() == "zstd":
            return not _REFUSED.fullmatch(weight.strip().lower().replace(" ", ""))
    return False


def coding_headers(download: Download) -> dict[str, str]:
    """The headers that depend on the content coding. A zstd-coded file is a representation
    of its own: its length is unknown until it is sent, and its ETag differs from the decoded
    file's (RFC 9110 section 8.8.3)."""
    if download.encoding is None:
        return {
            "Vary": "Accept-Encoding",
            "Content-Length": str(download.stop - download.start),
            "ETag": f'"{download.sha256}"',
        }
    return {
        "Vary": "Accept-Encoding",
        "Content-Encoding": download.encoding,
        "ETag": f'"{download.sha256}+{download.encoding}"',
    }


def parse_range(header: str | None) -> Wanted | None:
    """One ``bytes=`` range, else None (the whole file: several ranges, other units and
    malformed headers are ignored, as RFC 9110 lets a server do)."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, dash, last = header.removeprefix("bytes=").strip().partition("-")
    if not dash or not (first or last) or not (first + last).isdigit():
        return None
    if not first:
        return None, int(last)
    return int(first), int(last) if last else None


async def one_ahead(chunks: Iterator[bytes]) -> AsyncIterator[memoryview]:
    """Decrypt the next chunk in a thread while the current one is on the wire. The thread is
    handed the work before the chunk goes to the server, not when the loop next gets control:
    after the send, decrypting and sending would take turns."""
    loop = asyncio.get_running_loop()
    pending = loop.run_in_executor(None, next, chunks, None)
    try:
        while (chunk := await pending) is not None:
            pending = loop.run_in_executor(None, next, chunks, None)
            # A view: the loop's transport slices off what the socket took, and slicing 8 MB
            # of bytes would copy the rest once more (2-5 points of raw speed).
            yield memoryview(chunk)
    finally:
        if not pending.done():
            await asyncio.wait([pending])
        await asyncio.to_thread(_close, chunks)


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
