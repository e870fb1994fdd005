"""Exports: the organization's list, a form to request one, an export's page, and its files
through the same checks as the API's downloads."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from kbaudit.api.auth import container_of
from kbaudit.api.console.forms import ExportForm
from kbaudit.api.console.guard import console_router, posted_form, signed_in
from kbaudit.api.console.rendering import EXPORT, page, refusal
from kbaudit.api.console.session import Session
from kbaudit.api.streaming import accepts_zstd, file_headers, one_ahead
from kbaudit.domain import Caller, JobStatus
from kbaudit.errors import KbAuditError, NotFound
from kbaudit.services.exports.download import open_download
from kbaudit.services.exports.jobs import check_manifest, create_export, get_export, list_exports

router = console_router()
EXPORTS_A_PAGE = 25


@router.get("/exports")
def exports_page(request: Request) -> Response:
    caller, session = signed_in(request)
    form = ExportForm.blank(container_of(request).clock())
    return _exports(request, caller, session, form, None)


@router.get("/exports/rows")
def export_rows(request: Request) -> Response:
    """The list again, while some export is still at work."""
    caller, session = signed_in(request)
    return page(request, "_export_rows.html", _export_list(request, caller), caller, session)


@router.post("/exports")
async def request_export(request: Request) -> Response:
    caller, session, fields = await posted_form(request, EXPORT)
    form = ExportForm.of(fields, container_of(request).clock())
    deps = container_of(request).exports
    try:
        view = await run_in_threadpool(create_export, deps, caller, form.spec(), None)
    except KbAuditError as exc:
        problem, status = refusal(exc)
        return await run_in_threadpool(_exports, request, caller, session, form, problem, status)
    return RedirectResponse(f"/console/exports/{view.job['id']}", status_code=303)


def _exports(
    request: Request,
    caller: Caller,
    session: Session,
    form: ExportForm,
    problem: str | None,
    status_code: int = 200,
) -> Response:
    context = {
        "form": form,
        "problem": problem,
        **_export_list(request, caller),
    }
    return page(request, "exports.html", context, caller, session, status_code)


def _export_list(request: Request, caller: Caller) -> dict[str, Any]:
    """A page of the organization's exports, newest first; ``cursor`` in the address moves
    to older ones."""
    container = container_of(request)
    cursor = request.query_params.get("cursor") or None
    listed = list_exports(
        container.exports, container.cursor_codec, caller, None, EXPORTS_A_PAGE, cursor
    )
    jobs = [view.as_dict() for view in listed.items]
    for job in jobs:
        if JobStatus(job["status"]).downloadable:
            job["manifest"] = check_manifest(container.exports, caller, job["id"])
    return {
        "jobs": jobs,
        "at_work": any(JobStatus(job["status"]).active for job in jobs),
        "cursor": cursor,
        "older": listed.next_cursor if listed.has_more else None,
    }


def known_form(export_id: str) -> str:
    """An export id as the store keeps it; anything else names no export."""
    try:
        return str(uuid.UUID(export_id))
    except ValueError:
        raise NotFound("no export job has that id") from None


@router.get("/exports/{export_id}")
def export_page(request: Request, export_id: str) -> Response:
    caller, session = signed_in(request)
    export_id = known_form(export_id)
    deps = container_of(request).exports
    job = get_export(deps, caller, export_id).as_dict()
    manifest = check_manifest(deps, caller, export_id)
    context = {"job": job, "manifest": manifest, "at_work": JobStatus(job["status"]).active}
    return page(request, "export.html", context, caller, session)


@router.get("/exports/{export_id}/files/{file_name}")
async def download_file(request: Request, export_id: str, file_name: str) -> Response:
    """The file, through the same checks as the API's download (the token is minted here:
    console links carry none)."""
    caller, _ = signed_in(request, EXPORT)
    export_id = known_form(export_id)
    deps = container_of(request).exports
    view = await run_in_threadpool(get_export, deps, caller, export_id)
    token = next((f.download_token for f in view.files if f.name == file_name), None)
    if token is None:
        raise NotFound("the export has no file of that name to download")
    download = await run_in_threadpool(
        open_download,
        deps,
        caller,
        export_id,
        file_name,
        token,
        zstd_accepted=accepts_zstd(request),
    )
    return StreamingResponse(
        one_ahead(download.chunks),
        media_type=download.content_type,
        headers=file_headers(download),
    )
