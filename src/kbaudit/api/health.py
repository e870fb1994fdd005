"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kbaudit.errors import StoreUnavailable

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database and the other backends answer")
def readyz(request: Request) -> JSONResponse:
    container = request.app.state.container
    checks = {"database": "ok"}
    try:
        container.store.ping()
    except (StoreUnavailable, OSError, Exception):  # readiness reports, it never raises
        checks["database"] = "unavailable"
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    registry = request.app.state.container.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
