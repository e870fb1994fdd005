"""Signing in with an API key, and out again."""

from __future__ import annotations

import math

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from kbaudit.api.auth import authenticated
from kbaudit.api.console.guard import (
    bounded_form,
    console_router,
    posted_form,
    same_origin,
    seal_of,
)
from kbaudit.api.console.rendering import templates
from kbaudit.api.console.session import COOKIE, LIFETIME_SECONDS
from kbaudit.errors import AuthenticationRequired, TooManyAttempts

router = console_router()


@router.get("/sign-in")
def sign_in_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "sign_in.html", {"problem": None})


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    same_origin(request)
    form = await bounded_form(request)
    api_key = str(form.get("api_key", "")).strip()
    try:
        authenticated(request, api_key, "console")
    except AuthenticationRequired:
        return _refused(request, "That API key was not accepted.", 401)
    except TooManyAttempts as exc:
        wait = math.ceil(exc.retry_after)
        return _refused(request, f"Too many keys were refused; try again in {wait} seconds.", 429)
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


def _refused(request: Request, problem: str, status: int) -> Response:
    return templates.TemplateResponse(
        request, "sign_in.html", {"problem": problem}, status_code=status
    )


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    await posted_form(request, scope=None)
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response
