"""JSON bodies with each key once per object. A repeated key is refused, never resolved: the
standard lets parsers keep either value, so two systems may read one body two ways."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


def loads_refusing_duplicates(body: bytes | str) -> Any:
    """``json.loads``; a key repeated in one object raises ``json.JSONDecodeError``."""
    return json.loads(body, object_pairs_hook=_unique)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        message = f"the key {_repeated(pairs)!r} appears twice in one object"
        raise json.JSONDecodeError(message, "", 0)
    return found


def _repeated(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key[:64]
        seen.add(key)
    return ""


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_refusing_duplicates(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is read with ``loads_refusing_duplicates``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict
