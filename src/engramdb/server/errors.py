"""The one HTTP error shape, ``{"error": {"code", "message", "details"}}``, for every failure."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import (
    AuthenticationError,
    BackendError,
    BadRequest,
    EngramError,
    InvalidInput,
    RateLimited,
)

__all__ = ["error_response", "install_error_handlers", "render_error"]

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "limit_exceeded",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(exc: EngramError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="engramdb"'
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status, headers=headers)


def _problems(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"field": ".".join(loc), "message": str(err.get("msg", "invalid")),
                    "type": str(err.get("type", ""))})  # fmt: skip
    return out


async def _on_engram_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EngramError)
    return render_error(exc)


def render_error(exc: EngramError) -> JSONResponse:
    """The response for an error the library raised while serving a request."""
    if isinstance(exc, BackendError):
        # The database's message can name tables and constraints: log it, do not send it.
        log.error("backend error: %s", exc.message)
        return error_response(BackendError("internal error: the database reported a problem"))
    return error_response(exc)


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = _problems(exc)
    if any(p["type"] == "json_invalid" for p in problems):
        return error_response(
            BadRequest("the request body is not valid JSON", details={"errors": problems})
        )
    first = problems[0] if problems else {"field": "?", "message": "invalid"}
    details: dict[str, Any] = {"errors": problems}
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        # Batch items: the same ``index`` detail add_many gives in-process.
        for pos in range(len(loc) - 1):
            if loc[pos] == "items" and isinstance(loc[pos + 1], int):
                details["index"] = loc[pos + 1]
                break
        if "index" in details:
            break
    return error_response(
        InvalidInput(f"invalid request: {first['field']}: {first['message']}", details=details)
    )


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    body = {"error": {"code": code, "message": str(exc.detail), "details": {}}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EngramError, _on_engram_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
