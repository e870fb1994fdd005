"""Request bodies: read only from a caller whose key is good, never past a limit fitted to
the route, and parsed by the one strict JSON reading (``kbaudit.decoding``).

FastAPI reads and parses a route's body before it resolves the route's dependencies, the
API key among them: an anonymous client could make a server hold and parse any body before
hearing 401. A ``json_route`` authenticates from the header first, refuses a body that says
it is too long, and reads no more than the limit of one that does not say.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope

from kbaudit.api.auth import api_key_header, authenticated
from kbaudit.decoding import strict_loads, whole_number
from kbaudit.errors import PayloadTooLarge

KIB = 1024


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or ``PayloadTooLarge`` once it is known to pass ``limit``."""
    too_large = PayloadTooLarge(f"this route takes bodies of at most {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and (whole_number(declared) or 0) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


class _BodyRead(Request):
    """A request whose body was read already; its JSON is read strictly."""

    def __init__(self, scope: Scope, receive: Receive, body: bytes) -> None:
        super().__init__(scope, receive)
        self._read = body

    async def body(self) -> bytes:
        return self._read

    async def json(self) -> Any:
        return strict_loads(self._read)


def json_route(limit: int) -> type[APIRoute]:
    """A route class for the API's routes with JSON bodies of at most ``limit`` bytes."""

    class JsonRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def bounded(request: Request) -> Response:
                if request.method in ("POST", "PUT", "PATCH"):
                    # The route's own dependency authenticates again, from the cache of keys.
                    key = request.headers.get(api_key_header.model.name)
                    await run_in_threadpool(authenticated, request, key, "api")
                    body = await read_body(request, limit)
                    request = _BodyRead(request.scope, request.receive, body)
                return await handler(request)

            return bounded

    return JsonRoute
