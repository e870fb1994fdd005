"""kbaudit's additions for delivery: webhooks for export events, and destinations (the
customer's own buckets) that exports are copied to."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from kbaudit.api.auth import container_of, require_scope
from kbaudit.api.bodies import KIB, json_route
from kbaudit.api.retrievals import ERROR_RESPONSES
from kbaudit.domain import Caller
from kbaudit.services.delivery import destinations, webhooks
from kbaudit.services.delivery.events import EVENT_TYPES

router = APIRouter(
    route_class=json_route(64 * KIB),
    prefix="/v1/knowledge-base/audit",
    tags=["kbaudit-delivery"],
    responses=ERROR_RESPONSES,
)
ADMIN = Depends(require_scope("kb_audit:admin"))
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
_VISIBLE_ASCII = re.compile(r"[!-~]+")
DestinationName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class WebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(min_length=1, max_length=2048)]
    events: Annotated[list[EventType], Field(min_length=1)] | None = None
    description: Annotated[str, Field(max_length=500)] | None = None


class WebhookResponse(BaseModel):
    id: UUID
    url: str
    events: list[str]
    description: str | None = None
    created_at: datetime


class CreatedWebhookResponse(WebhookResponse):
    secret: str = Field(description="Standard Webhooks signing secret; shown only here.")


class WebhookDeliveryResponse(BaseModel):
    id: str = Field(description="The webhook-id header of every try.")
    event: str
    export_id: UUID
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    created_at: datetime
    ended_at: datetime | None = None


class DestinationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["s3"]
    bucket: Annotated[str, Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+$")]
    prefix: Annotated[str, Field(max_length=512, pattern=r"^[A-Za-z0-9!_.*'()/-]*$")] = ""
    region: Annotated[str, Field(max_length=64, pattern=r"^[a-z0-9-]+$")] | None = None
    endpoint: Annotated[str, Field(max_length=2048)] | None = None
    # Visible ASCII: they travel in HTTP headers (and a control character there would stop
    # the S3 client outright).
    access_key_id: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[!-~]+$")]
    secret_access_key: Annotated[SecretStr, Field(min_length=1, max_length=256)]

    @field_validator("secret_access_key")
    @classmethod
    def _visible_ascii(cls, value: SecretStr) -> SecretStr:
        if not _VISIBLE_ASCII.fullmatch(value.get_secret_value()):
            raise ValueError("must be visible ASCII characters")
        return value


class DestinationResponse(BaseModel):
    name: str
    type: Literal["s3"]
    bucket: str
    prefix: str
    region: str | None = None
    endpoint: str | None = None
    access_key_id: str
    created_at: datetime
    updated_at: datetime


@router.post(
    "/webhooks",
    status_code=201,
    response_model=CreatedWebhookResponse,
    summary="Register a webhook for export events (Standard Webhooks signatures)",
    operation_id="createKBAuditWebhook",
)
def create_webhook(
    request: Request, body: WebhookRequest, caller: Annotated[Caller, ADMIN]
) -> dict[str, Any]:
    deps = container_of(request).delivery
    events = None if body.events is None else list(body.events)
    return webhooks.add_webhook(deps, caller, body.url, events, body.description)


@router.get(
    "/webhooks",
    response_model=list[WebhookResponse],
    summary="List this org's webhooks (without secrets)",
    operation_id="listKBAuditWebhooks",
)
def list_webhooks(request: Request, caller: Annotated[Caller, ADMIN]) -> list[dict[str, Any]]:
    return webhooks.list_webhooks(container_of(request).delivery, caller)


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=204,
    summary="Remove a webhook; its pending events are given up",
    operation_id="deleteKBAuditWebhook",
)
def delete_webhook(
    request: Request, webhook_id: Annotated[UUID, Path()], caller: Annotated[Caller, ADMIN]
) -> Response:
    webhooks.remove_webhook(container_of(request).delivery, caller, str(webhook_id))
    return Response(status_code=204)


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=list[WebhookDeliveryResponse],
    summary="A webhook's events, newest first, and how sending each went",
    operation_id="listKBAuditWebhookDeliveries",
)
def list_deliveries(
    request: Request,
    webhook_id: Annotated[UUID, Path()],
    caller: Annotated[Caller, ADMIN],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    deps = container_of(request).delivery
    return webhooks.list_deliveries(deps, caller, str(webhook_id), limit)


@router.put(
    "/destinations/{name}",
    response_model=DestinationResponse,
    summary="Save a destination bucket, after writing, reading and deleting a probe there",
    operation_id="putKBAuditDestination",
)
def put_destination(
    request: Request,
    name: DestinationName,
    body: DestinationRequest,
    caller: Annotated[Caller, ADMIN],
) -> dict[str, Any]:
    spec = destinations.DestinationSpec(
        bucket=body.bucket,
        prefix=body.prefix,
        region=body.region,
        endpoint=body.endpoint,
        access_key_id=body.access_key_id,
        secret_access_key=body.secret_access_key.get_secret_value(),
    )
    return destinations.put_destination(container_of(request).delivery, caller, name, spec)


@router.get(
    "/destinations",
    response_model=list[DestinationResponse],
    summary="List this org's destinations (without secrets)",
    operation_id="listKBAuditDestinations",
)
def list_destinations(request: Request, caller: Annotated[Caller, ADMIN]) -> list[dict[str, Any]]:
    return destinations.list_destinations(container_of(request).delivery, caller)


@router.delete(
    "/destinations/{name}",
    status_code=204,
    summary="Remove a destination",
    operation_id="deleteKBAuditDestination",
)
def delete_destination(
    request: Request, name: DestinationName, caller: Annotated[Caller, ADMIN]
) -> Response:
    destinations.remove_destination(container_of(request).delivery, caller, name)
    return Response(status_code=204)
