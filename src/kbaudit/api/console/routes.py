"""The web console at ``/console``: server-rendered pages over the same services as the JSON
API, with the powers of the API key behind the session and no others."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from kbaudit.api.auth import authenticated, container_of
from kbaudit.api.console.forms import TEXT_FILTERS, ExportForm, RecordQuery, RetentionForm, Window
from kbaudit.api.console.session import COOKIE, LIFETIME_SECONDS, Session, SessionSeal
from kbaudit.api.errors import status_for
from kbaudit.api.exports import accepts_zstd, coding_headers, one_ahead
from kbaudit.document import summary_values
from kbaudit.domain import RETRIEVAL_STATUSES, Caller, JobStatus
from kbaudit.errors import (
    AuthenticationRequired,
    InsufficientScope,
    KbAuditError,
    NotFound,
    PayloadTooLarge,
)
from kbaudit.filters import MANY_VALUED
from kbaudit.services.access import newest_entries
from kbaudit.services.exports.download import open_download
from kbaudit.services.exports.jobs import (
    check_manifest,
    create_export,
    get_export,
    list_exports,
)
from kbaudit.services.log import proof_status
from kbaudit.services.query import query_records, record_detail
from kbaudit.services.retention import get_policy, update_policy
from kbaudit.services.stats import Stats, retrieval_stats

log = structlog.get_logger("kbaudit.console")
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
static_files = StaticFiles(directory=HERE / "static")
templates.env.globals.update(
    statuses=RETRIEVAL_STATUSES, filter_labels=TEXT_FILTERS, many_valued=MANY_VALUED
)
READ, EXPORT, ADMIN = "kb_audit:read", "kb_audit:export", "kb_audit:admin"
PAGES = (
    ("Overview", "/console", READ),
    ("Records", "/console/records", READ),
    ("Exports", "/console/exports", READ),
    ("Retention", "/console/retention", ADMIN),
    ("Access log", "/console/access", ADMIN),
)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # No page's address travels to another site; same-origin, not no-referrer: with that,
    # browsers send "Origin: null" on the console's own forms.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MAX_FORM_BYTES = 64 * 1024
EXPORTS_A_PAGE = 25
MAX_FORM_FIELDS = 400


class SignInRequired(Exception):
    """No session, or one that no longer opens: the answer is the sign-in page."""


class ConsoleRoute(APIRoute):
    """Errors become pages (or a way back to sign in), and every answer gets the console's
    security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except (SignInRequired, AuthenticationRequired):
                response = RedirectResponse("/console/sign-in", status_code=303)
                response.delete_cookie(COOKIE, path="/console")
            except KbAuditError as exc:
                response = error_page(request, exc)
            response.headers.update(SECURITY_HEADERS)
            return response

        return console_handler


router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def error_page(request: Request, exc: KbAuditError) -> Response:
    status = status_for(exc)
    if status >= 500:
        log.error("console_error", error=type(exc).__name__, route=request.url.path)
        message = "The server failed; the failure was logged."
    else:
        message = exc.message
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )


# -- sessions -------------------------------------------------------------------------------


def seal_of(request: Request) -> SessionSeal:
    return SessionSeal(container_of(request).keyring)


def signed_in(request: Request, scope: str | None = READ) -> tuple[Caller, Session]:
    """The caller behind the session cookie, authenticated afresh (a revoked key ends its
    sessions), with ``scope`` insisted on."""
    session = seal_of(request).open(request.cookies.get(COOKIE))
    if session is None:
        raise SignInRequired
    caller = authenticated(request, session.api_key, "console")
    if scope is not None and scope not in caller.scopes:
        raise InsufficientScope(f"this API key lacks the {scope} scope this page needs")
    return caller, session


async def posted_form(
    request: Request, scope: str | None
) -> tuple[Caller, Session, dict[str, Any]]:
    """A form sent from one of this console's own pages, by a signed-in caller with
    ``scope``: same origin and the session's CSRF token, or refused."""
    same_origin(request)
    caller, session = signed_in(request, scope)
    form = await bounded_form(request)
    fields: dict[str, Any] = {name: form.getlist(name) for name in form}
    sent = fields.pop("csrf_token", [""])[0]
    if not isinstance(sent, str) or not hmac.compare_digest(
        sent.encode(), session.csrf_token.encode()
    ):
        raise InsufficientScope("this form did not come from this console (no valid CSRF token)")
    return caller, session, fields


