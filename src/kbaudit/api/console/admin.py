"""The administrator's pages: the retention policy and legal hold, and the access log."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from kbaudit.api.auth import container_of
from kbaudit.api.console.forms import RetentionForm
from kbaudit.api.console.guard import console_router, posted_form, signed_in
from kbaudit.api.console.rendering import ADMIN, page, refusal
from kbaudit.decoding import whole_number
from kbaudit.errors import KbAuditError
from kbaudit.services.access import newest_entries
from kbaudit.services.retention import get_policy, update_policy

router = console_router()


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
        problem, status = refusal(exc)
        context = {"form": None, "policy": policy, "problem": problem}
        return page(request, "retention.html", context, caller, session, status)
    return RedirectResponse("/console/retention", status_code=303)


@router.get("/access")
def access_page(request: Request) -> Response:
    caller, session = signed_in(request, ADMIN)
    container = container_of(request)
    before = whole_number(request.query_params.get("before", ""))
    entries = newest_entries(container.store, container.clock, caller, before)
    older = entries[-1].id if len(entries) == 100 else None
    return page(request, "access.html", {"entries": entries, "older": older}, caller, session)
