"""Errors that carry their HTTP status, rendered everywhere as `{"error": code, "detail": text}`."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from laoke.kit.jsonutil import JSONBody

log = structlog.get_logger(__name__)


class LaokeError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, detail: str = "", *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code.replace("_", " ")
        self.headers = headers


class BadRequest(LaokeError):
    status_code = 400
    code = "bad_request"


class Unauthorized(LaokeError):
    status_code = 401
    code = "unauthorized"


class Forbidden(LaokeError):
    status_code = 403
    code = "forbidden"


class NotFound(LaokeError):
    status_code = 404
    code = "not_found"


class Conflict(LaokeError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(LaokeError):
    status_code = 413
    code = "payload_too_large"


class Unprocessable(LaokeError):
    status_code = 422
    code = "validation_error"


class TooManyRequests(LaokeError):
    status_code = 429
    code = "rate_limited"


class ServiceUnavailable(LaokeError):
    status_code = 503
    code = "service_unavailable"


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": code.replace("_", " "),
        "content": {"application/json": {"example": {"error": code, "detail": "..."}}},
    }
    for status, code in _STATUS_CODES.items()
    if status in (400, 401, 403, 404, 409, 422, 429)
}


def error_body(code: str, detail: str) -> dict[str, str]:
    return {"error": code, "detail": detail}


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def error_response(exc: LaokeError) -> JSONBody:
    return JSONBody(error_body(exc.code, exc.detail), exc.status_code, headers=exc.headers)


_DATA_EXCEPTIONS = {
    "22021": "text may not contain NUL (\\u0000) characters or invalid UTF-8",
    "22P05": "text may not contain NUL (\\u0000) characters",
    "22001": "a value is longer than its field allows",
    "22003": "a number is out of range",
}
_DATA_DEFAULT = "a value is not valid for its field"


# SQLSTATE class 08 (connection exception) and the server going away under us: shutdown, crash
# shutdown, not accepting connections yet (a restart in progress).
_UNAVAILABLE_STATES = ("57P01", "57P02", "57P03")


def database_unavailable(exc: BaseException) -> bool:
    """Did this fail because the database (or the connection to it) is gone, so a retry may succeed?"""
    if isinstance(exc, OperationalError | InterfaceError | OSError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    state = str(getattr(exc.orig, "sqlstate", "") or "")
    if state.startswith("08") or state in _UNAVAILABLE_STATES:
        return True
    # The driver's own error can hide the socket's: walk the chain for a connection that broke.
    cause: BaseException | None = exc.orig
    while cause is not None:
        if isinstance(cause, OSError) or type(cause).__name__ == "ConnectionDoesNotExistError":
            return True
        cause = cause.__cause__
    return False


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LaokeError)
    async def _laoke_error(_: Request, exc: LaokeError) -> JSONBody:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONBody:
        # Malformed JSON is a client error too, reported with the same shape.
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return JSONBody(error_body("malformed_json", _describe_validation(exc)), 400)
        return JSONBody(error_body("validation_error", _describe_validation(exc)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONBody:
        code = _STATUS_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else code
        return JSONBody(error_body(code, detail), exc.status_code, headers=exc.headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(OSError)
    async def _database_unavailable(_: Request, exc: Exception) -> JSONBody:
        # The database (or a connection to it) is gone: the request did nothing and may be retried.
        log.warning("database_unavailable", error=type(exc).__name__)
        return JSONBody(
            error_body("service_unavailable", "the database is unavailable; retry shortly"),
            503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(DBAPIError)
    async def _database_refused(request: Request, exc: DBAPIError) -> JSONBody:
        # SQLSTATE class 22 (data exception): a value PostgreSQL cannot store as given — a NUL character
        # in text, a string longer than its column, a number out of range. The input is at fault, and
        # it was refused as a whole. A connection lost mid-request is the database being unavailable.
        # Anything else is a bug and stays a 500.
        if database_unavailable(exc):
            return await _database_unavailable(request, exc)
        state = str(getattr(exc.orig, "sqlstate", "") or "")
        if state.startswith("22"):
            log.warning("input_refused_by_database", sqlstate=state, path=request.url.path)
            return JSONBody(error_body("validation_error", _DATA_EXCEPTIONS.get(state, _DATA_DEFAULT)), 422)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONBody:
        log.exception("unhandled_error", error=type(exc).__name__)
        return JSONBody(error_body("internal_error", "an unexpected error occurred"), 500)