async def bounded_form(request: Request) -> FormData:
    """The posted form, refused unless it says how long it is and is small: sign-in is open
    to anyone, and parsing would otherwise hold whatever was sent."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
        raise PayloadTooLarge(f"console forms are limited to {MAX_FORM_BYTES} bytes")
    return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)


def same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise InsufficientScope("forms are accepted only from this console's own pages")


def page(
    request: Request,
    name: str,
    context: dict[str, Any],
    caller: Caller,
    session: Session,
    status_code: int = 200,
) -> Response:
    nav = [(label, href) for label, href, scope in PAGES if scope in caller.scopes]
    return templates.TemplateResponse(
        request,
        name,
        {
            "nav": nav,
            "path": request.url.path,
            "caller": caller,
            "csrf_token": session.csrf_token,
            "can": caller.scopes,
            **context,
        },
        status_code=status_code,
    )


@router.get("/sign-in")
def sign_in_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "sign_in.html", {"problem": None})


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    same_origin(request)
    form = await bounded_form(request)
    api_key = str(form.get("api_key", "")).strip()
    address = request.client.host if request.client else None
    try:
        container_of(request).authenticate(api_key, address)
    except AuthenticationRequired:
        problem = "That API key was not accepted."
        return templates.TemplateResponse(
            request, "sign_in.html", {"problem": problem}, status_code=401
        )
    seal = seal_of(request)
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(
        COOKIE,
        seal.seal(seal.new(api_key)),
        max_age=LIFETIME_SECONDS,
        path="/console",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    await posted_form(request, scope=None)
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


# -- overview -------------------------------------------------------------------------------


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


# -- records --------------------------------------------------------------------------------


@router.get("/records")
def records_page(request: Request) -> Response:
    caller, session = signed_in(request)
    query = RecordQuery.parse(request.query_params, container_of(request).clock())
    context: dict[str, Any] = {"query": query, "problem": None}
    try:
        context |= _records(request, caller, query)
    except KbAuditError as exc:
        if status_for(exc) >= 500:
            raise
        context |= {"problem": exc.message, "rows": [], "more": None}
        return page(request, "records.html", context, caller, session, status_for(exc))
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


# -- exports --------------------------------------------------------------------------------


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
        if status_for(exc) >= 500:
            raise
        return await run_in_threadpool(
            _exports, request, caller, session, form, exc.message, status_for(exc)
        )
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
    headers = {
        "Content-Disposition": f'attachment; filename="{download.file_name}"',
        **coding_headers(download),
    }
    return StreamingResponse(
        one_ahead(download.chunks), media_type=download.content_type, headers=headers
    )


# -- retention ------------------------------------------------------------------------------


@router.get("/retention")
def retention_page(request: Request) -> Response:
    caller, session = signed_in(request, ADMIN)
    container = container_of(request)
    policy = get_policy(container.store, container.clock, caller)
    return page(request, "retention.html", {"policy": policy, "problem": None}, caller, session)


@router.post("/retention")
async def change_retention(request: Request) -> Response:
    caller, session, fields = await posted_form(request, ADMIN)
    container = container_of(request)
    policy = await run_in_threadpool(get_policy, container.store, container.clock, caller)
    form = RetentionForm.of(fields)
    if form.changes_hold(policy) and not form.confirmed_with_reason():
        context: dict[str, Any] = {"form": form, "problem": form.confirmation_problem()}
        status = 400 if form.confirmed else 200
        return page(request, "retention_confirm.html", context, caller, session, status)
    try:
        await run_in_threadpool(
            update_policy, container.store, container.clock, caller, form.changes(policy)
        )
    except KbAuditError as exc:
        if status_for(exc) >= 500:
            raise
        context = {"form": None, "policy": policy, "problem": exc.message}
        return page(request, "retention.html", context, caller, session, status_for(exc))
    return RedirectResponse("/console/retention", status_code=303)


# -- access log -----------------------------------------------------------------------------


@router.get("/access")
def access_page(request: Request) -> Response:
    caller, session = signed_in(request, ADMIN)
    container = container_of(request)
    before = request.query_params.get("before", "")
    entries = newest_entries(
        container.store, container.clock, caller, int(before) if before.isdigit() else None
    )
    older = entries[-1].id if len(entries) == 100 else None
    return page(request, "access.html", {"entries": entries, "older": older}, caller, session)
