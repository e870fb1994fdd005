"""``x-api-key`` authentication and scope checks, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from kbaudit.container import Container
from kbaudit.domain import Caller, Edge, Via
from kbaudit.errors import InsufficientScope

api_key_header = APIKeyHeader(name="x-api-key", auto_error=False)


def container_of(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def via(request: Request, edge: Edge) -> Via:
    """The edge and the route template the request came in by: the access log's words."""
    route = request.scope.get("route")
    template = getattr(route, "path_format", request.url.path)
    return Via(edge, f"{request.method} {template}")


def authenticated(request: Request, api_key: str | None, edge: Edge) -> Caller:
    address = request.client.host if request.client else None
    return container_of(request).authenticate(api_key, address, via(request, edge))


def require_scope(scope: str) -> Callable[..., Caller]:
    """A dependency that authenticates the caller and insists on one scope."""

    def dependency(request: Request, api_key: str | None = Depends(api_key_header)) -> Caller:
        caller = authenticated(request, api_key, "api")
        if scope not in caller.scopes:
            raise InsufficientScope(f"this API key lacks the {scope} scope")
        return caller

    return dependency
