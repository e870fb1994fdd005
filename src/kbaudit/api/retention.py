"""Routes for the organization's retention policy and legal hold."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from kbaudit.api.auth import container_of, require_scope
from kbaudit.api.bodies import KIB, json_route
from kbaudit.api.schemas import RetentionPolicyResponse, RetentionPolicyUpdateRequest
from kbaudit.domain import Caller
from kbaudit.services.retention import get_policy, update_policy

router = APIRouter(
    route_class=json_route(16 * KIB),
    prefix="/v1/knowledge-base",
    tags=["knowledge-base-governance"],
)
ADMIN = Depends(require_scope("kb_audit:admin"))
# Fields a null leaves as they are; for the others a null clears the value.
_NOT_NULLABLE = ("retention_days", "legal_hold_enabled", "archive_before_delete")


@router.get(
    "/retention-policy",
    response_model=RetentionPolicyResponse,
    summary="Get the org's KB audit retention policy (creates defaults if unset)",
    operation_id="getKBAuditRetentionPolicy",
)
def read_policy(request: Request, caller: Annotated[Caller, ADMIN]) -> dict[str, Any]:
    container = container_of(request)
    return get_policy(container.store, container.clock, caller)


@router.put(
    "/retention-policy",
    response_model=RetentionPolicyResponse,
    summary="Update the org's KB audit retention policy / legal hold",
    operation_id="updateKBAuditRetentionPolicy",
)
def change_policy(
    request: Request, body: RetentionPolicyUpdateRequest, caller: Annotated[Caller, ADMIN]
) -> dict[str, Any]:
    changes = {
        name: value
        for name, value in body.model_dump(exclude_unset=True).items()
        if value is not None or name not in _NOT_NULLABLE
    }
    container = container_of(request)
    return update_policy(container.store, container.clock, caller, changes)
