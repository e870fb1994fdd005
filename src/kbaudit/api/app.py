"""The FastAPI application: routers, error rendering, request metrics and logs."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import structlog
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kbaudit import __version__
from kbaudit.api import (
    delivery,
    docs,
    exports,
    health,
    retention,
    retrievals,
    stats,
    transparency,
)
from kbaudit.api.console import routes as console
from kbaudit.api.errors import error_body, install_error_handlers
from kbaudit.config import Settings
from kbaudit.container import Container, build_container
from kbaudit.domain import RecordBatch
from kbaudit.errors import RequestTimeout
from kbaudit.logs import configure_logging
from kbaudit.runtime import settle_heap

log = structlog.get_logger("kbaudit.http")


def create_app(container: Container, *, run_workers: bool = True) -> FastAPI:
    """The API over ``container``. ``run_workers``: start the embedded export workers with it
    (where the settings put them in the API); a process of ``serve --processes N`` leaves
    them to its parent."""
    app = FastAPI(
        lifespan=_lifespan,
        title="kbaudit",
        version=__version__,
        description="Knowledge-base retrieval audit records, queries and encrypted exports.",
        docs_url=None,
        redoc_url=None,
        # A redirect to the path without its slash is built from the Host header a client
        # sent, and repeats the query string, download tokens included: a 404 instead.
        redirect_slashes=False,
    )
    app.state.container = container
    app.state.run_workers = run_workers
    app.include_router(retrievals.router)
    app.include_router(stats.router)
    app.include_router(exports.router)
    app.include_router(retention.router)
    app.include_router(transparency.router)
    app.include_router(delivery.router)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.mount("/static", docs.static_files, name="static")
    app.include_router(console.router)
    app.mount("/console/static", console.static_files, name="console-static")
    install_error_handlers(app)
    app.add_middleware(BodyDeadline, seconds=container.settings.body_timeout_seconds)
    app.add_middleware(RefuseNulInUrl)
    app.add_middleware(_Observe)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """In the embedded default the export workers live in this process; in the scale-out mode
    they are ``kbaudit worker`` processes, and the API only enqueues."""
    container: Container = app.state.container
    if not (app.state.run_workers and container.settings.api_runs_workers):
        yield
        return
    workers = container.workers()
    workers.start()
    try:
        yield
    finally:
        workers.stop()


def app_of_a_serving_process() -> FastAPI:
    """The API of one of the processes of ``kbaudit serve --processes N`` (uvicorn imports
    it by name in each): settings from the environment, migrations and export workers left
    to the parent."""
    container = build_container(Settings(), apply_migrations=False)
    configure_logging(container.settings.log_level)
    NoDelayHttp.header_seconds = container.settings.header_timeout_seconds
    app = create_app(container, run_workers=False)
    settle_heap()
    return app


def _bare_answer(status: str) -> bytes:
    return f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".encode()


HEADER_TIMEOUT = _bare_answer("408 Request Timeout")
HEADERS_TOO_LARGE = _bare_answer("431 Request Header Fields Too Large")


class HeadersTooLarge(Exception):
    pass


class NoDelayHttp(HttpToolsProtocol):
    """uvicorn's HTTP protocol, with Nagle's algorithm off on every connection, and a
    deadline and a size limit for each request's headers.

    asyncio turns Nagle off only for sockets it knows to be TCP, and a listening socket
    handed to the processes of ``serve --processes N`` comes without its protocol number:
    each answer's second write then waited for the client's delayed acknowledgement, and
    every small answer took 44 ms. uvicorn itself bounds only the idle time between
    requests: a client sending its headers a byte at a time would hold a connection for
    ever. And its httptools parser keeps a request line and headers of any length (a 70 MiB
    header line was taken whole). Bytes are counted as they arrive, for headers that never
    end, and as the parser hands each header over, for headers that end within one read
    (80 KiB of them in one packet were answered 200: the soak run's hostile probe).
    """

    header_seconds = 10.0  # serve sets it from KBAUDIT_HEADER_TIMEOUT_SECONDS
    header_bytes = 64 * 1024
    _header_deadline: asyncio.TimerHandle | None = None
    _header_bytes_seen = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        connection = transport.get_extra_info("socket")
        if connection is not None and connection.family in (socket.AF_INET, socket.AF_INET6):
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_deadline is None:  # between a request's headers and the next's
            return
        self._header_bytes_seen += len(data)
        if self._header_bytes_seen > self.header_bytes:
            self._refuse(HEADERS_TOO_LARGE)

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value))
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():  # refused already, with a 431 or a 408
            super().send_400_response(msg)

    def _count_header_bytes(self, count: int) -> None:
        self._header_bytes_seen += count
        if self._header_bytes_seen > self.header_bytes:
            self._refuse(HEADERS_TOO_LARGE)
            # Stops the parser: the request it was reading never reaches the app.
            raise HeadersTooLarge

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_bytes_seen = 0
        loop = asyncio.get_running_loop()
        self._header_deadline = loop.call_later(self.header_seconds, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._refuse(HEADER_TIMEOUT)

    def _refuse(self, answer: bytes) -> None:
        self._disarm_header_deadline()
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()


class BodyDeadline:
    """A request body must arrive whole within ``seconds`` of asking for its first byte;
    otherwise the request ends with a 408 (``RequestTimeout``). The deadline is the whole
    body's, not each chunk's: a client sending a byte every few seconds would otherwise hold
    a request for as long as it liked. Waiting for the client to disconnect once the body is
    in (as streaming answers do) is not bounded."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        body_done, deadline = False, 0.0

        async def bounded_receive() -> Message:
            nonlocal body_done, deadline
            if body_done:
                return await receive()
            deadline = deadline or loop.time() + self.seconds
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body did not arrive within {self.seconds:g} seconds"
                ) from None
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        await self.app(scope, bounded_receive, send)


class RefuseNulInUrl:
    """A 400 for a path or query string holding NUL (``%00``): no store keeps NUL in text
    (PostgreSQL refuses it), and no identifier or filter has one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"] or b"%00" in scope["query_string"]):
            body = error_body("invalid_request", "URLs may not contain NUL characters (%00)")
            await JSONResponse(body, status_code=400)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _Observe:
    """Request metrics and one log line per request. Plain ASGI: Starlette's
    BaseHTTPMiddleware would relay every chunk of a download through an extra stream."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if status >= 500:
                    message = _closing(message)
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        metrics = scope["app"].state.container.metrics
        metrics.http_requests.labels(route, scope["method"], str(status)).inc()
        metrics.http_latency.labels(route).observe(elapsed)
        # The path template only: query strings can carry download tokens.
        log.info(
            "request",
            method=scope["method"],
            route=route,
            status=status,
            ms=round(elapsed * 1000, 2),
        )


def _closing(start: Message) -> Message:
    """A failed answer ends its connection, and says so: whatever failed may have left the
    connection's state unknown, and a client told nothing would send its next request on a
    connection that is about to drop."""
    kept = [
        (name, value) for name, value in start.get("headers", []) if name.lower() != b"connection"
    ]
    return {**start, "headers": [*kept, (b"connection", b"close")]}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the msgspec-validated write body, which FastAPI cannot see."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        _, components = msgspec.json.schema_components(
            [RecordBatch], ref_template="#/components/schemas/{name}"
        )
        schema["components"]["schemas"].update(components)
        app.openapi_schema = schema
    return app.openapi_schema
