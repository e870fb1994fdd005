"""Liveness, readiness and metrics."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kbaudit.errors import KbAuditError

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database, the blob store and the queue answer")
def readyz(request: Request) -> JSONResponse:
    container = request.app.state.container
    probes = {
        "database": container.store.ping,
        "blob_store": container.exports.blobs.ping,
        "queue": container.huey.pending_count,
    }
    checks = {name: _probe(probe) for name, probe in probes.items()}
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


def _probe(probe: Callable[[], object]) -> str:
    try:
        probe()
    except KbAuditError as exc:  # kbaudit's own words for it, written to be shown
        return exc.message
    except Exception:  # readiness reports what failed; it never fails itself
        return "unavailable"
    return "ok"


@router.get("/metrics", summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    registry = request.app.state.container.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
