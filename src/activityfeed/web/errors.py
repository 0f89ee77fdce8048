"""Turning errors into ``{"error": {"code", "message"}}`` responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from activityfeed.errors import AppError, InvalidRequest, TooManyRequests

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse({"error": body}, status_code=status)


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str]:
    """The first error as (field, sentence)."""
    first = errors[0]
    where = _loc(tuple(first.get("loc", ())))
    kind = first.get("type", "")
    if kind == "json_invalid":
        return "body", "The body is not valid JSON."
    if kind == "extra_forbidden":
        return where, f"'{where}' is not a field this request takes."
    if kind == "missing":
        return where, f"'{where}' is required."
    if kind == "too_long" and where.endswith("eventIds"):
        return where, "'eventIds' holds at most 1000 event ids at a time."
    msg = str(first.get("msg", "is invalid")).rstrip(".")
    return where, f"'{where}': {msg[0].lower() + msg[1:] if msg else msg}."


def install(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        field = exc.field if isinstance(exc, InvalidRequest) else None
        response = error_response(exc.status, exc.code, exc.message, field=field)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        field, message = validation_message([dict(e) for e in exc.errors()])
        return error_response(422, "invalid_request", message, field=field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI answers 400 when it cannot parse a body (e.g. JSON nested deeper
            # than the parser goes); every other unreadable body is a 422 here.
            return error_response(
                422, "invalid_request", "The body could not be read as JSON.", field="body"
            )
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        code = codes.get(exc.status_code, "http_error")
        message = {
            404: "Nothing was found at this address.",
            405: "This address does not take that method.",
        }.get(exc.status_code, str(exc.detail))
        return error_response(exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "Something went wrong on our side.")
