"""The console's pages as its templates render them: the navigation a caller's scopes allow,
the session's CSRF token in every form, and error pages that tell no secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from fastapi import Request, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from kbaudit.api.console.forms import TEXT_FILTERS
from kbaudit.api.console.session import Session
from kbaudit.api.errors import status_for
from kbaudit.domain import RETRIEVAL_STATUSES, Caller
from kbaudit.errors import KbAuditError
from kbaudit.filters import MANY_VALUED

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


def refusal(exc: KbAuditError) -> tuple[str, int]:
    """What to show beside the form a request came from, and the page's status; a failure
    of the server's own is raised on, to its error page."""
    status = status_for(exc)
    if status >= 500:
        raise exc
    return exc.message, status
