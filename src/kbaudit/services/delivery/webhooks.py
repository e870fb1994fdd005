"""Webhooks: where an organization wants its export events, and sending one event, signed as
Standard Webhooks has it (https://www.standardwebhooks.com)."""

from __future__ import annotations

import base64
import functools
import secrets
import ssl
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx2
from standardwebhooks.webhooks import Webhook as Signer

from kbaudit.crypto.envelope import WrappedKeyset
from kbaudit.domain import Caller
from kbaudit.errors import InvalidRequest, NotFound
from kbaudit.services.delivery.addresses import RefusedAddress, check_url, target
from kbaudit.services.delivery.deps import DeliveryDeps
from kbaudit.services.delivery.events import EVENT_TYPES
from kbaudit.services.delivery.tunnel import Tunnel
from kbaudit.store.models import OutboxItem, OutboxKind, OutboxStatus, Webhook

SECRET_BYTES = 32
USER_AGENT = "kbaudit-webhooks/1"


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one try to send went: ``ok`` ends the item; ``final`` gives it up."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    final: bool = False


def add_webhook(
    deps: DeliveryDeps, caller: Caller, url: str, events: list[str] | None, description: str | None
) -> dict[str, Any]:
    """Register a webhook; the answer is the only time its secret is shown."""
    _check_target(deps, url)
    unknown = sorted(set(events or ()) - set(EVENT_TYPES))
    if unknown:
        raise InvalidRequest(
            f"unknown events {unknown}; known: {list(EVENT_TYPES)}", field=("body", "events")
        )
    chosen = [event for event in EVENT_TYPES if events is None or event in events]
    if not chosen:
        raise InvalidRequest("events must name at least one event", field=("body", "events"))
    raw = secrets.token_bytes(SECRET_BYTES)
    webhook_id = str(uuid.uuid4())
    now = deps.clock()
    with deps.store.writing() as uow:
        org_uuid = uow.keys.organization(caller.org_id).uuid
        wrapped = deps.keys.wrap_secret(org_uuid, _purpose(webhook_id), raw)
        uow.delivery.add_webhook(
            Webhook(
                id=webhook_id,
                org_id=caller.org_id,
                url=url,
                events=chosen,
                description=description,
                kek_version=wrapped.kek_version,
                wrapped_secret=wrapped.ciphertext,
                created_at=now,
            )
        )
        hook = uow.delivery.webhook(caller.org_id, webhook_id)
        uow.commit()
    assert hook is not None
    return {**webhook_view(hook), "secret": "whsec_" + base64.b64encode(raw).decode()}


def list_webhooks(deps: DeliveryDeps, caller: Caller) -> list[dict[str, Any]]:
    with deps.store.reading() as uow:
        return [webhook_view(hook) for hook in uow.delivery.webhooks(caller.org_id)]


def remove_webhook(deps: DeliveryDeps, caller: Caller, webhook_id: str) -> None:
    with deps.store.writing() as uow:
        if not uow.delivery.remove_webhook(caller.org_id, webhook_id):
            raise NotFound("no webhook has that id")
        uow.commit()


def list_deliveries(
    deps: DeliveryDeps, caller: Caller, webhook_id: str, limit: int
) -> list[dict[str, Any]]:
    """The webhook's events, newest first, with how sending each has gone."""
    with deps.store.reading() as uow:
        if uow.delivery.webhook(caller.org_id, webhook_id) is None:
            raise NotFound("no webhook has that id")
        items = uow.delivery.items_for(OutboxKind.WEBHOOK, webhook_id, limit)
    return [
        {
            "id": item.id,
            "event": item.event_type,
            "export_id": item.export_id,
            "status": item.status,
            "attempts": item.attempts,
            "last_status_code": item.last_status_code,
            "last_error": item.last_error,
            "next_attempt_at": (
                item.next_attempt_at if item.status is OutboxStatus.PENDING else None
            ),
            "created_at": item.created_at,
            "ended_at": item.ended_at,
        }
        for item in items
    ]


def webhook_view(hook: Webhook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "url": hook.url,
        "events": hook.events,
        "description": hook.description,
        "created_at": hook.created_at,
    }


def send_event(deps: DeliveryDeps, item: OutboxItem, now: datetime) -> Attempt:
    """One try: sign the stored body and POST it; any 2xx delivers it. Redirects are not
    followed (a 3xx is a failed try), and the address is checked again before sending, and
    is the one connected to."""
    with deps.store.reading() as uow:
        hook = uow.delivery.webhook(item.org_id, item.target)
        org_uuid = uow.keys.organization(item.org_id).uuid
    if hook is None:
        return Attempt(False, error="the webhook was removed", final=True)
    assert item.body is not None
    try:
        checked = target(hook.url, deps.config.allow_private)
    except RefusedAddress as exc:
        return Attempt(False, error=f"refused: {exc}")
    secret = deps.keys.unwrap_secret(
        org_uuid, _purpose(hook.id), WrappedKeyset(hook.kek_version, hook.wrapped_secret)
    )
    body = item.body.decode()
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": item.id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Signer(secret).sign(item.id, now, body),
    }
    timeout = deps.config.timeout_seconds
    tunnel = Tunnel(checked, timeout, deadline=timeout)
    try:
        # Streamed and left unread: only the status matters, and a receiver's answer may be
        # of any size.
        with (
            tunnel as proxy,
            httpx2.stream(
                "POST",
                hook.url,
                content=item.body,
                headers=headers,
                timeout=timeout,
                follow_redirects=False,
                proxy=proxy,  # to the checked address, and through no other proxy:
                trust_env=False,
                verify=tls_context(),
            ) as response,
        ):
            status = response.status_code
    except httpx2.HTTPError as exc:
        if tunnel.cut_off or isinstance(exc, httpx2.TimeoutException):
            return Attempt(False, error=f"the receiver took more than {timeout:g} s to answer")
        return Attempt(False, error=f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= status < 300:
        return Attempt(True, status)
    reason = "redirects are not followed" if 300 <= status < 400 else "not a 2xx"
    return Attempt(False, status, f"HTTP {status}: {reason}")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx2's default TLS settings, made once: a client built per send would otherwise
    load the trusted certificates afresh each time, twice behind a proxy (27 ms each, most
    of a send's cost)."""
    return httpx2.create_ssl_context(trust_env=False)


def _check_target(deps: DeliveryDeps, url: str) -> None:
    try:
        check_url(url, deps.config.allow_private)
    except RefusedAddress as exc:
        raise InvalidRequest(f"url {exc}", field=("body", "url")) from exc


def _purpose(webhook_id: str) -> str:
    return f"webhook/{webhook_id}"
