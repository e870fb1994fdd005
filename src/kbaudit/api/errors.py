"""The one table from exception class to HTTP status, and the handlers that render errors."""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec
import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kbaudit import errors

log = structlog.get_logger("kbaudit.api")

STATUS_BY_ERROR: dict[type[errors.KbAuditError], int] = {
    errors.AuthenticationRequired: 401,
    errors.InsufficientScope: 403,
    errors.NotFound: 404,
    errors.RangeNotSatisfiable: 416,
    errors.RequestTimeout: 408,
    errors.TooManyAttempts: 429,
    errors.InvalidCursor: 400,
    errors.CursorMismatch: 400,
    errors.InvalidRequest: 422,
    errors.DestinationCheckFailed: 422,
    errors.PayloadTooLarge: 413,
    errors.RecordConflict: 409,
    errors.StoreUnavailable: 503,
    errors.InvalidDownloadToken: 401,
    errors.DownloadTokenExpired: 401,
    errors.ExportExpired: 410,
    errors.ExportInProgress: 409,
    errors.IdempotencyKeyReused: 409,
    errors.BlobNotFound: 404,
    errors.CiphertextCorrupt: 500,
    errors.KeyUnavailable: 500,
}
SECRET_FIELDS = frozenset({"secret_access_key"})
MASK = "**********"
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def error_body(code: str, message: str, *, retryable: bool = False) -> dict[str, Any]:
    return {"error": code, "message": message, "retryable": retryable, "retry_after": None}


def status_for(exc: errors.KbAuditError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def validation_error(loc: tuple[str | int, ...], message: str, value: Any, kind: str) -> Exception:
    """A 422 in FastAPI's own shape, for checks the parameter types cannot express."""
    return RequestValidationError([{"type": kind, "loc": loc, "msg": message, "input": value}])


_MSGSPEC_PATH = re.compile(r"\.(\w+)|\[(\d+)\]")


def from_msgspec(exc: msgspec.ValidationError | msgspec.DecodeError) -> Exception:
    """Turn msgspec's ``... - at `$.items[3].caller``` into a FastAPI-shaped 422."""
    text = str(exc)
    message, _, path = text.rpartition(" - at `")
    if not message:
        message, path = text, "$"
    loc: list[str | int] = ["body"]
    for name, index in _MSGSPEC_PATH.findall(path.rstrip("`")):
        loc.append(name if name else int(index))
    kind = "json_invalid" if not isinstance(exc, msgspec.ValidationError) else "value_error"
    return RequestValidationError([{"type": kind, "loc": tuple(loc), "msg": message}])


def _printable(value: Any) -> Any:
    """``value`` with text that UTF-8 cannot hold (lone surrogates a client sent as JSON
    escapes) written as escapes, so that echoing it in a 422 cannot fail the answer; and
    with the secrets a request may carry masked, since a 422 echoes what it refused."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {
            _printable(key): MASK if key in SECRET_FIELDS else _printable(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_printable(item) for item in value]
    return value


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = _printable(jsonable_encoder(exc.errors()))
        for error in detail:
            if error.get("loc") and error["loc"][-1] in SECRET_FIELDS and "input" in error:
                error["input"] = MASK
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(errors.KbAuditError)
    async def _domain_error(_request: Request, exc: errors.KbAuditError) -> JSONResponse:
        status = status_for(exc)
        if isinstance(exc, errors.InvalidRequest):
            detail = [{"type": exc.code, "loc": list(exc.field), "msg": exc.message}]
            return JSONResponse({"detail": detail}, status_code=status)
        body = error_body(exc.code, exc.message, retryable=exc.retryable)
        headers = {}
        if exc.retryable:
            wait = math.ceil(getattr(exc, "retry_after", 1))
            body["retry_after"] = wait
            headers["Retry-After"] = str(wait)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", route=request.url.path, error=type(exc).__name__)
        return JSONResponse(
            error_body("internal_error", "the server failed; the failure was logged"),
            status_code=500,
            headers={"Connection": "close"},  # see api/app.py _closing
        )
