"""What stands in front of every console page: the session cookie, opened and authenticated
afresh on each request; forms accepted only from the console's own pages, with the session's
CSRF token, and bounded in size; errors as pages; and the security headers on every answer."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from starlette.datastructures import FormData

from kbaudit.api.auth import authenticated, container_of
from kbaudit.api.console.rendering import READ, error_page
from kbaudit.api.console.session import COOKIE, Session, SessionSeal
from kbaudit.decoding import has_nul, whole_number
from kbaudit.domain import Caller
from kbaudit.errors import (
    AuthenticationRequired,
    InsufficientScope,
    InvalidRequest,
    KbAuditError,
    PayloadTooLarge,
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


def console_router() -> APIRouter:
    """A router for some of the console's pages: behind the guard, outside the API's
    OpenAPI document."""
    return APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


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
    if (whole_number(declared) or MAX_FORM_BYTES + 1) > MAX_FORM_BYTES:
        raise PayloadTooLarge(f"console forms are limited to {MAX_FORM_BYTES} bytes")
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    if any(has_nul(str(value)) for value in form.values()):
        raise InvalidRequest("form fields may not contain NUL characters")
    return form


def same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise InsufficientScope("forms are accepted only from this console's own pages")
