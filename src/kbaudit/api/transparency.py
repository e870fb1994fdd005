"""Routes of the tamper-evident log and its keys (kbaudit additions beside the contract)."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from kbaudit.api.auth import container_of, require_scope
from kbaudit.api.schemas import ErrorResponse
from kbaudit.domain import Caller
from kbaudit.services.log import consistency_proof, current_checkpoint, encoded, record_proofs

router = APIRouter(prefix="/v1/knowledge-base/audit", tags=["kbaudit-log"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Authentication required"},
    404: {"model": ErrorResponse, "description": "Not found"},
}
TreeSize = Annotated[int, Query(ge=0, le=2**62)]


@router.get(
    "/signing-keys",
    summary="Public keys that sign checkpoints and export manifests (kbaudit addition)",
    operation_id="listKBAuditSigningKeys",
)
def signing_keys(request: Request) -> dict[str, Any]:
    keys = container_of(request).exports.signing.listed()
    return {
        "keys": [
            {
                "kid": key.kid,
                "kty": "OKP",
                "crv": "Ed25519",
                "x": base64.urlsafe_b64encode(key.raw).rstrip(b"=").decode(),
                "vkey": key.vkey,
                "status": status,
            }
            for key, status in keys
        ]
    }


@router.get(
    "/log/checkpoint",
    summary="The organization's log checkpoint, a C2SP signed note (kbaudit addition)",
    operation_id="getKBAuditLogCheckpoint",
    response_class=PlainTextResponse,
    responses=ERRORS,
)
async def checkpoint(
    request: Request, caller: Annotated[Caller, Depends(require_scope("kb_audit:read"))]
) -> PlainTextResponse:
    container = container_of(request)
    note = await run_in_threadpool(
        current_checkpoint, container.store, container.exports.signing, caller.org_id
    )
    return PlainTextResponse(note, headers={"Cache-Control": "no-store"})


@router.get(
    "/retrievals/{ref}/proof",
    summary="Inclusion proofs of every write of a record (kbaudit addition)",
    operation_id="getKBRetrievalAuditProof",
    responses=ERRORS,
)
async def proof(
    request: Request,
    caller: Annotated[Caller, Depends(require_scope("kb_audit:read"))],
    ref: Annotated[str, Path(max_length=200)],
    tree_size: TreeSize | None = None,
) -> dict[str, Any]:
    container = container_of(request)
    size, entries = await run_in_threadpool(
        record_proofs, container.store, container.clock, caller, ref, tree_size
    )
    return {
        "tree_size": size,
        "entries": [
            {
                "leaf_index": entry.leaf_index,
                "leaf": base64.b64encode(entry.leaf).decode(),
                "inclusion_proof": encoded(entry.inclusion_proof),
            }
            for entry in entries
        ],
    }


@router.get(
    "/log/consistency",
    summary="RFC 9162 consistency proof between two sizes of the log (kbaudit addition)",
    operation_id="getKBAuditLogConsistency",
    responses=ERRORS,
)
async def consistency(
    request: Request,
    caller: Annotated[Caller, Depends(require_scope("kb_audit:read"))],
    first: TreeSize,
    second: TreeSize,
) -> dict[str, Any]:
    container = container_of(request)
    hashes = await run_in_threadpool(
        consistency_proof, container.store, caller.org_id, first, second
    )
    return {"first": first, "second": second, "proof": encoded(hashes)}
